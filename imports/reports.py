"""The error report of a run: each rejected or flagged row as the file had it, plus the
reasons, presented through the field policy and safe to open in a spreadsheet."""
from __future__ import annotations

import csv
import io
from typing import Any, Iterator

from django.utils.translation import gettext as _

from accounts.policy import present_values
from imports.models import ImportRun

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def present_error_row(user, row: dict[str, Any], column_fields: dict[str, str]) -> dict[str, Any]:  # noqa: ANN001
    """``row`` ({column: value}) as ``user`` may see it: a mapped column through the policy
    of its field, an unmapped one as present_values treats free text; hidden ones absent.

    The same contract as ``accounts.policy.present_error_row`` (being added on another
    branch): switch to it at merge."""
    by_field = {column_fields[c]: v for c, v in row.items() if c in column_fields}
    shown_fields = present_values(user, by_field)
    shown_free = present_values(user, {c: v for c, v in row.items() if c not in column_fields})
    out: dict[str, Any] = {}
    for column in row:
        if column in column_fields:
            if column_fields[column] in shown_fields:
                out[column] = shown_fields[column_fields[column]]
        elif column in shown_free:
            out[column] = shown_free[column]
    return out


def safe_cell(value: Any) -> Any:  # noqa: ANN401
    """Text a spreadsheet will not run as a formula: a leading = + - @ gets a quote."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def report_rows(run: ImportRun, user) -> Iterator[list[Any]]:  # noqa: ANN001
    headers = list(run.options.get("layout", {}).get("headers", []))
    mapping = run.mapping
    yield [_("row"), _("problem"), _("reasons"), *headers]
    for issue in run.issues.order_by("row_number").iterator(chunk_size=2000):
        shown = present_error_row(user, issue.raw, mapping)
        reasons = "; ".join(f"{col}: {why}" if col else why for col, why in issue.reasons.items())
        yield [issue.row_number, issue.get_kind_display(), reasons, *(shown.get(h, "") for h in headers)]


def error_report_csv(run: ImportRun, user) -> bytes:  # noqa: ANN001
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in report_rows(run, user):
        writer.writerow([safe_cell(c) for c in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # the BOM makes Excel read UTF-8


def error_report_xlsx(run: ImportRun, user) -> bytes:  # noqa: ANN001
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(_("Errors"))
    for row in report_rows(run, user):
        ws.append([safe_cell(c) for c in row])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
