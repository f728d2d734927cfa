"""Identity documents: the mainland resident ID (GB 11643) through python-stdnum."""

from __future__ import annotations

import unicodedata
from datetime import date
from functools import lru_cache

from django.utils.translation import gettext as _
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from imports.cleaning.base import Cleaned, blank


def clean_id_number(value) -> Cleaned:  # noqa: ANN001
    """18-digit resident IDs are checked (checksum and embedded birth date); passports and
    other national IDs are kept as written, upper-cased without spaces."""
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip().upper().replace(" ", "").replace("-", "")
    if len(text) == 18 and text[:17].isdigit():
        if _resident_id_birth(text) is None:
            return Cleaned(text, _("resident ID checksum or date is wrong"))
        return Cleaned(text)
    if text.isdigit() and len(text) in (15, 17, 16, 19):
        return Cleaned(text, _("a resident ID has 18 characters"))
    return Cleaned(text)


@lru_cache(maxsize=16_384)
def _place_known(prefix: str, year: int) -> bool:
    """Whether the region code ``prefix`` was assigned in ``year`` (stdnum's birth-place check)."""
    try:
        ric.get_birth_place(f"{prefix}{year:04d}01010000")
    except ValidationError:
        return False
    return True


def _resident_id_birth(text: str) -> date | None:
    """The birth date of a valid compact 18-character resident ID, else None: the checks of
    ``stdnum.cn.ric.validate`` (check digit, birth date, birth place in that year), with the
    region lookup done once per (region, year) instead of once per number."""
    if len(text) != 18 or not (text[:17].isascii() and text[:17].isdigit()):
        return None
    if text[17] != ric.calc_check_digit(text):
        return None
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return None
    return born if _place_known(text[:6], born.year) else None


def resident_id_facts(id_number: str) -> tuple[date, str] | None:
    """(birth date, 'M'/'F') encoded in a valid 18-digit resident ID, else None."""
    born = _resident_id_birth(id_number)
    if born is None:
        return None
    return born, ("M" if int(id_number[16]) % 2 else "F")


def id_number_consistency(id_number: str, birth_date: str = "", gender: str = "") -> str:
    """A reason when the resident ID disagrees with the birth date (ISO) or gender (M/F), else ''."""
    facts = resident_id_facts(id_number or "")
    if facts is None:
        return ""
    born, sex = facts
    if birth_date and birth_date != born.isoformat():
        return _("the birth date in the ID differs from the birth date column")
    if gender in ("M", "F") and gender != sex:
        return _("the gender encoded in the ID differs from the gender column")
    return ""
