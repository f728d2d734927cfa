"""Write lanes: one chunk of an import or sync run written by several PostgreSQL connections at
once, so that the database work of a run spreads over several cores.

Each lane is a thread with a Django connection (and a writer) of its own. A chunk's rows are
split by the stripe of their key (``imports.locks.key_stripe``; lane = stripe mod lanes), so a
key is always written by the lane holding its stripe, and within a run by one lane only (a
file's repeated keys are refused before: ``ImportPipeline.prepare``). A chunk goes through
the lanes in steps driven by the pipeline's thread (``WriteLanes.write_chunk``):

1. *begin*: the leader (lane 0) opens its transaction and takes the source's gate, then every
   other lane opens its own and takes its stripes; each lane also takes its "still writing"
   lock (session level, per run and lane) and the outbox writer lock shared, before writing
   anything.
2. *write*: every lane classifies its part (reads only); the pipeline's thread then draws the
   ids of every new customer and source record of the chunk in file order, as one connection
   would (``PostgresWriter.reserve_ids``), and every lane writes its part. When done it releases
   its "still writing" lock and waits, in PostgreSQL, for those of the other lanes: a lane that finished
   waits for the others *as a lock wait the server sees*, so that if a lane still writing
   waits for a row another transaction holds, and that transaction waits for a row a finished
   lane holds, the server detects the deadlock and breaks it, as it would for one connection.
3. *finish*: the leader writes what belongs to the whole chunk (progress, error-report rows, a
   connector's cursor) with the outcomes of every lane.
4. *commit*: the other lanes commit, then the leader. Foreign keys were checked at the end of
   step 2 (``SET CONSTRAINTS ALL IMMEDIATE``), so the commits are short; a process killed
   between them leaves some lanes' rows without the chunk's progress and cursor: the next sync
   reads that page again and finds them unchanged (nothing lost, nothing doubled).

Any failure rolls back every lane still open, and the chunk's error is raised in the pipeline.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.utils import translation

from crmhub.outbox import OUTBOX_LOCK_KEY
from imports.locks import KEY_STRIPES, key_stripe, lane_lock_key, source_lock_calls
from imports.writers import PreparedRow, writer_for_connection


@dataclass
class LanePart:
    """A lane's share of a chunk: its rows in file order and the stripes of their keys."""

    rows: list[PreparedRow] = field(default_factory=list)
    stripes: set[int] = field(default_factory=set)


def partition(rows: Sequence[PreparedRow], count: int) -> list[LanePart]:
    """The rows of each of ``count`` lanes, by the stripe of their key (pure: runs in the
    pipeline's prepare thread)."""
    parts = [LanePart() for _i in range(count)]
    for row in rows:
        stripe = key_stripe(row.key)
        part = parts[stripe % count]
        part.rows.append(row)
        part.stripes.add(stripe)
    return parts


class _Rollback(Exception):
    """Raised into a lane's transaction to roll it back."""


class _Lane:
    """A thread that runs what it is given, in order, on its own database connection; a chunk's
    transaction stays open across the steps of ``WriteLanes.write_chunk``."""

    def __init__(self, index: int, language: str | None) -> None:
        self.index = index
        self.language = language
        self.writer: Any = None
        self._atomic: Any = None
        self._inbox: SimpleQueue = SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"import-lane-{index}", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in the lane, in the caller's context (change context, contextvars)."""
        future: Future = Future()
        self._inbox.put((future, contextvars.copy_context(), fn, args))
        return future

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            with translation.override(self.language):
                while (item := self._inbox.get()) is not None:
                    future, context, fn, args = item
                    try:
                        result = context.run(fn, *args)
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiting pipeline
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
        finally:
            try:
                self.end(False)
            finally:
                connections.close_all()  # this thread's connections

    #
    # Steps (run in the lane's thread)
    #

    def begin(self, sql: str, params: list[Any]) -> None:
        if self.writer is None:
            self.writer = writer_for_connection()
        atomic = transaction.atomic()
        atomic.__enter__()
        self._atomic = atomic  # only once entered: ``end`` leaves it
        try:
            self.writer.begin_bulk_chunk()
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
        except BaseException:
            self.end(False)
            raise

    def work(self, write: Callable[..., Any], classified: Any, ids: Any, barrier: tuple) -> Any:  # noqa: ANN401
        try:
            result = write(self.writer, classified, ids)
            with connection.cursor() as cursor:
                # Deferred foreign keys are checked now, not in the commit (step 4 stays short).
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(*barrier)
        except BaseException:
            # Rolled back at once: the lanes waiting at the barrier for this one go on.
            self.end(False)
            raise
        return result

    def in_transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(self.writer, *args)
        except BaseException:
            self.end(False)
            raise

    def end(self, commit: bool) -> None:  # noqa: FBT001 - called through call(fn, *args)
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return
        committed = False
        try:
            if commit:
                atomic.__exit__(None, None, None)
                committed = True
            else:
                atomic.__exit__(_Rollback, _Rollback(), None)
        finally:
            if not committed:
                self._release_session_locks()

    @staticmethod
    def _release_session_locks() -> None:
        """The "still writing" lock is session level: a rollback keeps it."""
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock_all()")
        except DatabaseError:
            connection.close()  # a broken connection: its session, and the lock, end with it


class WriteLanes:
    """``count`` write lanes of one run of one source (PostgreSQL only; see the module docstring)."""

    def __init__(self, count: int, *, source_id: int, run_id: int) -> None:
        if not 1 < count <= KEY_STRIPES:
            raise ValueError(f"write lanes must number 2 to {KEY_STRIPES}, not {count}")
        self.count = count
        self.source_id = source_id
        self.run_id = run_id
        language = translation.get_language()
        self.lanes = [_Lane(i, language) for i in range(count)]

    def write_chunk(
        self,
        parts: list[LanePart],
        classify: Callable[[Any, list[PreparedRow]], Any],
        allocate: Callable[[list[Any]], list[Any]],
        write: Callable[[Any, Any, Any], Any],
        finish: Callable[[Any, list[Any]], None],
    ) -> None:
        """Write a chunk: ``classify(writer, rows)`` in every lane; ``allocate(classified)``
        here (the new ids of every lane, drawn in file order); ``write(writer, classified,
        ids)`` in every lane (its result is the lane's outcome); ``finish(writer, outcomes)``
        in the leader; then every lane commits, the leader last."""
        leader, followers = self.lanes[0], self.lanes[1:]
        try:
            leader.call(leader.begin, *self._begin_sql(0, parts[0].stripes, gate=True)).result()
            self._all(
                [lane.call(lane.begin, *self._begin_sql(lane.index, parts[lane.index].stripes)) for lane in followers]
            )
            classified = self._all(
                [lane.call(lane.in_transaction, classify, parts[lane.index].rows) for lane in self.lanes]
            )
            ids = allocate(classified)
            outcomes = self._all(
                [
                    lane.call(lane.work, write, classified[lane.index], ids[lane.index], self._barrier_sql(lane.index))
                    for lane in self.lanes
                ]
            )
            leader.call(leader.in_transaction, finish, outcomes).result()
            self._all([lane.call(lane.end, True) for lane in followers])
            leader.call(leader.end, True).result()
        except BaseException:
            self._abort()
            raise

    def close(self) -> None:
        """Roll back anything left open, close the lanes' connections and end their threads."""
        for lane in self.lanes:
            lane.stop()

    def _abort(self) -> None:
        futures = [lane.call(lane.end, False) for lane in self.lanes]
        wait(futures)

    @staticmethod
    def _all(futures: list[Future]) -> list[Any]:
        """The futures' results in order; the first failure is raised without waiting for the rest."""
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]

    def _begin_sql(self, lane: int, stripes: set[int], *, gate: bool = False) -> tuple[str, list[Any]]:
        # "Still writing" first (nobody waits for it before step 2), then the gate and stripes in
        # their order, then the outbox lock: the order single pushes take a stripe and the outbox in.
        calls, params = source_lock_calls(self.source_id, stripes, gate=gate)
        sql = (
            "SELECT pg_advisory_lock(%s, %s), " + "".join(f"{c}, " for c in calls) + "pg_advisory_xact_lock_shared(%s)"
        )
        return sql, [*lane_lock_key(lane, self.run_id), *params, OUTBOX_LOCK_KEY]

    def _barrier_sql(self, lane: int) -> tuple[str, list[Any]]:
        calls, params = ["pg_advisory_unlock(%s, %s)"], [*lane_lock_key(lane, self.run_id)]
        for other in range(self.count):
            if other != lane:
                key = lane_lock_key(other, self.run_id)
                calls += ["pg_advisory_lock_shared(%s, %s)", "pg_advisory_unlock_shared(%s, %s)"]
                params += [*key, *key]
        return "SELECT " + ", ".join(calls), params
