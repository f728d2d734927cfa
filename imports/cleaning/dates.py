"""Dates in the forms spreadsheets hold them: 2024/1/5, 2024年1月5日, 05-01-2024 (day first
when the template says so), 20240105, ISO date-times and Excel serial numbers."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from django.utils.translation import gettext as _

from imports.cleaning.base import Cleaned, blank, to_halfwidth

_YMD = re.compile(r"^(\d{4})\s*[年/\-.]\s*(\d{1,2})\s*[月/\-.]\s*(\d{1,2})\s*[日号]?(?:[ T].*)?$")
_DMY = re.compile(r"^(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{4})(?:[ T].*)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SERIAL = re.compile(r"^(\d{1,5})(?:\.0+)?$")
# Excel's day zero (it counts 1900-02-29, which never was, so day 60 onwards line up from here).
EXCEL_EPOCH = date(1899, 12, 30)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def clean_date(value: Any, dayfirst: bool = False) -> Cleaned:  # noqa: ANN401
    """ISO date string, or the value kept and flagged."""
    try:
        text, reason = parse_date(value, dayfirst)
    except TypeError:  # an unhashable value
        text, reason = parse_date.__wrapped__(value, dayfirst)
    return Cleaned(text, date_reason_message(reason) if reason else "")


NOT_A_DATE, IMPLAUSIBLE = "not a date", "implausible"


def date_reason_message(reason: str) -> str:
    """The flag of a ``parse_date`` reason, in the active language."""
    if reason == NOT_A_DATE:
        return _("not a date this importer understands")
    return _("the date is out of the plausible range")


# Memoised: dates repeat. The flag is kept as a reason code, translated by the caller (the
# message depends on the active language, and looking that up costs more than the parse).
@lru_cache(maxsize=100_000)
def parse_date(value: Any, dayfirst: bool = False) -> tuple[str, str]:  # noqa: ANN401
    """(ISO date, '') or (the value kept, NOT_A_DATE / IMPLAUSIBLE)."""
    if blank(value):
        return "", ""
    if isinstance(value, date):
        return value.isoformat()[:10], ""
    text = to_halfwidth(str(value)).strip()
    parsed: date | None = None
    if m := _YMD.match(text):
        parsed = _make(int(m[1]), int(m[2]), int(m[3]))
    elif m := _DMY.match(text):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        day, month = (first, second) if dayfirst or first > 12 else (second, first)
        parsed = _make(year, month, day)
    elif m := _COMPACT.match(text):
        parsed = _make(int(m[1]), int(m[2]), int(m[3]))
    elif m := _SERIAL.match(text):
        serial = int(m[1])
        if 1 <= serial <= 2958465:  # Excel's range: 1900-01-01 .. 9999-12-31
            parsed = EXCEL_EPOCH + timedelta(days=serial)
    if parsed is None:
        return str(value).strip(), NOT_A_DATE
    if parsed.year < 1850 or parsed > date.today() + timedelta(days=366 * 5):
        return str(value).strip(), IMPLAUSIBLE
    return parsed.isoformat(), ""
