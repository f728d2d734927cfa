"""Gender codes: 男/女, M/F, male/female, 先生/女士, 1/0 (and GB/T 2261's 1/2)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from imports.cleaning.base import Cleaned, blank, to_halfwidth

GENDER_CODES = {
    "M": {"男", "男性", "男士", "先生", "m", "male", "man", "1", "公"},
    "F": {"女", "女性", "女士", "小姐", "f", "female", "woman", "0", "2", "母"},
    "U": {"未知", "不详", "保密", "u", "unknown", "9", "x", "其他", "other"},
}
_LOOKUP = {code: gender for gender, codes in GENDER_CODES.items() for code in codes}


def clean_gender(value: Any) -> Cleaned:  # noqa: ANN401
    """'M', 'F' or 'U' (unknown). 1 is male and 0 female, as most CRM exports write them;
    GB/T 2261's 2 (female) and 9 (unspecified) are understood too."""
    if blank(value):
        return Cleaned("")
    text = to_halfwidth(str(value)).strip().lower()
    if text.endswith(".0"):
        text = text[:-2]
    gender = _LOOKUP.get(text)
    if gender is None:
        return Cleaned(str(value).strip(), _("not a gender code this importer understands"))
    return Cleaned(gender)
