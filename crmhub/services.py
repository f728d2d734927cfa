"""Write operations of the core domain."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from crmhub.choices import SourceKind
from crmhub.dictionary import core_field_rows
from crmhub.models import Customer, FieldDefinition, Source, WorkerHeartbeat


def worker_heartbeat_beat(*, hostname: str, pid: int) -> None:
    now = timezone.now()
    updated = WorkerHeartbeat.objects.filter(hostname=hostname).update(last_seen=now, pid=pid)
    if not updated:
        WorkerHeartbeat.objects.update_or_create(
            hostname=hostname, defaults={"last_seen": now, "started_at": now, "pid": pid}
        )


def worker_heartbeat_clear(*, hostname: str) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


@transaction.atomic
def field_definitions_sync() -> int:
    """Create the core fields that are missing; never overwrite an admin's changes."""
    existing = set(FieldDefinition.objects.values_list("name", flat=True))
    missing = [FieldDefinition(**row) for row in core_field_rows() if row["name"] not in existing]
    FieldDefinition.objects.bulk_create(missing)
    if missing:
        from accounts.policy import policy_stamp_bump

        policy_stamp_bump()  # bulk_create sends no post_save: tell cached policies
    return len(missing)


@transaction.atomic
def source_get_or_create(*, code: str, name: str = "", kind: str = SourceKind.FILE) -> tuple[Source, bool]:
    """The source with ``code``, created on first use (as ``import_file --source`` does)."""
    source = Source.objects.filter(code=code).first()
    if source is not None:
        return source, False
    source = Source(code=code, name=name or code, kind=kind)
    source.full_clean()
    source.save()
    return source, True


def worker_probe_record(*, hostname: str, nonce: str) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname).update(probe_nonce=nonce)


def customer_values_from_normalized(normalized: dict) -> dict:
    """Customer column values (plus ``custom``) from a source record's normalized values.

    Normalized values are JSON: dates arrive as ISO strings. Keys that are not core fields
    go to ``custom``; empty values are left out so that they never overwrite known ones.
    """
    from datetime import date

    values: dict = {}
    custom: dict = {}
    for name, value in normalized.items():
        if value is None or value == "" or value == []:
            continue
        if name in Customer.CORE_FIELDS:
            if name == "birth_date" and isinstance(value, str):
                try:
                    value = date.fromisoformat(value)
                except ValueError:
                    continue  # an unparsed date stays in the source record, flagged there
            values[name] = value
        else:
            custom[name] = value
    if custom:
        values["custom"] = custom
    return values
