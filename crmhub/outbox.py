"""The change outbox and the feed built on it.

Writers call ``change_record`` / ``changes_record_bulk`` inside the transaction that changes
golden records, so an event exists exactly when its change committed. Consumers (the
change-feed API, webhooks) read events by ``position``.

Why positions are assigned after commit: ids come from a sequence at insert time, so a
transaction that inserted early may commit an event with a smaller id after a consumer has
already read past it. ``outbox_sequence`` numbers events only when no writer is in flight:
* on PostgreSQL every writer holds a shared advisory lock from its first event to its commit,
  and the sequencer takes the same lock exclusively (waiting briefly for in-flight writers),
  so every event it can see is final and none it cannot see has a smaller id. The lock is
  ours alone: transactions elsewhere in the cluster never hold the feed back;
* on SQLite writers are serialized, so everything committed is final.
Per-customer order holds because writers update the customer row (taking its lock) before
they write its event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.crypto import seal_values, secret_field_names
from crmhub.context import current_change_context
from crmhub.models import ChangeEvent

OUTBOX_LOCK_KEY = 0x63726D68  # "crmh": writers hold it shared, the sequencer exclusively
SEQUENCER_WAIT = "2s"  # how long the sequencer waits for in-flight writers before trying later
SEQUENCE_BATCH = 50_000


@dataclass(frozen=True)
class Change:
    """One change to one golden record, as a writer reports it."""

    event_type: str
    customer_id: int
    changed_fields: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _hold_writer_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [OUTBOX_LOCK_KEY])


def changes_record_bulk(changes: Iterable[Change], *, secret_names: set[str] | None = None) -> int:
    """Write ``changes`` to the outbox; must run inside the transaction of the change."""
    changes = list(changes)
    if not changes:
        return 0
    if not connection.in_atomic_block:
        raise RuntimeError("outbox events must be written inside the transaction that makes the change")
    ctx = current_change_context()
    user_id = getattr(ctx.user, "pk", None)
    _hold_writer_lock()
    secret_names = secret_field_names() if secret_names is None else secret_names
    if connection.vendor == "postgresql" and len(changes) >= COPY_THRESHOLD:
        _copy_events(changes, secret_names, channel=ctx.channel, ref=ctx.ref[:200], user_id=user_id)
        return len(changes)
    ChangeEvent.objects.bulk_create(
        [
            ChangeEvent(
                event_type=c.event_type,
                customer_id=c.customer_id,
                changed_fields=list(c.changed_fields),
                data=seal_values(c.data, secret_names),
                channel=ctx.channel,
                ref=ctx.ref[:200],
                user_id=user_id,
            )
            for c in changes
        ],
        batch_size=5000,
    )
    return len(changes)


COPY_THRESHOLD = 200  # from this many events on, PostgreSQL gets them through COPY
_COPY_COLUMNS = (
    "event_id",
    "event_type",
    "customer_id",
    "changed_fields",
    "data",
    "channel",
    "ref",
    "user_id",
    "occurred_at",
)


def _copy_events(changes: list[Change], secret_names: set[str], *, channel: str, ref: str, user_id: int | None) -> None:
    """The same rows bulk_create would write, streamed with COPY (bulk imports write one per new record)."""
    encoder = ChangeEvent._meta.get_field("data").encoder
    now = timezone.now()
    columns = ", ".join(ChangeEvent._meta.get_field(n).column for n in _COPY_COLUMNS)
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {ChangeEvent._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        field_lists: dict[tuple, str] = {}  # a bulk write repeats few lists of changed fields
        for c in changes:
            data = seal_values(c.data, secret_names) if secret_names & c.data.keys() else c.data
            changed = tuple(c.changed_fields)
            changed_json = field_lists.get(changed)
            if changed_json is None:
                changed_json = field_lists[changed] = json.dumps(list(changed), cls=encoder)
            copy.write_row(
                (
                    uuid.uuid4(),
                    c.event_type,
                    c.customer_id,
                    changed_json,
                    json.dumps(data, cls=encoder),
                    channel,
                    ref,
                    user_id,
                    now,
                )
            )


def changes_insert_select_sql(
    *, event_type: str, customer_id_sql: str, data_sql: str, from_sql: str, changed_fields_sql: str | None = None
) -> tuple[str, dict]:
    """One INSERT … SELECT of events, for writers that build golden records set-based: one event
    of ``event_type`` per row of ``from_sql`` (``FROM …``), its customer and data (jsonb,
    secret values already sealed) given as SQL expressions, the changed fields being the keys
    of the data in Python's sort order (or ``changed_fields_sql``, a jsonb list the caller
    knows already). Call ``changes_writer_begin`` first, in the transaction."""
    ctx = current_change_context()
    columns = ", ".join(ChangeEvent._meta.get_field(n).column for n in _COPY_COLUMNS)
    changed = changed_fields_sql or (
        f"COALESCE((SELECT jsonb_agg(k ORDER BY k COLLATE \"C\") FROM jsonb_object_keys({data_sql}) AS k), '[]')"
    )
    sql = (
        f"INSERT INTO {ChangeEvent._meta.db_table} ({columns}) "
        f"SELECT gen_random_uuid(), %(ev_type)s, {customer_id_sql}, {changed}, {data_sql}, %(ev_channel)s, "
        f"%(ev_ref)s, %(ev_user)s, %(ev_now)s {from_sql}"
    )
    params = {
        "ev_type": event_type,
        "ev_channel": ctx.channel,
        "ev_ref": ctx.ref[:200],
        "ev_user": getattr(ctx.user, "pk", None),
        "ev_now": timezone.now(),
    }
    return sql, params


def changes_writer_begin() -> None:
    """What ``changes_record_bulk`` does before writing, for writers that insert events in SQL."""
    if not connection.in_atomic_block:
        raise RuntimeError("outbox events must be written inside the transaction that makes the change")
    _hold_writer_lock()


def change_record(
    *, event_type: str, customer_id: int, changed_fields: list[str] | None = None, data: dict[str, Any] | None = None
) -> None:
    changes_record_bulk([Change(event_type, customer_id, changed_fields or [], data or {})])


def feed_values(values: dict[str, Any]) -> dict[str, Any]:
    """Dictionary values made JSON-ready for an event's ``data`` (dates as ISO strings)."""
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items()}


def event_values(event: ChangeEvent) -> dict[str, Any]:
    """An event's personal values keyed by data-dictionary name. Writers keep custom-field
    values under "custom", as ``Customer.custom`` does; consumers get each beside the core
    fields, so that each is filtered and masked by its own field's policy."""
    values: dict[str, Any] = {}
    for key, value in event.data.items():
        if key.startswith("_"):
            continue
        if key == "custom" and isinstance(value, dict):
            values.update(value)
        else:
            values[key] = value
    return values


def event_changed_fields(event: ChangeEvent) -> list[str]:
    """The event's changed fields by data-dictionary name ("custom" stands for the custom
    fields its data holds)."""
    custom = event.data.get("custom")
    names: list[str] = []
    for name in event.changed_fields:
        if name == "custom":
            names.extend(sorted(custom) if isinstance(custom, dict) else [])
        else:
            names.append(name)
    return names


def related_ids(event: ChangeEvent) -> dict[str, Any]:
    """The structural part of an event's data: ids that tie events together (``merged_ids``
    of a survivor, ``merged_into`` of a tombstone, ``restored`` by an unmerge), never
    personal values. Writers store them under keys starting with "_"."""
    return {k[1:]: v for k, v in event.data.items() if k.startswith("_")}


def outbox_sequence() -> int:
    """Give final, unnumbered events their feed positions; returns how many were numbered."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL lock_timeout = '{SEQUENCER_WAIT}'")
            try:
                with transaction.atomic():
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [OUTBOX_LOCK_KEY])
            except OperationalError:
                return 0  # a long writer is still in flight; its events are numbered next time
        table = ChangeEvent._meta.db_table
        cursor.execute(
            f"""
            UPDATE {table} SET position = numbered.base + numbered.rn
            FROM (
                SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS rn,
                       (SELECT COALESCE(MAX(position), 0) FROM {table}) AS base
                FROM {table}
                WHERE position IS NULL
                ORDER BY id
                LIMIT {SEQUENCE_BATCH}
            ) AS numbered
            WHERE {table}.id = numbered.id
            """  # noqa: S608 - table name and limits are ours, no user input
        )
        return cursor.rowcount


def changes_after(*, after: int, limit: int) -> QuerySet[ChangeEvent]:
    """Events past the cursor ``after``, in feed order (numbering any that became final)."""
    outbox_sequence()
    return ChangeEvent.objects.filter(position__gt=after).order_by("position")[:limit]
