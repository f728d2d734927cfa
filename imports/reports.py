"""The error report of a run: each rejected or flagged row as the file had it, plus the
reasons, presented through the field policy and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext as _

from accounts.exports import safe_cell
from accounts.policy import present_error_row
from imports.models import ImportRun


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
