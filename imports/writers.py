"""Writing a classified chunk: new source records (and their golden customers), changed
ones (recording the values before, for rollback) and unchanged ones.

Two writers give the same results. ``PostgresWriter`` streams rows with COPY into a
temporary staging table, then runs one set-based insert (new) and update (changed) of
``crmhub_sourcerecord`` and set-based INSERT … SELECTs into the customers, the history tables
and the run's change log. ``PortableWriter`` (SQLite and anything else) uses bulk_create/bulk_update in
batches and writes the historical rows as objects. Neither sends per-object signals. Both
also store the rows of the run's error report (``store_issues``: COPY on PostgreSQL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, models

from accounts.crypto import blind_index, encrypt, secret_field_names
from crmhub.choices import ChangeEventType
from crmhub.context import ChangeContext
from crmhub.models import Customer, SourceRecord
from crmhub.outbox import changes_insert_select_sql, changes_writer_begin
from imports.choices import ChangeAction
from imports.history import history_insert_sql, history_objects, history_params
from imports.linking import (
    CustomerCreator,
    CustomerExtras,
    Link,
    customers_sql_possible,
    link_new_records_to_customers,
    new_customers_sql,
)
from imports.locks import source_lock_sql
from imports.models import ImportRunChange, ImportRunIssue

BATCH = 500


class PreparedRow:
    """A row ready to be classified and written: key, flags, content hash, and what the writer
    stores. ``raw`` / ``normalized`` are plaintext dicts; rows of a chunk prepared column-wise
    (``imports.rows``) build them on first use from the chunk's columns (``chunk``, ``at``),
    since most rows are written from texts made ahead and never need them. ``sealed_raw`` /
    ``sealed_normalized`` are their copies with secret values encrypted (after ``sealed``)."""

    __slots__ = (
        "row_number",
        "key",
        "flags",
        "record_hash",
        "sealed_raw_json",
        "sealed_normalized_json",
        "sealed",
        "customer_extras",
        "stage_fields",
        "stage_extras",
        "stage_values",
        "_raw",
        "_normalized",
        "_sealed_raw",
        "_sealed_normalized",
        "_chunk",
        "_at",
    )

    def __init__(
        self,
        row_number: int,
        key: str,
        raw: dict[str, Any] | None,
        normalized: dict[str, Any] | None,
        flags: dict[str, str],
        record_hash: str,
        *,
        sealed_raw_json: str | None = None,
        sealed_normalized_json: str | None = None,
        chunk: Any = None,  # noqa: ANN401 - imports.rows.ChunkColumns
        at: int = 0,
    ) -> None:
        self.row_number = row_number
        self.key = key
        self._raw = raw  # plaintext, {header: value}
        self._normalized = normalized  # plaintext, {field: value}
        self.flags = flags
        self.record_hash = record_hash
        # JSON texts of the sealed dicts when the pipeline has them already (else written from the dicts)
        self.sealed_raw_json = sealed_raw_json
        self.sealed_normalized_json = sealed_normalized_json
        self.sealed = False
        self.customer_extras: tuple | None = None  # linking.CustomerExtras of the row, when computed ahead
        # The row's staging COPY fields when made ahead (``imports.rows``): from source_key to
        # record_hash, and the customer extras (pinyin to fields).
        self.stage_fields: str | None = None
        self.stage_extras: str | None = None
        # The new customer's values (``linking.customer_values_texts``) as a COPY field, when made ahead.
        self.stage_values: str | None = None
        self._sealed_raw: dict[str, Any] | None = None
        self._sealed_normalized: dict[str, Any] | None = None
        self._chunk = chunk
        self._at = at

    @property
    def raw(self) -> dict[str, Any]:
        if self._raw is None:
            self._raw = self._chunk.raw(self._at)
        return self._raw

    @property
    def normalized(self) -> dict[str, Any]:
        if self._normalized is None:
            self._normalized = self._chunk.normalized(self._at)
        return self._normalized

    @property
    def sealed_raw(self) -> dict[str, Any]:
        if self._sealed_raw is None:
            if not self.sealed:
                return {}
            self._sealed_raw = self._chunk.seal(self.raw, self._chunk.secret_headers)
        return self._sealed_raw

    @sealed_raw.setter
    def sealed_raw(self, value: dict[str, Any]) -> None:
        self._sealed_raw = value

    @property
    def sealed_normalized(self) -> dict[str, Any]:
        if self._sealed_normalized is None:
            if not self.sealed:
                return {}
            self._sealed_normalized = self._chunk.seal(self.normalized, self._chunk.secret_fields)
        return self._sealed_normalized

    @sealed_normalized.setter
    def sealed_normalized(self, value: dict[str, Any]) -> None:
        self._sealed_normalized = value


@dataclass(frozen=True)
class Existing:
    pk: int
    record_hash: str
    customer_id: int | None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


IssueRow = tuple[int, str, str, dict[str, Any], dict[str, str]]  # row number, kind, key, raw (sealed), reasons


class PortableWriter:
    def store_issues(self, run_id: int, issues: list[IssueRow]) -> None:
        ImportRunIssue.objects.bulk_create(
            [
                ImportRunIssue(run_id=run_id, row_number=n, kind=kind, source_key=key, raw=raw, reasons=reasons)
                for n, kind, key, raw, reasons in issues
            ],
            batch_size=1000,
        )

    def lock_source(self, source_id: int, stripes: Iterable[int]) -> None:
        """SQLite serialises writers already (IMMEDIATE transactions)."""

    def begin_bulk_chunk(self) -> None:
        """Nothing to relax on SQLite."""

    def existing(self, source_id: int, keys: list[str]) -> dict[str, Existing]:
        found: dict[str, Existing] = {}
        for i in range(0, len(keys), BATCH):
            for key, pk, record_hash, customer_id in SourceRecord.objects.filter(
                source_id=source_id, source_key__in=keys[i : i + BATCH]
            ).values_list("source_key", "pk", "record_hash", "customer_id"):
                found[key] = Existing(pk, record_hash, customer_id)
        return found

    def create_customers(self, rows: list[dict[str, Any]]) -> list[int]:
        objs = [Customer(**row) for row in rows]
        for obj in objs:
            obj.id_number_hash = blind_index(obj.id_number)
        Customer.objects.bulk_create(objs, batch_size=BATCH)
        self._pending_customer_history = objs
        return [obj.pk for obj in objs]

    def write(
        self,
        *,
        run_id: int,
        source_id: int,
        new: list[PreparedRow],
        changed: list[tuple[PreparedRow, Existing]],
        unchanged: list[int],
        ctx: ChangeContext,
        now: datetime,
    ) -> None:
        new = _linked(new, self)
        customers = getattr(self, "_pending_customer_history", [])
        if customers:
            Customer.history.model.objects.bulk_create(
                history_objects(Customer, customers, "+", ctx, now), batch_size=BATCH
            )
            self._pending_customer_history = []
        if new:
            objs = [
                SourceRecord(
                    source_id=source_id,
                    source_key=row.key,
                    customer_id=link.customer_id,
                    raw=row.sealed_raw,
                    normalized=row.sealed_normalized,
                    flags=row.flags,
                    record_hash=row.record_hash,
                    first_seen_at=now,
                    last_seen_at=now,
                    updated_at=now,
                )
                for row, link in new
            ]
            SourceRecord.objects.bulk_create(objs, batch_size=BATCH)
            SourceRecord.history.model.objects.bulk_create(
                history_objects(SourceRecord, objs, "+", ctx, now), batch_size=BATCH
            )
            ImportRunChange.objects.bulk_create(
                [
                    ImportRunChange(
                        run_id=run_id,
                        action=ChangeAction.CREATED,
                        source_record_id=obj.pk,
                        customer_id=link.customer_id if link.created else None,
                    )
                    for obj, (_row, link) in zip(objs, new, strict=True)
                ],
                batch_size=BATCH,
            )
        if changed:
            records = SourceRecord.objects.in_bulk([e.pk for _row, e in changed])
            log, objs = [], []
            for row, existing in changed:
                obj = records[existing.pk]
                log.append(
                    ImportRunChange(
                        run_id=run_id,
                        action=ChangeAction.UPDATED,
                        source_record_id=obj.pk,
                        before={
                            "raw": obj.raw,
                            "normalized": obj.normalized,
                            "flags": obj.flags,
                            "record_hash": obj.record_hash,
                        },
                    )
                )
                obj.raw, obj.normalized, obj.flags = row.sealed_raw, row.sealed_normalized, row.flags
                obj.record_hash, obj.last_seen_at, obj.updated_at = row.record_hash, now, now
                objs.append(obj)
            ImportRunChange.objects.bulk_create(log, batch_size=BATCH)
            SourceRecord.objects.bulk_update(
                objs, ["raw", "normalized", "flags", "record_hash", "last_seen_at", "updated_at"], batch_size=BATCH
            )
            SourceRecord.history.model.objects.bulk_create(
                history_objects(SourceRecord, objs, "~", ctx, now), batch_size=BATCH
            )
        for i in range(0, len(unchanged), BATCH):
            SourceRecord.objects.filter(pk__in=unchanged[i : i + BATCH]).update(last_seen_at=now)


def _linked(rows: list[PreparedRow], creator: CustomerCreator) -> list[tuple[PreparedRow, Link]]:
    if not rows:
        return []
    links = link_new_records_to_customers(records=[(r.normalized, r.flags) for r in rows], creator=creator)
    return list(zip(rows, links, strict=True))


class _CustomerCopy:
    """Rows for COPY into crmhub_customer: a template of column defaults (JSON defaults
    pre-serialised) into which each customer row's few values are placed."""

    def __init__(self) -> None:
        self.columns: list[str] = []
        self.template: list[Any] = []
        self.index: dict[str, int] = {}
        self.json_names: set[str] = set()
        self.stamp: list[int] = []
        for f in Customer._meta.concrete_fields:
            name = f.attname
            if name == "id":
                continue
            self.index[name] = len(self.columns)
            self.columns.append(f.column)
            if name in ("created_at", "updated_at"):
                self.stamp.append(self.index[name])
                self.template.append(None)
            elif name in ("id_number", "id_number_hash"):
                self.template.append("")
            elif isinstance(f, models.JSONField):
                self.json_names.add(name)
                self.template.append(_dumps(f.get_default()))
            else:
                self.template.append(None if f.null and not f.has_default() else f.get_default())
        self.id_number_at, self.id_hash_at = self.index["id_number"], self.index["id_number_hash"]

    def rows(self, pks: list[int], rows: list[dict[str, Any]], now: datetime):
        template = list(self.template)
        for i in self.stamp:
            template[i] = now
        index, json_names = self.index, self.json_names
        for pk, row in zip(pks, rows, strict=True):
            out = list(template)
            for name, value in row.items():
                at = index.get(name)
                if at is None:
                    continue
                if name in json_names:
                    value = _dumps(value)
                elif name == "id_number":
                    if value:
                        out[self.id_hash_at] = blind_index(value)
                        value = encrypt(value)
                    else:
                        value = ""
                out[at] = value
            yield [pk, *out]


STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS imports_stage (
    sr_id bigint NOT NULL, is_new boolean NOT NULL, customer_id bigint, customer_created boolean NOT NULL,
    source_key varchar(255) NOT NULL, raw jsonb NOT NULL, normalized jsonb NOT NULL, flags jsonb NOT NULL,
    record_hash varchar(64) NOT NULL, pinyin varchar(200), id_hash varchar(64), birth_date date, fields jsonb,
    cv jsonb
) ON COMMIT DELETE ROWS
"""
STAGE_COLUMNS = (
    "sr_id, is_new, customer_id, customer_created, source_key, raw, normalized, flags, record_hash, pinyin, id_hash, "
    "birth_date, fields, cv"
)


#
# The staging table's COPY text
#

# COPY's text format: these characters are written as escapes (as psycopg's write_row does).
_COPY_SPECIAL = re.compile("[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}
_NO_EXTRAS = "\\N\t\\N\t\\N\t\\N"


def copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    if _COPY_SPECIAL.search(value) is None:
        return value
    return _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m[0]], value)


def copy_json(text: str) -> str:
    """A JSON text as a COPY field: JSON escapes every control character, so only its
    backslashes need doubling."""
    return text.replace("\\", "\\\\") if "\\" in text else text


def stage_fields(row: PreparedRow) -> str:
    """The row's staging fields from source_key to record_hash (made ahead by ``imports.rows``)."""
    if row.stage_fields is not None:
        return row.stage_fields
    return "\t".join(
        (
            copy_text(row.key),
            copy_json(row.sealed_raw_json or _dumps(row.sealed_raw)),
            copy_json(row.sealed_normalized_json or _dumps(row.sealed_normalized)),
            copy_json(_dumps(row.flags)) if row.flags else "{}",
            row.record_hash,
        )
    )


def extras_fields(extras: tuple) -> str:
    """``linking.CustomerExtras`` (pinyin, ID blind index, birth date, fields) as COPY fields."""
    pinyin, id_hash, birth, fields = extras
    return "\t".join((copy_text(pinyin), id_hash, "\\N" if birth is None else birth.isoformat(), copy_text(fields)))


def stage_copy_text(
    new_ids: list[int],
    new: list[PreparedRow],
    customers: list[tuple[int, bool]],
    changed: list[tuple[PreparedRow, Existing]],
    *,
    extras: CustomerExtras | None,
) -> str:
    """The COPY text (``STAGE_COLUMNS``) of a chunk's new records (their ids, and their
    customers' ids and whether they are new) and changed ones. ``extras`` computes the
    customer extras of rows that do not carry them (None: the customers are not built in SQL).
    The customer values (``cv``) are staged where the row carries them, else NULL (built in SQL)."""
    lines = []
    for pk, row, (customer_id, created) in zip(new_ids, new, customers, strict=True):
        if extras is None:
            extra = _NO_EXTRAS
        elif row.stage_extras is not None:
            extra = row.stage_extras
        else:
            extra = extras_fields(row.customer_extras or extras(row.normalized, row.flags))
        values = "\\N" if extras is None or row.stage_values is None else row.stage_values
        lines.append(f"{pk}\tt\t{customer_id}\t{'t' if created else 'f'}\t{stage_fields(row)}\t{extra}\t{values}\n")
    for row, existing in changed:
        customer_id = "\\N" if existing.customer_id is None else existing.customer_id
        lines.append(f"{existing.pk}\tf\t{customer_id}\tf\t{stage_fields(row)}\t{_NO_EXTRAS}\t\\N\n")
    return "".join(lines)


class PostgresWriter:
    # The pipeline makes each row's staging COPY fields ahead, in its prepare thread.
    stages_copy_text = True

    def __init__(self) -> None:
        self._customer_copy = _CustomerCopy()
        self._new_customer_ids: list[int] = []
        self._sequences: dict[str, str] = {}
        self._reserved: dict[str, list[int]] = {}
        # Golden customers and their events are built in SQL from the staged records when
        # that gives what ``customer_row`` gives (see ``customers_sql_possible``).
        self.customers_in_sql = customers_sql_possible(secret_field_names())
        self.customer_extras = CustomerExtras()

    def store_issues(self, run_id: int, issues: list[IssueRow]) -> None:
        if not issues:
            return
        with (
            connection.cursor() as cursor,
            cursor.copy(
                f"COPY {ImportRunIssue._meta.db_table} (run_id, row_number, kind, source_key, raw, reasons) FROM STDIN"
            ) as copy,
        ):
            for n, kind, key, raw, reasons in issues:
                copy.write_row((run_id, n, kind, key, _dumps(raw), _dumps(reasons)))

    def begin_bulk_chunk(self) -> None:
        """A chunk of a file or connector run commits without waiting for its WAL flush: the
        commit's fsync was a large part of each chunk on a busy disk. A server crash can lose at
        most the last chunks of a run that had not finished (a connector's cursor is saved in the
        same transaction, so its next sync reads them again); the run's final status is written
        by an ordinary commit, which flushes everything before it. Not used for pushes, whose
        reply promises the records are stored."""
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            # The new customers' values are materialised per chunk: kept in memory, not spilled.
            cursor.execute("SET LOCAL work_mem = '64MB'")

    def lock_source(self, source_id: int, stripes: Iterable[int]) -> None:
        """The source's gate and the stripes of the keys to write, exclusively (``imports.locks``):
        classification and upsert see the same rows."""
        with connection.cursor() as cursor:
            cursor.execute(*source_lock_sql(source_id, stripes, gate=True))

    def existing(self, source_id: int, keys: list[str]) -> dict[str, Existing]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT source_key, id, record_hash, customer_id FROM crmhub_sourcerecord "
                "WHERE source_id = %s AND source_key = ANY(%s)",
                [source_id, keys],
            )
            return {key: Existing(pk, h, c) for key, pk, h, c in cursor.fetchall()}

    def reserve_ids(self, table: str, ids: list[int]) -> None:
        """The ids the next allocation for ``table`` hands out, drawn before by ``allocate_ids``:
        a chunk written by several lanes gets its new ids in file order (``imports.lanes``)."""
        self._reserved[table] = list(ids)

    def allocate_ids(self, table: str, n: int) -> list[int]:
        return self._allocate(table, n)

    def _allocate(self, table: str, n: int) -> list[int]:
        """``n`` ids from the table's sequence. The sequence is named once: looking it up in
        every ``nextval`` (pg_get_serial_sequence per row) cost 16 µs an id."""
        reserved = self._reserved.pop(table, None)
        if reserved is not None:
            if len(reserved) != n:
                raise RuntimeError(f"{n} ids of {table} wanted, {len(reserved)} reserved")
            return reserved
        if not n:
            return []
        with connection.cursor() as cursor:
            sequence = self._sequences.get(table)
            if sequence is None:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                sequence = self._sequences[table] = cursor.fetchone()[0]
            cursor.execute("SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)", [sequence, n])
            return cursor.fetchone()[0]

    def create_customers(self, rows: list[dict[str, Any]]) -> list[int]:
        from django.utils import timezone

        ids = self._allocate(Customer._meta.db_table, len(rows))
        now = timezone.now()
        plan = self._customer_copy
        columns = ", ".join(["id", *plan.columns])
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {Customer._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            for values in plan.rows(ids, rows, now):
                copy.write_row(values)
        self._new_customer_ids = ids
        return ids

    def write(
        self,
        *,
        run_id: int,
        source_id: int,
        new: list[PreparedRow],
        changed: list[tuple[PreparedRow, Existing]],
        unchanged: list[int],
        ctx: ChangeContext,
        now: datetime,
    ) -> None:
        in_sql = self.customers_in_sql
        if in_sql:
            customer_ids = self._allocate(Customer._meta.db_table, len(new))
            customers = [(customer_id, True) for customer_id in customer_ids]
        else:
            customers = [(link.customer_id, link.created) for _row, link in _linked(new, self)]
        with connection.cursor() as cursor:
            if self._new_customer_ids:
                cursor.execute(
                    history_insert_sql(
                        Customer, from_sql=f"FROM {Customer._meta.db_table} t WHERE t.id = ANY(%(ids)s)"
                    ),
                    history_params(ctx, now, history_type="+", ids=self._new_customer_ids),
                )
                self._new_customer_ids = []
            if new or changed:
                new_ids = self._allocate(SourceRecord._meta.db_table, len(new))
                cursor.execute(STAGE_DDL)
                with cursor.copy(f"COPY imports_stage ({STAGE_COLUMNS}) FROM STDIN") as copy:
                    copy.write(
                        stage_copy_text(
                            new_ids, new, customers, changed, extras=self.customer_extras if in_sql else None
                        )
                    )
                params = {"run": run_id, "source": source_id, "now": now}
                if in_sql and new:
                    self._insert_customers(cursor, ctx, now)
                # The values before, for rollback; then the new records are inserted and the changed
                # ones updated, in one statement that hands its rows to the history insert (no second
                # lookup). No ON CONFLICT: the source's lock (``lock_source``) is held since
                # ``existing`` classified the rows, so a new key cannot exist yet, and a plain insert
                # costs a third less than a speculative one.
                if changed:
                    cursor.execute(
                        "INSERT INTO imports_importrunchange (run_id, action, source_record_id, customer_id, before) "
                        "SELECT %(run)s, 'updated', sr.id, NULL, jsonb_build_object('raw', sr.raw, 'normalized', "
                        "sr.normalized, 'flags', sr.flags, 'record_hash', sr.record_hash) "
                        "FROM imports_stage s JOIN crmhub_sourcerecord sr ON sr.id = s.sr_id WHERE NOT s.is_new "
                        "ORDER BY sr.id",
                        params,
                    )
                inserted = (
                    "INSERT INTO crmhub_sourcerecord (id, source_id, source_key, customer_id, raw, normalized, flags, "
                    "record_hash, first_seen_at, last_seen_at, source_updated_at, updated_at) "
                    "SELECT s.sr_id, %(source)s, s.source_key, s.customer_id, s.raw, s.normalized, s.flags, "
                    "s.record_hash, %(now)s, %(now)s, NULL, %(now)s FROM imports_stage s WHERE s.is_new "
                    "RETURNING *"
                )
                updated = (
                    "UPDATE crmhub_sourcerecord sr SET raw = s.raw, normalized = s.normalized, flags = s.flags, "
                    "record_hash = s.record_hash, last_seen_at = %(now)s, updated_at = %(now)s "
                    "FROM imports_stage s WHERE NOT s.is_new AND sr.id = s.sr_id RETURNING sr.*"
                )
                cursor.execute(
                    f"WITH ins AS ({inserted}), upd AS ({updated}), up AS "
                    "(SELECT ins.*, '+' AS history_type FROM ins UNION ALL SELECT upd.*, '~' FROM upd) "
                    + history_insert_sql(SourceRecord, from_sql="FROM up t", history_type_sql="t.history_type"),
                    {**params, **history_params(ctx, now)},
                )
                if new:
                    cursor.execute(
                        "INSERT INTO imports_importrunchange (run_id, action, source_record_id, customer_id, before) "
                        "SELECT %(run)s, 'created', s.sr_id, CASE WHEN s.customer_created THEN s.customer_id END, "
                        "NULL FROM imports_stage s WHERE s.is_new ORDER BY s.sr_id",
                        params,
                    )
                cursor.execute("TRUNCATE imports_stage")
            if unchanged:
                cursor.execute("UPDATE crmhub_sourcerecord SET last_seen_at = %s WHERE id = ANY(%s)", [now, unchanged])

    @staticmethod
    def _insert_customers(cursor: Any, ctx: ChangeContext, now: datetime) -> None:
        """The golden customers of the staged new records, their history rows and their
        "created" events, in one statement."""
        changes_writer_begin()
        with_sql, params = new_customers_sql(stage_sql="FROM imports_stage s WHERE s.customer_created")
        history_sql = history_insert_sql(Customer, from_sql="FROM ins t")
        events_sql, event_params = changes_insert_select_sql(
            event_type=ChangeEventType.CREATED,
            customer_id_sql="src.id",
            data_sql="src.cv",
            changed_fields_sql="src.fields",
            from_sql="FROM src ORDER BY src.id",
        )
        cursor.execute(
            f"{with_sql}, hist AS ({history_sql}) {events_sql}",
            {**params, **event_params, **history_params(ctx, now, history_type="+"), "now": now},
        )


def writer_for_connection() -> PortableWriter | PostgresWriter:
    return PostgresWriter() if connection.vendor == "postgresql" else PortableWriter()
