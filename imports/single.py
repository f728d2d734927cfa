"""Storing one record at a time, for the push API's single-record requests.

The batch pipeline (``imports/pipeline.py`` + ``imports/writers.py``) is built for chunks of
thousands: a pandas frame, a per-source advisory lock, COPY into a staging table. For one
record that machinery costs more than the record: about thirty round trips. This path gives
the same stored result — source record, golden customer, history rows attributed to the run,
the run's change log, the change-feed event, the error-report row of a flagged value — with
the same shared parts (``clean_columns``, ``customer_row``, ``history_objects``, the record
hash), in few round trips:

* PostgreSQL: one statement takes the advisory lock of the key's stripe *shared* (batch writers
  take the stripes of their keys exclusively, so a batch never classifies a key a single push is
  writing, while single pushes do not queue behind each other: ``imports.locks``), the outbox
  writer lock, looks the key up and allocates the
  new ids; a second statement writes every row (data-modifying CTEs). Two pushes of one key at
  once are kept apart by the ``(source, source_key)`` unique constraint: the insert is ``ON
  CONFLICT DO NOTHING`` and an update is conditional on the content hash it read, so a push
  that lost a race sees 0 rows written and starts over (``SingleRetry``), classifying against
  what the winner stored. An idempotency marker goes first in the same statement, so a
  concurrent request with the same key waits for the first and then writes nothing.
* Other databases (SQLite): the same rows through the ORM, one after the other (SQLite
  serialises writers anyway).

Dictionary lookups (field types, active and secret fields) are cached per process and checked
against a fingerprint of the dictionary that the caller fetches in a query it makes anyway
(``definitions_stamp_sql``); a change by an admin (save, queryset update, raw SQL) changes the
fingerprint and the next push reloads them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from django.db import connection, models
from django.utils import timezone

from accounts.crypto import blind_index, blind_indexer, seal_values
from crmhub.choices import ChangeEventType, Sensitivity
from crmhub.context import ChangeContext, change_context, current_change_context
from crmhub.models import ChangeEvent, Customer, FieldDefinition, SourceRecord
from crmhub.outbox import OUTBOX_LOCK_KEY, feed_values
from imports.choices import ChangeAction, IssueKind
from imports.cleaning.frame import clean_columns
from imports.cleaning.rules import FieldRules, rules_from
from imports.history import history_objects
from imports.linking import customer_row
from imports.locks import STRIPE_LOCK_CLASS, key_stripe
from imports.models import ImportRun, ImportRunChange, ImportRunIssue

#
# The data dictionary, cached per process
#


@dataclass(frozen=True)
class Definitions:
    field_types: dict[str, str]
    active: frozenset[str]
    secret: frozenset[str]
    rules: dict[str, FieldRules] = field(default_factory=dict)


_definitions: dict[str, Definitions] = {}
_definitions_lock = threading.Lock()


def definitions_stamp_sql() -> str:
    """A scalar subquery giving a fingerprint of what ``Definitions`` holds; it changes with
    any change to a field's name, type, sensitivity, active flag or rules, however it was made."""
    row = (
        "name || ':' || field_type || ':' || sensitivity || ':' || CAST(is_active AS integer) || ':' || "
        "validation_regex || ':' || CAST(choices AS text)"
    )
    table = FieldDefinition._meta.db_table
    if connection.vendor == "postgresql":
        return f"SELECT md5(string_agg({row}, ',' ORDER BY name)) FROM {table}"
    return f"SELECT group_concat(x, ',') FROM (SELECT {row} AS x FROM {table} ORDER BY name)"


def definitions_for(stamp: str | None) -> Definitions:
    """The dictionary as of ``stamp`` (from ``definitions_stamp_sql``), loaded once per stamp."""
    key = stamp or ""
    found = _definitions.get(key)
    if found is not None:
        return found
    rows = list(
        FieldDefinition.objects.values_list(
            "name", "field_type", "sensitivity", "is_active", "validation_regex", "choices"
        )
    )
    loaded = Definitions(
        field_types={n: t for n, t, _s, _a, _r, _c in rows},
        active=frozenset(n for n, _t, _s, a, _r, _c in rows if a),
        secret=frozenset(n for n, _t, s, _a, _r, _c in rows if s == Sensitivity.SECRET),
        rules=rules_from((n, r, c) for n, _t, _s, a, r, c in rows if a),
    )
    with _definitions_lock:
        _definitions.clear()  # only the current dictionary is worth keeping
        _definitions[key] = loaded
    return loaded


#
# Preparing one record (the pipeline's prepare, for one row)
#


@dataclass
class PreparedOne:
    key: str
    raw: dict[str, Any]
    normalized: dict[str, Any]
    flags: dict[str, str]
    record_hash: str


_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def prepare_one(*, key: str, cells: dict[str, str], mapping: dict[str, str], defs: Definitions) -> PreparedOne:
    """Raw cells, cleaned values, flags and the keyed content hash, exactly as
    ``ImportPipeline.prepare`` computes them for a row of a chunk."""
    columns = list(cells)
    mapped = {h: f for h, f in mapping.items() if h in cells}
    frame = pd.DataFrame([[cells[c] for c in columns]], columns=columns, dtype=object)
    values, flags = clean_columns(frame, mapped, defs.field_types, dayfirst=False, rules=defs.rules)
    raw = {h: v for h, v in cells.items() if v != ""}
    normalized = {n: v[0] for n, v in values.items() if v[0] is not None and v[0] != "" and v[0] != []}
    row_flags = {n: f[0] for n, f in flags.items() if f[0]}
    return PreparedOne(key, raw, normalized, row_flags, blind_indexer()(_dumps([raw, normalized])))


#
# Writing one record
#


class SingleRetry(Exception):  # noqa: N818 - a signal to start over, not an error
    """Another request wrote this key between our look-up and our write; start over."""


class SingleReplay(Exception):  # noqa: N818
    """The idempotency marker exists already (a concurrent request with the same key won)."""


@dataclass
class Found:
    pk: int
    record_hash: str
    customer_id: int | None
    raw: dict[str, Any]
    normalized: dict[str, Any]
    flags: dict[str, str]
    first_seen_at: datetime
    source_updated_at: datetime | None


@dataclass
class Outcome:
    status: str  # created | updated | unchanged
    source_record_id: int
    customer_id: int | None
    flags: dict[str, str] = field(default_factory=dict)  # reasons by column, as the error report gives them


@dataclass
class SingleRun:
    """What the caller knows of the run before anything is written."""

    source_id: int
    user_id: int | None
    user: Any
    channel: str
    original_filename: str
    options: dict[str, Any]
    secret_headers: set[str]


def store_one(
    *,
    run: SingleRun,
    record: PreparedOne,
    defs: Definitions,
    header_of: dict[str, str],
    marker=None,  # noqa: ANN001 - callable(run_id, outcome) -> unsaved model to insert first, or None
) -> tuple[ImportRun, Outcome]:
    """Store ``record`` as a completed run of one row. Must run inside a transaction; raises
    ``SingleRetry`` (roll back and call again) or ``SingleReplay`` (roll back, answer the
    stored response)."""
    if connection.vendor == "postgresql":
        return _store_postgres(run, record, defs, header_of, marker)
    return _store_portable(run, record, defs, header_of, marker)


def _reasons(flags: dict[str, str], header_of: dict[str, str]) -> dict[str, str]:
    return {header_of.get(name, name): reason for name, reason in flags.items()}


def _run_row(run: SingleRun, run_id: int | None, outcome_status: str, invalid: bool, now: datetime) -> ImportRun:
    from imports.choices import RunKind, RunStatus

    return ImportRun(
        pk=run_id,
        source_id=run.source_id,
        kind=RunKind.PUSH,
        status=RunStatus.COMPLETED,
        started_at=now,
        finished_at=now,
        created_by_id=run.user_id,
        original_filename=run.original_filename[:255],
        rows_total=1,
        rows_done=1,
        options=run.options,
        created=int(outcome_status == "created"),
        updated=int(outcome_status == "updated"),
        unchanged=int(outcome_status == "unchanged"),
        invalid=int(invalid),
    )


def _rows_for(
    run: SingleRun,
    run_row: ImportRun,
    record: PreparedOne,
    found: Found | None,
    defs: Definitions,
    header_of: dict[str, str],
    ids: tuple[int | None, int | None],
    now: datetime,
    ctx: ChangeContext,
) -> tuple[list[models.Model], Outcome, SourceRecord | None]:
    """The rows a new or changed record writes (besides the run), in dependency order."""
    sealed_raw = seal_values(record.raw, run.secret_headers) if run.secret_headers else record.raw
    sealed_normalized = seal_values(record.normalized, set(defs.secret))
    rows: list[models.Model] = []
    sr = None
    if found is None:
        customer_id, sr_id = ids
        values = customer_row(record.normalized, record.flags, defs.secret)
        customer = Customer(pk=customer_id, **values)
        customer.id_number_hash = blind_index(customer.id_number)
        customer.created_at = customer.updated_at = now
        sr = SourceRecord(
            pk=sr_id,
            source_id=run.source_id,
            source_key=record.key,
            customer_id=customer_id,
            raw=sealed_raw,
            normalized=sealed_normalized,
            flags=record.flags,
            record_hash=record.record_hash,
            first_seen_at=now,
            last_seen_at=now,
            updated_at=now,
        )
        data = feed_values({k: v for k, v in values.items() if k != "name_pinyin"})
        rows += [customer, *history_objects(Customer, [customer], "+", ctx, now), sr]
        outcome = Outcome("created", sr_id, customer_id)
        event = ChangeEvent(
            event_type=ChangeEventType.CREATED,
            customer_id=customer_id,
            changed_fields=sorted(data),
            data=seal_values(data, set(defs.secret)),
            channel=ctx.channel,
            ref=ctx.ref[:200],
            user_id=getattr(ctx.user, "pk", None),
        )
        tail = [
            *history_objects(SourceRecord, [sr], "+", ctx, now),
            ImportRunChange(
                run_id=run_row.pk, action=ChangeAction.CREATED, source_record_id=sr_id, customer_id=customer_id
            ),
            event,
        ]
    else:
        sr = SourceRecord(
            pk=found.pk,
            source_id=run.source_id,
            source_key=record.key,
            customer_id=found.customer_id,
            raw=sealed_raw,
            normalized=sealed_normalized,
            flags=record.flags,
            record_hash=record.record_hash,
            first_seen_at=found.first_seen_at,
            last_seen_at=now,
            source_updated_at=found.source_updated_at,
            updated_at=now,
        )
        outcome = Outcome("updated", found.pk, found.customer_id)
        rows.append(sr)
        tail = [
            ImportRunChange(
                run_id=run_row.pk,
                action=ChangeAction.UPDATED,
                source_record_id=found.pk,
                before={
                    "raw": found.raw,
                    "normalized": found.normalized,
                    "flags": found.flags,
                    "record_hash": found.record_hash,
                },
            ),
            *history_objects(SourceRecord, [sr], "~", ctx, now),
        ]
    return rows + tail, outcome, sr


def _issue(run_id: int, record: PreparedOne, run: SingleRun, reasons: dict[str, str]) -> ImportRunIssue:
    return ImportRunIssue(
        run_id=run_id,
        row_number=1,
        kind=IssueKind.INVALID,
        source_key=record.key,
        raw=seal_values(record.raw, run.secret_headers) if run.secret_headers else record.raw,
        reasons=reasons,
    )


#
# PostgreSQL: two statements
#


_insert_statements: dict[tuple, tuple[str, list[models.Field]]] = {}


def _insert_sql(obj: models.Model, *, ignore_conflicts: bool = False) -> tuple[str, list[Any]]:
    """The INSERT Django's compiler writes for ``obj`` (values prepared by the fields' own
    ``pre_save`` and ``get_db_prep_save``, as save() does); the statement text is kept per
    model, the compiler costing more CPU than the rest of a push's row building."""
    model = type(obj)
    with_pk = obj.pk is not None
    key = (model, with_pk, ignore_conflicts, connection.vendor)
    statement = _insert_statements.get(key)
    if statement is None:
        qn = connection.ops.quote_name
        fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
        sql = (
            f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))})"
        )
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        statement = _insert_statements[key] = (sql, fields)
    sql, fields = statement
    return sql, [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]


def _lookup_postgres(source_id: int, key: str) -> tuple[int, int, int, Found | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s), pg_advisory_xact_lock_shared(%s), "
            "nextval(pg_get_serial_sequence('imports_importrun', 'id')), "
            "nextval(pg_get_serial_sequence('crmhub_customer', 'id')), "
            "nextval(pg_get_serial_sequence('crmhub_sourcerecord', 'id')), "
            "sr.id, sr.record_hash, sr.customer_id, sr.raw, sr.normalized, sr.flags, sr.first_seen_at, "
            "sr.source_updated_at "
            "FROM (SELECT 1) AS one LEFT JOIN crmhub_sourcerecord sr ON sr.source_id = %s AND sr.source_key = %s",
            [STRIPE_LOCK_CLASS + key_stripe(key), source_id, OUTBOX_LOCK_KEY, source_id, key],
        )
        row = cursor.fetchone()
    _l1, _l2, run_id, customer_id, sr_id, pk, record_hash, owner, raw, normalized, flags, first, updated = row
    found = None
    if pk is not None:
        # Django has psycopg hand jsonb over as text (JSONField parses it itself).
        raw, normalized, flags = (json.loads(v) if isinstance(v, str) else v for v in (raw, normalized, flags))
        found = Found(pk, record_hash, owner, raw, normalized, flags, first, updated)
    return run_id, customer_id, sr_id, found


def _store_postgres(run, record, defs, header_of, marker):  # noqa: ANN001, ANN202
    run_id, customer_id, sr_id, found = _lookup_postgres(run.source_id, record.key)
    now = timezone.now()
    reasons = _reasons(record.flags, header_of)
    status = "created" if found is None else "unchanged" if found.record_hash == record.record_hash else "updated"
    run_row = _run_row(run, run_id, status, bool(record.flags), now)
    statements: list[tuple[str, list[Any]]] = []  # (sql returning one row per row written, params)
    must_write: list[int] = []  # positions of statements that must have written
    outcome = Outcome(status, found.pk if found else sr_id, found.customer_id if found else customer_id, reasons)
    if marker is not None:
        sql, params = _insert_sql(marker(run_id, outcome), ignore_conflicts=True)
        statements.append((sql + " RETURNING 1", params))
    statements.append(_insert_sql(run_row))
    with change_context(channel=run.channel, ref=f"import_run:{run_id}", user=run.user):
        ctx = current_change_context()
        if status == "unchanged":
            statements.append(
                ("UPDATE crmhub_sourcerecord SET last_seen_at = %s WHERE id = %s RETURNING 1", [now, found.pk])
            )
            must_write.append(len(statements) - 1)
        else:
            rows, _outcome, sr = _rows_for(run, run_row, record, found, defs, header_of, (customer_id, sr_id), now, ctx)
            for obj in rows:
                if obj is sr and found is None:
                    sql, params = _insert_sql(obj, ignore_conflicts=True)
                    statements.append((sql + " RETURNING 1", params))
                    must_write.append(len(statements) - 1)
                elif obj is sr:
                    prep = {
                        n: SourceRecord._meta.get_field(n).get_db_prep_save(getattr(sr, n), connection)
                        for n in ("raw", "normalized", "flags")
                    }
                    statements.append(
                        (
                            "UPDATE crmhub_sourcerecord SET raw = %s, normalized = %s, flags = %s, record_hash = %s, "
                            "last_seen_at = %s, updated_at = %s WHERE id = %s AND record_hash = %s RETURNING 1",
                            [
                                prep["raw"],
                                prep["normalized"],
                                prep["flags"],
                                sr.record_hash,
                                now,
                                now,
                                sr.pk,
                                found.record_hash,
                            ],
                        )
                    )
                    must_write.append(len(statements) - 1)
                else:
                    statements.append(_insert_sql(obj))
    if record.flags:
        statements.append(_insert_sql(_issue(run_id, record, run, reasons)))
    # One round trip: each statement a data-modifying CTE; the final SELECT says how many rows
    # each wrote (PostgreSQL runs them all, in the order the SELECT reads them).
    parts, params, counts = [], [], []
    for i, (sql, p) in enumerate(statements):
        if " RETURNING " not in sql:
            sql += " RETURNING 1"
        parts.append(f"w{i} AS ({sql})")
        params += p
        counts.append(f"(SELECT count(*) FROM w{i})")
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {', '.join(counts)}", params)
        written = cursor.fetchone()
    if marker is not None and not written[0]:
        raise SingleReplay
    if any(not written[i] for i in must_write):
        raise SingleRetry
    return run_row, outcome


#
# Other databases: the ORM, one row after another
#


def _store_portable(run, record, defs, header_of, marker):  # noqa: ANN001, ANN202
    found_row = (
        SourceRecord.objects.filter(source_id=run.source_id, source_key=record.key)
        .values_list(
            "pk", "record_hash", "customer_id", "raw", "normalized", "flags", "first_seen_at", "source_updated_at"
        )
        .first()
    )
    found = Found(*found_row) if found_row else None
    now = timezone.now()
    reasons = _reasons(record.flags, header_of)
    status = "created" if found is None else "unchanged" if found.record_hash == record.record_hash else "updated"
    run_row = _run_row(run, None, status, bool(record.flags), now)
    run_row.save()
    outcome = Outcome(status, found.pk if found else 0, found.customer_id if found else None, reasons)
    with change_context(channel=run.channel, ref=f"import_run:{run_row.pk}", user=run.user):
        ctx = current_change_context()
        if status == "unchanged":
            SourceRecord.objects.filter(pk=found.pk).update(last_seen_at=now)
        elif found is None:
            values = customer_row(record.normalized, record.flags, defs.secret)
            customer = Customer(**values)
            customer.id_number_hash = blind_index(customer.id_number)
            # bulk_create sends no signals: history is written explicitly, as the batch writers do.
            Customer.objects.bulk_create([customer])
            rows, _o, sr = _rows_for(run, run_row, record, None, defs, header_of, (customer.pk, None), now, ctx)
            Customer.history.model.objects.bulk_create(history_objects(Customer, [customer], "+", ctx, now))
            SourceRecord.objects.bulk_create([sr])
            for obj in rows:
                if isinstance(obj, (Customer, Customer.history.model)) or obj is sr:
                    continue
                if isinstance(obj, SourceRecord.history.model):
                    obj.id = sr.pk
                elif isinstance(obj, ImportRunChange):
                    obj.source_record_id = sr.pk
                type(obj).objects.bulk_create([obj])
            outcome.source_record_id, outcome.customer_id = sr.pk, customer.pk
        else:
            rows, _o, sr = _rows_for(run, run_row, record, found, defs, header_of, (None, None), now, ctx)
            SourceRecord.objects.filter(pk=found.pk).update(
                raw=sr.raw,
                normalized=sr.normalized,
                flags=sr.flags,
                record_hash=sr.record_hash,
                last_seen_at=now,
                updated_at=now,
            )
            for obj in rows:
                if obj is not sr:
                    type(obj).objects.bulk_create([obj])
    if record.flags:
        ImportRunIssue.objects.bulk_create([_issue(run_row.pk, record, run, reasons)])
    if marker is not None:
        marker(run_row.pk, outcome).save()  # an IntegrityError here is the caller's replay
    return run_row, outcome
