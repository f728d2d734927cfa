"""Customer list exports (CSV, XLSX): masked per policy and safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run
as a formula by Excel/LibreOffice (CSV injection); such cells get a leading quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from accounts.policy import policy_for, value_as_text

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 2000


def safe_cell(value: Any) -> str:
    text = value_as_text(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def customer_export_queryset(*, user, filters: dict) -> QuerySet:  # noqa: ANN001
    """The customers of the current search/filter, restricted to what ``user`` may reach."""
    from crmhub import selectors

    return selectors.customer_search(user=user, q=str(filters.get("q", "")), ranked=False).order_by("id")


def export_columns(user) -> list[tuple[str, str]]:  # noqa: ANN001
    """(field name, header) of every field ``user`` may see, in dictionary order."""
    policy = policy_for(user)
    return [(name, policy.fields[name].label) for name in policy.visible_fields()]


def export_rows(*, user, qs: QuerySet) -> Iterator[list[str]]:  # noqa: ANN001
    """The header, then one masked, formula-safe row per customer (streamed in chunks)."""
    policy = policy_for(user)
    columns = export_columns(user)
    yield ["id", *[safe_cell(header) for _, header in columns]]
    for customer in qs.iterator(chunk_size=CHUNK):
        yield [str(customer.pk), *[safe_cell(policy.present(name, customer.get_value(name))) for name, _ in columns]]


class _Echo:
    def write(self, value: str) -> str:
        return value


def stream_csv(*, user, qs: QuerySet) -> Iterator[str]:  # noqa: ANN001
    """CSV text chunk by chunk, with a BOM so that Excel reads the UTF-8 Chinese correctly."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    for row in export_rows(user=user, qs=qs):
        yield writer.writerow(row)


def write_csv_bytes(*, user, qs: QuerySet) -> bytes:  # noqa: ANN001
    return "".join(stream_csv(user=user, qs=qs)).encode("utf-8")


def write_xlsx_bytes(*, user, qs: QuerySet) -> bytes:  # noqa: ANN001
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("customers")
    for row in export_rows(user=user, qs=qs):
        # Plain strings are stored as text; openpyxl would store one starting with "=" as a
        # formula, which safe_cell has already ruled out by quoting it.
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
