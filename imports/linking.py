"""Linking new source records to golden customers.

``link_new_records_to_customers`` is the one place that decides which customer a new
source record belongs to. Today every new record gets a golden customer of its own, built
from its valid normalized values; the real-time matcher plugs in here (return an existing
customer's id, with ``created=False``, for records it recognises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from crmhub.choices import ChangeEventType
from crmhub.models import Customer
from crmhub.outbox import Change, changes_record_bulk, feed_values
from crmhub.services import customer_values_from_normalized
from imports.cleaning import name_pinyin


@dataclass(frozen=True)
class Link:
    customer_id: int
    created: bool


class CustomerCreator(Protocol):
    def create_customers(self, rows: list[dict[str, Any]]) -> list[int]: ...


_CHAR_LIMITS = {
    f.attname: f.max_length
    for f in Customer._meta.concrete_fields
    if getattr(f, "max_length", None) and f.attname != "id_number"
}


def customer_row(normalized: dict[str, Any], flags: dict[str, str]) -> dict[str, Any]:
    """Customer attribute values from a record's plaintext normalized values. Flagged values
    stay in the source record only; text longer than a column is cut to fit (the source
    record keeps it whole)."""
    values = customer_values_from_normalized(
        {k: v for k, v in normalized.items() if k not in flags} if flags else normalized
    )
    for name, value in values.items():
        limit = _CHAR_LIMITS.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            values[name] = value[:limit]
    values["name_pinyin"] = name_pinyin(values.get("full_name", ""))[: _CHAR_LIMITS["name_pinyin"]]
    return values


def link_new_records_to_customers(
    *, records: list[tuple[dict[str, Any], dict[str, str]]], creator: CustomerCreator
) -> list[Link]:
    """A Link per new record (``(normalized plaintext, flags)``), in order."""
    rows = [customer_row(normalized, flags) for normalized, flags in records]
    ids = creator.create_customers(rows)
    # Downstream systems learn of each new golden record through the change feed, in this
    # chunk's transaction.
    created = [
        (customer_id, feed_values({k: v for k, v in row.items() if k != "name_pinyin"}))
        for customer_id, row in zip(ids, rows, strict=True)
    ]
    changes_record_bulk(Change(ChangeEventType.CREATED, pk, sorted(values), values) for pk, values in created)
    return [Link(customer_id=i, created=True) for i in ids]
