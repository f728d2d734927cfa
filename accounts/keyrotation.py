"""Re-encryption of everything sealed under an older FIELD_ENCRYPTION_KEY.

Put the new key first in FIELD_ENCRYPTION_KEY (keeping the old ones after it), run
``manage.py rotate_field_keys``, then drop the old keys. Rows are processed in primary-key
batches, each in its own transaction; rows already under the primary key (and with an up
to date blind index) are left alone, so the command is idempotent and can be re-run after
an interruption.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import models, transaction
from django.db.models.functions import Cast

from accounts.crypto import CIPHERTEXT_PREFIX, blind_index, decrypt, encrypt, is_current, rotate_values


def _batches(qs: models.QuerySet, batch_size: int) -> Any:
    last = 0
    while True:
        pks = list(qs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return
        yield pks
        last = pks[-1]


def _rotate_encrypted_column(
    model: type[models.Model], column: str, *, hash_column: str | None, batch_size: int, pk_name: str = "pk"
) -> dict[str, int]:
    """Re-encrypt an EncryptedTextField column, reading the stored ciphertext directly."""
    counts = {"rows": 0, "reencrypted": 0, "reindexed": 0}
    base = model._default_manager.exclude(**{column: ""}).exclude(**{f"{column}__isnull": True})
    for pks in _batches(base, batch_size):
        with transaction.atomic():
            fields = ["pk", "stored"] + ([hash_column] if hash_column else [])
            rows = (
                model._default_manager.filter(pk__in=pks)
                .annotate(stored=Cast(column, output_field=models.TextField()))
                .values_list(*fields)
            )
            changed = []
            for row in rows:
                pk, stored = row[0], row[1]
                counts["rows"] += 1
                plain = decrypt(stored)
                updates: dict[str, Any] = {}
                if not stored.startswith(CIPHERTEXT_PREFIX) or not is_current(stored):
                    updates[column] = encrypt(plain)
                    counts["reencrypted"] += 1
                if hash_column:
                    wanted = blind_index(plain)
                    if row[2] != wanted:
                        updates[hash_column] = wanted
                        counts["reindexed"] += 1
                if updates:
                    changed.append((pk, updates))
            _bulk_write(model, changed)
    return counts


def _bulk_write(model: type[models.Model], changed: list[tuple[Any, dict[str, Any]]]) -> None:
    """One UPDATE per column set for a batch (bulk_update: no save(), so no history row and
    no version bump; the values themselves are unchanged)."""
    by_fields: dict[tuple[str, ...], list[models.Model]] = {}
    for pk, updates in changed:
        obj = model(pk=pk)
        for name, value in updates.items():
            setattr(obj, name, value)
        by_fields.setdefault(tuple(sorted(updates)), []).append(obj)
    for fields, objs in by_fields.items():
        model._default_manager.bulk_update(objs, list(fields))


def _rotate_json_columns(model: type[models.Model], columns: list[str], *, batch_size: int) -> dict[str, int]:
    counts = {"rows": 0, "values": 0}
    for pks in _batches(model._default_manager.all(), batch_size):
        with transaction.atomic():
            changed_rows = []
            for row in model._default_manager.filter(pk__in=pks).values_list("pk", *columns):
                counts["rows"] += 1
                updates = {}
                for column, values in zip(columns, row[1:], strict=False):
                    if isinstance(values, dict) and values:
                        rotated, changed = rotate_values(values)
                        if changed:
                            updates[column] = rotated
                            counts["values"] += changed
                if updates:
                    changed_rows.append((row[0], updates))
            _bulk_write(model, changed_rows)
    return counts


def rotate_field_keys(*, batch_size: int = 1000, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from crmhub.models import Customer, SourceRecord

    report: dict[str, Any] = {}
    plan = [
        (
            "customer.id_number",
            lambda: _rotate_encrypted_column(
                Customer, "id_number", hash_column="id_number_hash", batch_size=batch_size
            ),
        ),
        (
            "customer_history.id_number",
            lambda: _rotate_encrypted_column(
                Customer.history.model, "id_number", hash_column=None, batch_size=batch_size
            ),
        ),
        (
            "source_record.raw_normalized",
            lambda: _rotate_json_columns(SourceRecord, ["raw", "normalized"], batch_size=batch_size),
        ),
        (
            "source_record_history.raw_normalized",
            lambda: _rotate_json_columns(SourceRecord.history.model, ["raw", "normalized"], batch_size=batch_size),
        ),
    ]
    for name, run in plan:
        report[name] = run()
        if progress:
            progress(f"{name}: {report[name]}")
    return report
