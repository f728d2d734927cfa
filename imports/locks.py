"""The advisory locks that keep a source's writers apart (PostgreSQL; SQLite serialises writers).

A source's keys fall into ``KEY_STRIPES`` stripes by a stable hash of the key (``key_stripe``:
the same in every process, whatever the number of write lanes configured there).

* A batch writer (a chunk of a file or connector run, a multi-record push) holds, for its whole
  transaction, the source's *gate* exclusively and the stripes of the keys it writes
  exclusively, taken in one statement before it classifies anything: classification and
  upsert see the same rows, and no other writer of those keys can slip in between.
* A chunk written by several lanes (``imports.pipeline.WriteLanes``) is one batch writer
  spread over several connections: its leader lane holds the gate, and each lane the stripes
  of its own keys (every key of a chunk is in exactly one lane).
* A single push (``imports.single``) holds the stripe of its one key *shared*: pushes of other
  keys, and of other stripes than a batch is writing, do not wait.

No deadlock among them: everyone who holds more than one stripe holds the gate first, so two
such writers never hold stripes the other waits for, and a single push waits for one stripe
only, holding no other. (The lanes' own barrier is in ``imports.pipeline``.)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

# Advisory-lock classes (the first int4 key; the second is the source's id, or the run's for lanes).
SOURCE_LOCK_CLASS = 0x637268  # the source's gate: batch writers, exclusively
STRIPE_LOCK_CLASS = 0x63727300  # + stripe: the keys of that stripe (batch writers exclusively, pushes shared)
LANE_LOCK_CLASS = 0x63726C00  # + lane: a write lane's "still writing" lock (session level, per run)
# 24 has many divisors, so 1, 2, 3, 4, 6, 8 or 12 lanes get the same number of stripes each.
KEY_STRIPES = 24


def key_stripe(key: str) -> int:
    """The stripe of a source key: stable across processes and machines (not Python's hash)."""
    return zlib.crc32(key.encode()) % KEY_STRIPES


def source_lock_calls(
    source_id: int, stripes: Iterable[int], *, gate: bool, shared: bool = False
) -> tuple[list[str], list[int]]:
    """SQL calls (and their parameters) taking, for the transaction, the gate when ``gate``, then
    the stripes in ascending order, for one SELECT list (evaluated left to right)."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    calls, params = [], []
    if gate:
        calls.append(f"{fn}(%s, %s)")
        params += [SOURCE_LOCK_CLASS, source_id]
    for stripe in sorted(set(stripes)):
        calls.append(f"{fn}(%s, %s)")
        params += [STRIPE_LOCK_CLASS + stripe, source_id]
    return calls, params


def source_lock_sql(source_id: int, stripes: Iterable[int], *, gate: bool, shared: bool = False) -> tuple[str, list]:
    """``source_lock_calls`` as one statement."""
    calls, params = source_lock_calls(source_id, stripes, gate=gate, shared=shared)
    return "SELECT " + (", ".join(calls) or "1"), params


def lane_lock_key(lane: int, run_id: int) -> tuple[int, int]:
    """The advisory key of lane ``lane`` of run ``run_id`` (the run id folded into an int4)."""
    return LANE_LOCK_CLASS + lane, run_id & 0x7FFFFFFF
