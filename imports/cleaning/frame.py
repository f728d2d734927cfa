"""Cleaning whole columns of a chunk at once.

pandas stays here (and in the readers): a chunk's mapped columns go in, plain Python lists
of normalized values and flags come out. Mobiles take a vectorised regex fast path for the
common mainland shapes; every other value is cleaned once per distinct value by the scalar
functions (columns repeat a lot: dates, genders, cities, names).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd

from crmhub.choices import FieldType
from imports.cleaning.address import clean_address, split_address
from imports.cleaning.base import Cleaned, clean_code, clean_text
from imports.cleaning.contact import clean_email, clean_mobile, clean_phone
from imports.cleaning.dates import clean_date
from imports.cleaning.gender import clean_gender
from imports.cleaning.identity import clean_id_number, id_number_consistency
from imports.cleaning.misc import clean_boolean, clean_country, clean_number, clean_postcode, clean_tags
from imports.cleaning.names import clean_name, split_name

# ASCII digits only: Python's \d would also accept full-width digits and copy them through.
_FAST_MOBILE = r"^(?:\+?86|0086)?(1[3-9][0-9]{9})$"
_FAST_SEPARATORS = r"[ \-().]"


def cleaner_for(field_name: str, field_type: str, *, dayfirst: bool = False) -> Callable[[Any], Cleaned]:
    """The scalar cleaning function of a data-dictionary field."""
    if field_name == "country":
        return clean_country
    return {
        FieldType.NAME: clean_name,
        FieldType.MOBILE: clean_mobile,
        FieldType.PHONE: clean_phone,
        FieldType.EMAIL: clean_email,
        FieldType.ID_NUMBER: clean_id_number,
        FieldType.DATE: partial(clean_date, dayfirst=dayfirst),
        FieldType.GENDER: clean_gender,
        FieldType.ADDRESS: clean_address,
        FieldType.CODE: clean_code,
        FieldType.POSTCODE: clean_postcode,
        FieldType.TAGS: clean_tags,
        FieldType.BOOLEAN: clean_boolean,
        FieldType.NUMBER: clean_number,
    }.get(field_type, clean_text)


def _by_distinct_value(series: pd.Series, clean: Callable[[Any], Cleaned]) -> tuple[list, list]:
    results = {value: clean(value) for value in series.unique()}
    cleaned = [results[value] for value in series]
    return [c.value for c in cleaned], [c.flag for c in cleaned]


def clean_series(series: pd.Series, field_name: str, field_type: str, *, dayfirst: bool = False) -> tuple[list, list]:
    """(values, flags) for one column of strings."""
    clean = cleaner_for(field_name, field_type, dayfirst=dayfirst)
    if field_type != FieldType.MOBILE or len(series) < 64:
        return _by_distinct_value(series, clean)
    compact = series.str.strip().str.replace(_FAST_SEPARATORS, "", regex=True)
    fast = compact.str.extract(_FAST_MOBILE, expand=False)
    values = ("+86" + fast).tolist()
    flags = [""] * len(values)
    slow = fast.isna().to_numpy()
    if slow.any():
        rest = series[slow]
        rest_values, rest_flags = _by_distinct_value(rest, clean)
        for i, value, flag in zip(slow.nonzero()[0], rest_values, rest_flags, strict=True):
            values[i], flags[i] = value, flag
    return values, flags


def clean_columns(
    frame: pd.DataFrame, mapping: dict[str, str], field_types: dict[str, str], *, dayfirst: bool = False
) -> tuple[dict[str, list], dict[str, list]]:
    """Normalized values and flags per data-dictionary field, plus the derived fields:
    family/given name from a full name, province/city/district from an address (when the
    file does not carry them), and the resident ID checked against birth date and gender."""
    values: dict[str, list] = {}
    flags: dict[str, list] = {}
    for header, field in mapping.items():
        values[field], flags[field] = clean_series(
            frame[header], field, field_types.get(field, "text"), dayfirst=dayfirst
        )
    n = len(frame)
    if "full_name" in values and "family_name" not in values and "given_name" not in values:
        parts = {name: split_name(name) for name in set(values["full_name"])}
        split = [parts[name] if not flag else ("", "") for name, flag in zip(values["full_name"], flags["full_name"], strict=False)]
        values["family_name"] = [p[0] for p in split]
        values["given_name"] = [p[1] for p in split]
        flags["family_name"] = flags["given_name"] = [""] * n
    if "address" in values and not ({"province", "city", "district"} & values.keys()):
        parts = [split_address(a) if a else None for a in values["address"]]
        for name in ("province", "city", "district"):
            values[name] = [getattr(p, name) if p else "" for p in parts]
            flags[name] = [""] * n
    if "id_number" in values and ("birth_date" in values or "gender" in values):
        births = values.get("birth_date") or [""] * n
        genders = values.get("gender") or [""] * n
        id_flags = flags["id_number"]
        for i, id_number in enumerate(values["id_number"]):
            if id_number and not id_flags[i]:
                birth = births[i] if isinstance(births[i], str) and not flags.get("birth_date", id_flags)[i] else ""
                reason = id_number_consistency(id_number, birth, genders[i] or "")
                if reason:
                    id_flags[i] = reason
    return values, flags
