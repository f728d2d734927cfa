"""Real-time matching's own machinery: per-process state checked against a fingerprint, the
arriving records and their candidates read in one query each, and a merge of one pair written
in one statement.

``dedup.services.records_match`` matches one arriving record at a time (the push API's single
record, a small import run). What each call needs besides the record is the same from call to
call — the match rule, its parameters, the survivorship rules, the sources' trust ranks, the
secret field names — so it is kept per process (``MatchState``) and checked against a
fingerprint of those tables (``state_stamp_sql``) that the call reads in the query that loads
the arriving records anyway: an admin's change (save, queryset update, raw SQL) changes the
fingerprint and the next call reloads.

A sure match merges the new customer into the existing one. ``merge_pair`` gives exactly the
end state ``customers_merge_many`` gives for that one cluster followed by the candidate row
``records_match`` writes for it (``tests/dedup/test_realtime.py`` compares them row by row, and
undo is exact), in fewer round trips: on PostgreSQL two locking reads (the customers, their
source records) and one statement of data-modifying CTEs that updates the survivor and the
tombstone, moves source records and interactions, writes every history row, the merge with its
snapshot, the change-feed events and the candidate, and supersedes the open candidates. A
cluster with held field overrides (rare; their carry-over has its own writes) and other
databases go through ``customers_merge_many``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from crmhub.choices import ChangeChannel, ChangeEventType, CustomerStatus
from crmhub.context import current_change_context
from crmhub.models import ChangeEvent, Customer, FieldDefinition, Interaction, Source, SourceRecord
from crmhub.outbox import OUTBOX_LOCK_KEY, feed_values

#
# Per-process state, checked against a fingerprint read with the arriving records
#


@dataclass(frozen=True)
class MatchState:
    """What every call reads besides its records: the default rule (``None`` when there is
    no active rule: ``rule_get`` then says why), its scoring set-up, survivorship's rules and
    sources, and the names of secret fields (sealed in change-feed events)."""

    rule: Any
    config: Any
    params: Any
    survivorship_rules: dict
    sources: Any
    secret_names: frozenset[str]


_states: dict[str, MatchState] = {}
_states_lock = threading.Lock()


def _concat(columns: list[str]) -> str:
    return " || ':' || ".join(f"CAST({c} AS text)" for c in columns)


def state_stamp_sql() -> str:
    """A scalar subquery whose value changes with any change to the match rules, the
    survivorship rules, the sources (codes, trust ranks) or the secret fields."""
    from dedup.models import MatchRule, SurvivorshipRule

    parts = [
        (
            MatchRule._meta.db_table,
            "id",
            [
                "id",
                "name",
                "is_active",
                "is_default",
                "blocking_keys",
                "comparisons",
                "auto_threshold",
                "review_threshold",
                "max_block_size",
                "max_cluster_size",
                "learn_parameters",
                "parameters",
            ],
            "",
        ),
        (
            SurvivorshipRule._meta.db_table,
            "field",
            ["field", "strategy", "trust_order", "tie_break", "override_policy"],
            "",
        ),
        (Source._meta.db_table, "id", ["id", "code", "trust_rank"], ""),
        (FieldDefinition._meta.db_table, "name", ["name"], "WHERE sensitivity = 'secret'"),
    ]
    if connection.vendor == "postgresql":
        aggregates = [
            f"coalesce((SELECT string_agg({_concat(cols)}, ',' ORDER BY {order}) FROM {table} {where}), '')"  # noqa: S608
            for table, order, cols, where in parts
        ]
        return "SELECT md5(" + " || '/' || ".join(aggregates) + ")"
    aggregates = [
        f"coalesce((SELECT group_concat(x, ',') FROM (SELECT {_concat(cols)} AS x FROM {table} {where} "  # noqa: S608
        f"ORDER BY {order})), '')"
        for table, order, cols, where in parts
    ]
    return "SELECT " + " || '/' || ".join(aggregates)


def state_for(stamp: str | None) -> MatchState:
    """The state as of ``stamp`` (from ``state_stamp_sql``), loaded once per stamp."""
    key = stamp or ""
    found = _states.get(key)
    if found is not None:
        return found
    from django.core.exceptions import ValidationError

    from accounts.crypto import secret_field_names
    from dedup.services import _realtime_params, rule_get
    from dedup.survivorship import SourceIndex, rules_load

    try:
        rule = rule_get(None)
    except ValidationError:
        rule = None
    config, params = _realtime_params(rule) if rule is not None else (None, None)
    loaded = MatchState(rule, config, params, rules_load(), SourceIndex(), frozenset(secret_field_names()))
    with _states_lock:
        _states.clear()  # only the current state is worth keeping
        _states[key] = loaded
    return loaded


#
# Queries compiled once per shape
#

_compiled: dict[tuple, tuple[str, list, list[list[int]]]] = {}
_compiled_lock = threading.Lock()


def _mark(value: Any, k: int) -> Any:  # noqa: ANN401
    """A stand-in for the ``k``-th value, of its type, that no real value equals."""
    if isinstance(value, str):
        return f"\x00mark{k}\x00"  # PostgreSQL text cannot hold NUL: no real value is this
    if isinstance(value, dt.date):
        return dt.date(1, 1, 1) + dt.timedelta(days=k)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(10**17) - k
    raise TypeError(f"no stand-in for {type(value).__name__}")


def _compiled_sql(key: tuple, build: Callable[..., QuerySet], values: list) -> tuple[str, list]:
    """The SQL and parameters of ``build(*values)``, compiled once per ``key`` (the shape:
    which lookups, how many values) with stand-ins for the values; later calls only put their
    values where the stand-ins' parameters were. Building and compiling a queryset costs ten
    times what running one of these does."""
    entry = _compiled.get(key)
    if entry is None:
        marks = [_mark(v, k) for k, v in enumerate(values)]
        sql, params = build(*marks).query.sql_with_params()
        params = list(params)
        positions = []
        for m in marks:
            found = [i for i, p in enumerate(params) if type(p) is type(m) and p == m]
            if not found:
                raise RuntimeError(f"cannot place a parameter of {key!r}")
            positions.append(found)
        entry = (sql, params, positions)
        with _compiled_lock:
            _compiled[key] = entry
    sql, template, positions = entry
    params = list(template)
    for places, value in zip(positions, values, strict=True):
        for i in places:
            params[i] = value
    return sql, params


def _values_rows(key: tuple, build: Callable[..., QuerySet], values: list) -> list[tuple]:
    """The rows of ``build(*values)`` (a ``values_list`` queryset); on PostgreSQL through
    ``_compiled_sql``, as the driver gives them — which for the columns read this way (text,
    integers, dates, booleans) is what the queryset gives."""
    if connection.vendor != "postgresql":
        return list(build(*values))
    with connection.cursor() as cursor:
        cursor.execute(*_compiled_sql(key, build, values))
        return cursor.fetchall()


#
# Reading the arriving records and their candidates
#

Arrival = namedtuple(
    "Arrival",
    [
        "record_id",
        "customer_id",
        "status",
        "name_pinyin",
        "features",  # the customer's matching columns (FEATURE_SOURCE_COLUMNS, id_valid) as a dict
        "stamp",
    ],
)


def _id_flagged(prefix: str = "") -> ExpressionWrapper:
    return ExpressionWrapper(Q(**{f"{prefix}quality_flags__has_key": "id_number"}), output_field=BooleanField())


def _arrivals_query(*ids: int) -> QuerySet:
    from dedup.services import FEATURE_SOURCE_COLUMNS

    return (
        SourceRecord.objects.filter(pk__in=ids, customer__isnull=False)
        .annotate(id_flagged=_id_flagged("customer__"), stamp=RawSQL(state_stamp_sql(), []))
        .values_list(
            "pk",
            "customer__status",
            "customer__name_pinyin",
            *(f"customer__{c}" for c in FEATURE_SOURCE_COLUMNS),
            "id_flagged",
            "stamp",
        )
    )


def arrivals_load(source_record_ids: list[int]) -> list[Arrival]:
    """The arriving records (those with a customer) in the order ``records_match`` always took
    them, with their customer's matching columns and the state fingerprint: one query."""
    from dedup.services import FEATURE_SOURCE_COLUMNS

    ids = [int(i) for i in dict.fromkeys(source_record_ids)]
    if not ids:
        return []
    out = []
    # A shape per number of records: kept for the few a push or a small run brings.
    rows = _values_rows(("arrivals", len(ids)), _arrivals_query, ids) if len(ids) <= 8 else _arrivals_query(*ids)
    for pk, status, name_pinyin, *values, id_flagged, stamp in rows:
        features = dict(zip(FEATURE_SOURCE_COLUMNS, values, strict=True))
        features["id_valid"] = not id_flagged
        out.append(Arrival(pk, features["id"], status, name_pinyin, features, stamp))
    return out


LOOKUP_COLUMNS = ("mobile", "email", "id_number_hash", "wechat_unionid", "member_no")
MAX_CANDIDATES = 200


@dataclass
class Candidates:
    mine: dict  # the arriving customer's matching columns as they are now
    others: list[dict]  # the active customers sharing a key with it, by id (at most MAX_CANDIDATES)
    rejections: bool  # whether a rejected candidate touches any of them (else none can apply)


def _candidates_query(me: int, me_too: int, me_first: int, *values: Any, keys: tuple[str, ...]) -> QuerySet:  # noqa: ANN401
    from dedup.models import MatchCandidate
    from dedup.services import FEATURE_SOURCE_COLUMNS

    conditions = Q()
    values = list(values)
    for key in keys:
        if key == "name_birth":
            conditions |= Q(name_pinyin=values.pop(0), birth_date=values.pop(0))
        else:
            conditions |= Q(**{key: values.pop(0)})
    rejected = MatchCandidate.objects.filter(status="rejected").filter(
        Q(left_id=OuterRef("pk")) | Q(right_id=OuterRef("pk"))
    )
    return (
        Customer.objects.filter((Q(status=CustomerStatus.ACTIVE) & conditions & ~Q(pk=me)) | Q(pk=me_too))
        .annotate(
            id_flagged=_id_flagged(),
            rejections=Exists(rejected),
            is_me=ExpressionWrapper(Q(pk=me_first), output_field=BooleanField()),
        )
        .order_by("-is_me", "pk")
        .values_list(*FEATURE_SOURCE_COLUMNS, "id_flagged", "rejections")[: MAX_CANDIDATES + 1]
    )


def candidates_load(arrival: Arrival) -> Candidates | None:
    """The arriving customer's matching columns as they are now and those of the active
    customers sharing an identity key with it — same mobile, email, ID blind index, unionid,
    member number, or same sound-alike name and birth date — in one query: each key is an
    indexed equality (never a scan), and the customer itself comes along by its primary key.
    ``None`` when the customer has no key to look up by."""
    from dedup.services import FEATURE_SOURCE_COLUMNS

    me = arrival.features
    keys, values = [], []
    for column in LOOKUP_COLUMNS:
        if me[column]:
            keys.append(column)
            values.append(me[column])
    if arrival.name_pinyin and me["birth_date"]:
        keys.append("name_birth")
        values += [arrival.name_pinyin, me["birth_date"]]
    if not keys:
        return None
    customer_id = arrival.customer_id
    rows = _values_rows(
        ("candidates", *keys),
        lambda *v: _candidates_query(*v, keys=tuple(keys)),
        [customer_id, customer_id, customer_id, *values],
    )
    found = Candidates(dict(me), [], False)
    for *row_values, id_flagged, rejections in rows:
        row = dict(zip(FEATURE_SOURCE_COLUMNS, row_values, strict=True))
        row["id_valid"] = not id_flagged
        found.rejections |= bool(rejections)
        if row["id"] == customer_id:
            found.mine = row
        else:
            found.others.append(row)
    found.others = found.others[:MAX_CANDIDATES]
    return found


#
# Scoring the arriving customer against its candidates, without pandas
#


class _Column:
    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def to_numpy(self, dtype: Any = None) -> np.ndarray:  # noqa: ANN401
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


class ColumnFrame:
    """The part of a DataFrame the comparisons and the scoring read of their left/right feature
    frames (a column's ``to_numpy``, ``reset_index``, ``len``), over plain arrays: for a handful of
    pairs, pandas' per-operation overhead is most of the cost. ``tests/dedup`` keeps the scores
    equal to the DataFrame path's (``engine.score_pair_positions``)."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns
        self.length = len(next(iter(columns.values())))

    def __getitem__(self, name: str) -> _Column:
        return _Column(self.columns[name])

    def __len__(self) -> int:
        return self.length

    def reset_index(self, drop: bool = True) -> ColumnFrame:
        return self


def score_against(config: Any, params: Any, mine: dict, others: list[dict]) -> Any:  # noqa: ANN401
    """``engine.score_pair_positions`` of the pairs (arriving customer, each candidate), with
    every pair kept: levels, scores and decisions of the same functions."""
    from dedup import engine, scoring
    from dedup.comparators import comparison_levels
    from dedup.features import FEATURE_COLUMNS, _row_features

    n = len(others)
    me = _row_features(mine, 0)
    rows = [_row_features(r, k + 1) for k, r in enumerate(others)]
    left, right = {}, {}
    for j, name in enumerate(FEATURE_COLUMNS):
        dtype = bool if name == "id_valid" else object
        column = np.empty(n, dtype=dtype)
        column[:] = me[j]
        left[name] = column
        right[name] = np.array([r[j] for r in rows], dtype=dtype) if n else np.empty(0, dtype=dtype)
    left_frame, right_frame = ColumnFrame(left), ColumnFrame(right)
    levels = comparison_levels(config.comparisons, left_frame, right_frame, config.comparison_params)
    scored = scoring.score_pairs(config.comparisons, params, levels, left=left_frame)
    decision = scoring.decide(
        config.comparisons,
        levels,
        scored,
        auto_threshold=config.auto_threshold,
        review_threshold=config.review_threshold,
    )
    return engine.PairResults(
        left=left["id"],
        right=right["id"],
        score=decision.score,
        action=decision.action,
        reason=decision.reason,
        levels=levels,
        contributions=scored.contributions,
    )


def candidate_upsert(values: dict) -> int:
    """Write the pair's candidate (``values`` with ``left_id``/``right_id``) as
    ``MatchCandidate.objects.update_or_create`` would, returning its id: on PostgreSQL one
    ``INSERT ... ON CONFLICT DO UPDATE`` of the given columns."""
    from dedup.models import MatchCandidate

    if connection.vendor != "postgresql":
        defaults = {k: v for k, v in values.items() if k not in ("left_id", "right_id")}
        row, _created = MatchCandidate.objects.update_or_create(
            left_id=values["left_id"], right_id=values["right_id"], defaults=defaults
        )
        return row.pk
    qn = connection.ops.quote_name
    fields = [f for f in MatchCandidate._meta.concrete_fields if not f.primary_key]
    updated = [MatchCandidate._meta.get_field(n).column for n in values if n not in ("left_id", "right_id")]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(MatchCandidate._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT (left_id, right_id) DO UPDATE SET "
            + ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in updated)
            + " RETURNING id",
            _prep(MatchCandidate(**values), fields, _db()),
        )
        return cursor.fetchone()[0]


#
# One merge of a pair, in one write statement (PostgreSQL)
#

RecordRow = namedtuple(
    "RecordRow",
    ["pk", "customer_id", "source_id", "normalized", "flags", "source_updated_at", "updated_at", "first_seen_at"],
)


@dataclass
class MergeOutcome:
    merge_id: int | None  # None: a member was no longer active, nothing was written
    candidate_id: int | None = None
    clusters_touched: bool = True  # whether clusters_refresh may have anything to do


def merge_pair(
    *,
    survivor_id: int,
    merged_id: int,
    candidate: dict,
    origin: str,
    note: str,
    state: MatchState,
) -> MergeOutcome:
    """Merge ``merged_id`` into ``survivor_id`` and record the pair's candidate (``candidate``:
    the MatchCandidate values ``records_match`` writes, ``left_id``/``right_id`` included):
    the same end state as ``customers_merge_many(clusters=[[survivor_id, merged_id]])`` then
    ``MatchCandidate.objects.update_or_create``. Runs inside the caller's transaction and
    change context."""
    if connection.vendor != "postgresql":
        return merge_pair_portable(
            survivor_id=survivor_id, merged_id=merged_id, candidate=candidate, origin=origin, note=note
        )
    ids = sorted({survivor_id, merged_id})
    # Model instances (survivorship reads them; secrets decrypted), through SQL compiled once.
    locked = {c.pk: c for c in Customer.objects.raw(*_compiled_sql(("lock", len(ids)), _locked_customers, ids))}
    if len(locked) < len(ids) or any(c.status != CustomerStatus.ACTIVE for c in locked.values()):
        return MergeOutcome(None)
    if any(c.has_overrides for c in locked.values()):
        # Held overrides are carried over and snapshotted by the general path.
        return merge_pair_portable(
            survivor_id=survivor_id, merged_id=merged_id, candidate=candidate, origin=origin, note=note
        )
    records = []
    for pk, customer_id, source_id, normalized, flags, *times in _values_rows(
        ("lock_records", len(ids)), _locked_records, ids
    ):
        # The driver hands jsonb over as text (JSONField parses it itself).
        normalized, flags = (json.loads(v) if isinstance(v, str) else v for v in (normalized, flags))
        records.append(RecordRow(pk, customer_id, source_id, normalized, flags, *times))
    plan = _plan(locked[survivor_id], [locked[merged_id]], records, origin=origin, note=note, state=state)
    return _write(plan, candidate, state)


def _locked_customers(*ids: int) -> QuerySet:
    from dedup.models import FieldOverride

    return (
        Customer.objects.select_for_update()
        .filter(pk__in=ids)
        .annotate(has_overrides=Exists(FieldOverride.objects.filter(customer_id=OuterRef("pk"))))
        .order_by("pk")
    )


def _locked_records(*ids: int) -> QuerySet:
    from dedup.survivorship import RECORD_COLUMNS

    return (
        SourceRecord.objects.select_for_update().filter(customer_id__in=ids).order_by("pk").values_list(*RECORD_COLUMNS)
    )


def merge_pair_portable(*, survivor_id: int, merged_id: int, candidate: dict, origin: str, note: str) -> MergeOutcome:
    """The general path: the set-based merge of one cluster, then the candidate row."""
    from dedup.models import MatchCandidate, Merge
    from dedup.services import customers_merge_many

    merged = customers_merge_many(clusters=[[survivor_id, merged_id]], origin=origin, note=note)
    if survivor_id not in merged:
        return MergeOutcome(None)
    values = {k: v for k, v in candidate.items() if k not in ("left_id", "right_id")}
    row, _created = MatchCandidate.objects.update_or_create(
        left_id=candidate["left_id"],
        right_id=candidate["right_id"],
        defaults={**values, "merge": Merge(pk=merged[survivor_id])},
    )
    return MergeOutcome(merged[survivor_id], row.pk)


@dataclass
class _Plan:
    survivor: Customer
    others: list[Customer]
    changed: dict[str, Any]  # attname → new value on the survivor
    merge: Any  # an unsaved Merge (its snapshot without the moved rows, which the statement adds)
    announced: tuple[int, list[int], dict]
    now: Any


def _plan(
    target: Customer, others: list[Customer], records: list, *, origin: str, note: str, state: MatchState
) -> _Plan:
    """What the merge changes, computed exactly as ``_merge_chunk`` does for one cluster."""
    from accounts.crypto import blind_index
    from dedup.models import Merge
    from dedup.names import pinyin
    from dedup.services import _DERIVED, _json_safe, _merge_plan, _snap, _snapshot_fields

    fields = {f.attname: f for f in _snapshot_fields()}
    now = timezone.now()
    _proposals, new_values, _chosen = _merge_plan(
        target,
        others,
        {},
        records=records,
        overrides={},
        rules=state.survivorship_rules,
        sources=state.sources,
        explain=False,
    )
    if "full_name" in new_values:
        new_values["name_pinyin"] = pinyin(new_values["full_name"]) or target.name_pinyin
    if "id_number" in new_values:
        new_values["id_number_hash"] = blind_index(new_values["id_number"])
    old_version = target.version
    before_target, after_target, changed = {}, {}, {}
    for name, value in new_values.items():
        field = Customer._meta.get_field(name)
        old = getattr(target, field.attname)
        if old == value:
            continue
        before_target[field.attname] = _snap(field, old)
        setattr(target, field.attname, value)
        after_target[field.attname] = _snap(field, value)
        changed[field.attname] = value
    target.version += 1
    target.updated_at = now
    before = {
        "customers": {str(target.pk): {**before_target, "version": old_version}},
        "overrides": _json_safe([]),
    }
    for other in others:
        before["customers"][str(other.pk)] = {
            "status": other.status,
            "merged_into_id": other.merged_into_id,
            "version": other.version,
        }
        other.status = CustomerStatus.MERGED
        other.merged_into_id = target.pk
        other.version += 1
        other.updated_at = now
    merge = Merge(
        survivor_id=target.pk,
        merged_ids=[o.pk for o in others],
        values={},
        before=before,
        origin=origin,
        run=None,
        note=note,
        acting_user=None,
        after={"survivor": after_target, "versions": {str(c.pk): c.version for c in [target, *others]}},
    )
    shown = {fields[a].name: getattr(target, a) for a in after_target if a not in _DERIVED}
    return _Plan(target, others, changed, merge, (target.pk, [o.pk for o in others], feed_values(shown)), now)


def _db() -> Any:  # noqa: ANN401
    """The default connection itself (``django.db.connection`` is a proxy that looks the
    connection up again on every attribute access; the write below makes hundreds)."""
    return connections[DEFAULT_DB_ALIAS]


def _prep(obj: Any, fields: Iterable, db: Any) -> list:  # noqa: ANN401
    """Values of ``obj`` as save() would send them (the fields' own pre_save and preparation)."""
    return [f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields]


def _fields(model) -> list:  # noqa: ANN001
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def _typed(field, db: Any) -> str:  # noqa: ANN001, ANN401
    """A placeholder typed as ``field``'s column (values in a SELECT list or VALUES have no
    column to take their type from)."""
    db_type = field.target_field.rel_db_type(db) if field.is_relation else field.db_type(db)
    return f"%s::{db_type}"


HISTORY_EXTRA = (
    "history_date",
    "history_user_id",
    "history_change_reason",
    "history_type",
    "change_channel",
    "change_ref",
)


def _history_sql(model, source: str, qn: Callable) -> str:  # noqa: ANN001
    """``INSERT INTO <history> ... SELECT`` the tracked columns of the rows ``source`` (a CTE
    returning the updated rows) and the history columns (``HISTORY_EXTRA``, as parameters), as
    ``dedup.services._history_insert_select`` does."""
    history = model.history.model
    tracked = [f.column for f in history.tracked_fields]
    unknown = {f.column for f in _fields(history)} - set(tracked) - set(HISTORY_EXTRA)
    if unknown:  # a history column nobody fills: refuse rather than write incomplete history
        raise RuntimeError(f"history of {model.__name__}: no value for {', '.join(sorted(unknown))}")
    columns = ", ".join(qn(c) for c in [*tracked, *HISTORY_EXTRA])
    selected = ", ".join([*(f"x.{qn(c)}" for c in tracked), *(["%s"] * len(HISTORY_EXTRA))])
    return f"INSERT INTO {qn(history._meta.db_table)} ({columns}) SELECT {selected} FROM {source} AS x"  # noqa: S608


@cache
def _write_sql(changed: tuple[str, ...], others: int, candidate_keys: tuple[str, ...]) -> str:
    """The statement writing a merge of this shape (the survivor's changed columns, how many
    customers merge into it, the candidate's columns), built once. Its parameters, in order,
    are those ``_write`` lists part by part."""
    from dedup.models import MatchCandidate, Merge

    db = _db()
    qn = db.ops.quote_name
    customers = qn(Customer._meta.db_table)
    candidates = qn(MatchCandidate._meta.db_table)
    merge_fields = _fields(Merge)
    moved_of = "(SELECT coalesce(jsonb_object_agg(id::text, moved_from_), '{{}}'::jsonb) FROM {})"
    merge_values = [
        (
            "%s::jsonb || jsonb_build_object('source_records', "
            + moved_of.format("moved_srec")
            + ", 'interactions', "
            + moved_of.format("moved_inter")
            + ")"
        )
        if f.name == "before"
        else _typed(f, db)
        for f in merge_fields
    ]
    event_fields = _fields(ChangeEvent)
    event_columns = ", ".join(qn(f.column) for f in event_fields)
    event_row = "(" + ", ".join(_typed(f, db) for f in event_fields) + ")"
    candidate_fields = _fields(MatchCandidate)
    updated = [MatchCandidate._meta.get_field(n).column for n in candidate_keys if n not in ("left_id", "right_id")]
    sets = ["version = %s", "updated_at = %s", *(f"{qn(Customer._meta.get_field(a).column)} = %s" for a in changed)]
    touched = f"SELECT 1 FROM {candidates} WHERE {{}} = ANY(%s::bigint[]) AND (cluster IS NOT NULL OR status = %s)"  # noqa: S608
    parts = [
        # The outbox writer lock (shared) before any event; the merge's id.
        ("writer_lock", "SELECT pg_advisory_xact_lock_shared(%s) AS held"),
        ("merge_id", f"SELECT nextval(pg_get_serial_sequence('{Merge._meta.db_table}', 'id')) AS id"),
        # The customers: the tombstones and the survivor, each row updated once, with history.
        (
            "tomb",
            f"UPDATE {customers} AS c SET status = %s, merged_into_id = %s, version = v.version, "  # noqa: S608
            "updated_at = %s FROM unnest(%s::bigint[], %s::integer[]) AS v(id, version) WHERE c.id = v.id "
            "RETURNING c.*",
        ),
        ("surv", f"UPDATE {customers} SET {', '.join(sets)} WHERE id = %s RETURNING *"),  # noqa: S608
        ("hcust", _history_sql(Customer, "(SELECT * FROM tomb UNION ALL SELECT * FROM surv)", qn)),
        # The merged customers' source records and interactions move to the survivor (RETURNING
        # gives the new owner: the old one comes from the joined array), with history.
        *(
            part
            for model, name in ((SourceRecord, "srec"), (Interaction, "inter"))
            for part in (
                (
                    f"moved_{name}",
                    f"UPDATE {qn(model._meta.db_table)} AS r SET customer_id = %s FROM unnest(%s::bigint[]) "  # noqa: S608
                    "AS v(old) WHERE r.customer_id = v.old RETURNING r.*, v.old AS moved_from_",
                ),
                (f"h{name}", _history_sql(model, f"moved_{name}", qn)),
            )
        ),
        # The merge with its snapshot, to which the moved rows' owners are added.
        (
            "merge",
            f"INSERT INTO {qn(Merge._meta.db_table)} (id, {', '.join(qn(f.column) for f in merge_fields)}) "  # noqa: S608
            f"SELECT merge_id.id, {', '.join(merge_values)} FROM merge_id RETURNING id",
        ),
        # The change-feed events (dedup.services._announce_merges), under the writer lock.
        (
            "events",
            f"INSERT INTO {qn(ChangeEvent._meta.db_table)} ({event_columns}) SELECT e.* FROM writer_lock, "  # noqa: S608
            f"(VALUES {', '.join([event_row] * (1 + others))}) AS e({event_columns}) RETURNING 1",
        ),
        # Open candidates about the merged customers are moot; the pair's own is upserted.
        (
            "superseded",
            f"UPDATE {candidates} SET status = %s WHERE status = %s "  # noqa: S608
            "AND (left_id = ANY(%s::bigint[]) OR right_id = ANY(%s::bigint[])) "
            "AND NOT (left_id = %s AND right_id = %s) RETURNING 1",
        ),
        (
            "candidate",
            f"INSERT INTO {candidates} ({', '.join(qn(f.column) for f in candidate_fields)}) VALUES ("  # noqa: S608
            + ", ".join("(SELECT id FROM merge_id)" if f.attname == "merge_id" else "%s" for f in candidate_fields)
            + ") ON CONFLICT (left_id, right_id) DO UPDATE SET "
            + ", ".join(f"{qn(c)} = EXCLUDED.{qn(c)}" for c in [*updated, "merge_id"])
            + " RETURNING id",
        ),
    ]
    # Last, whether clusters_refresh could change anything: a candidate about the pair that is
    # pending or clustered (all parts read the rows as they were, and this merge makes no
    # candidate pending or clustered). One indexed probe per side (an OR of the two scans).
    final = (
        "SELECT (SELECT id FROM merge), (SELECT id FROM candidate), "
        f"EXISTS ({touched.format('left_id')}) OR EXISTS ({touched.format('right_id')})"
    )
    return "WITH " + ", ".join(f"{name} AS ({body})" for name, body in parts) + " " + final


def _write(plan: _Plan, candidate: dict, state: MatchState) -> MergeOutcome:
    """Every write of the merge and its candidate in one statement of data-modifying CTEs
    (``_write_sql``). All parts see the rows as they were before the statement, so none of
    them writes a row another part writes: the candidate being upserted is left out of the
    superseded ones."""
    from accounts.crypto import seal_values
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate, Merge

    db = _db()
    ctx = current_change_context()
    user_id = getattr(ctx.user, "pk", None)
    ref = ctx.ref if ctx.channel == ChangeChannel.MERGE and ctx.ref else "merge"
    history = [plan.now, user_id, None, "~", ChangeChannel.MERGE, ref[:200]]  # HISTORY_EXTRA
    target, others = plan.survivor, plan.others
    other_ids = [o.pk for o in others]
    survivor_id, merged_ids, values = plan.announced
    secret = set(state.secret_names)
    events = [
        ChangeEvent(
            event_type=ChangeEventType.MERGED,
            customer_id=pk,
            changed_fields=changed,
            data=seal_values(data, secret),
            channel=ctx.channel,
            ref=ctx.ref[:200],
            user_id=user_id,
        )
        for pk, changed, data in [
            (survivor_id, sorted(values), {**values, "_merged_ids": merged_ids}),
            *((pk, [], {"_merged_into": survivor_id}) for pk in merged_ids),
        ]
    ]
    left, right = candidate["left_id"], candidate["right_id"]
    candidate_row = MatchCandidate(**candidate)
    candidate_fields = [f for f in _fields(MatchCandidate) if f.attname != "merge_id"]
    changed_fields = [Customer._meta.get_field(a) for a in plan.changed]
    ids = sorted({target.pk, *other_ids, left, right})
    params = [
        OUTBOX_LOCK_KEY,  # writer_lock
        CustomerStatus.MERGED,  # tomb
        target.pk,
        plan.now,
        other_ids,
        [o.version for o in others],
        target.version,  # surv
        plan.now,
        *(f.get_db_prep_save(plan.changed[f.attname], db) for f in changed_fields),
        target.pk,
        *history,  # hcust
        target.pk,  # moved_srec
        other_ids,
        *history,  # hsrec
        target.pk,  # moved_inter
        other_ids,
        *history,  # hinter
        *_prep(plan.merge, _fields(Merge), db),  # merge
        *(v for e in events for v in _prep(e, _fields(ChangeEvent), db)),  # events
        CandidateStatus.SUPERSEDED,  # superseded
        CandidateStatus.PENDING,
        other_ids,
        other_ids,
        left,
        right,
        *_prep(candidate_row, candidate_fields, db),  # candidate
        ids,  # final
        CandidateStatus.PENDING,
        ids,
        CandidateStatus.PENDING,
    ]
    sql = _write_sql(tuple(plan.changed), len(others), tuple(candidate))
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        merge_id, candidate_id, clusters_touched = cursor.fetchone()
    return MergeOutcome(merge_id, candidate_id, clusters_touched)
