"""Identity documents: the mainland resident ID (GB 11643) through python-stdnum."""
from __future__ import annotations

import unicodedata
from datetime import date

from django.utils.translation import gettext as _
from stdnum.cn import ric

from imports.cleaning.base import Cleaned, blank


def clean_id_number(value) -> Cleaned:  # noqa: ANN001
    """18-digit resident IDs are checked (checksum and embedded birth date); passports and
    other national IDs are kept as written, upper-cased without spaces."""
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip().upper().replace(" ", "").replace("-", "")
    if len(text) == 18 and text[:17].isdigit():
        try:
            return Cleaned(ric.validate(text))
        except Exception:  # noqa: BLE001 - stdnum raises several ValidationError subclasses
            return Cleaned(text, _("resident ID checksum or date is wrong"))
    if text.isdigit() and len(text) in (15, 17, 16, 19):
        return Cleaned(text, _("a resident ID has 18 characters"))
    return Cleaned(text)


def resident_id_facts(id_number: str) -> tuple[date, str] | None:
    """(birth date, 'M'/'F') encoded in a valid 18-digit resident ID, else None."""
    if not (len(id_number) == 18 and id_number[:17].isdigit()) or not ric.is_valid(id_number):
        return None
    return ric.get_birth_date(id_number), ("M" if int(id_number[16]) % 2 else "F")


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
