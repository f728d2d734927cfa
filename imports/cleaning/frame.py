"""Cleaning whole columns of a chunk at once.

pandas and numpy stay here (and in the readers): a chunk's mapped columns go in, normalized
values and flags come out, exactly what the scalar ``clean_*`` functions give cell by cell
(tests/imports/test_cleaning_vectorised.py holds the two equal).

How a column is cleaned depends on how its values repeat:

* values that repeat (names, genders, dates, addresses, levels) are cleaned once per distinct
  value: ``pd.factorize`` gives the distinct values and each cell's code, the scalar function
  runs on the distinct values and the results are spread back by code (numpy ``take``);
* values that are mostly unique take a fast path for their common shapes, with the scalar
  function for the rest: mobiles (the mainland shapes by a regex, phonenumbers only for
  others), e-mails (one pass of string methods; the domain check per distinct domain) and
  resident IDs (check digit, birth date and region checked on a digit matrix).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from crmhub.choices import FieldType
from imports.cleaning.address import clean_address, split_address
from imports.cleaning.base import Cleaned, clean_code, clean_text
from imports.cleaning.contact import _EMAIL, clean_email, clean_mobile, clean_phone, email_domain_typo
from imports.cleaning.dates import clean_date
from imports.cleaning.gender import clean_gender
from imports.cleaning.identity import _place_known, clean_id_number, resident_id_facts
from imports.cleaning.misc import clean_boolean, clean_country, clean_number, clean_postcode, clean_tags
from imports.cleaning.names import clean_name, split_name
from imports.cleaning.rules import FieldRules, apply_all

# Below this many cells a column is cleaned cell by cell (a pushed record, a preview row).
SMALL_COLUMN = 64
# ASCII digits only: Python's \d would also accept full-width digits and copy them through.
_FAST_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9][0-9]{9})$")
# The resident ID's check digit: (1 - 2 * int(first 17 digits, base 13)) mod 11 (stdnum.cn.ric);
# the base-13 number mod 11 is the digits' dot product with 13^k mod 11.
_RIC_WEIGHTS = np.array([pow(13, 16 - i, 11) for i in range(17)], dtype=np.int64)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class Column(NamedTuple):
    """One cleaned column: object arrays of values and flags ('' when valid)."""

    values: np.ndarray
    flags: np.ndarray


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


#
# Helpers
#


def _objects(items: list) -> np.ndarray:
    """A 1-d object array of ``items`` (which may be lists: numpy must not read them as rows)."""
    return np.fromiter(items, dtype=object, count=len(items))


def _cell_by_cell(cells: np.ndarray, clean: Callable[[Any], Cleaned]) -> Column:
    results = [clean(value) for value in cells]
    return Column(_objects([r.value for r in results]), _objects([r.flag for r in results]))


def _all_text(cells: np.ndarray) -> bool:
    return pd.api.types.infer_dtype(cells, skipna=False) in ("string", "empty")


_STRINGS = pd.StringDtype("python")


def factorize(cells: np.ndarray, *, text: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(cells, use_na_sentinel=False)``: each cell's code and the distinct values
    in order of first appearance. Cells known to be all strings (``text``) are factorized as a
    pandas string array, whose hash table reads the text directly: about twice as fast."""
    if text:
        codes, distinct = pd.array(cells, dtype=_STRINGS).factorize(use_na_sentinel=False)
        return codes, distinct.to_numpy(dtype=object)
    return pd.factorize(cells, use_na_sentinel=False)


def _by_distinct_value(
    cells: np.ndarray, clean: Callable[[Any], Cleaned], memo: dict | None = None, *, text: bool = False
) -> Column:
    """``clean`` once per distinct value, spread back to the cells by their codes. ``memo``
    (value → Cleaned) carries the results over to the next chunks. ``text``: every cell is a string."""
    try:
        codes, distinct = factorize(cells, text=text)
    except TypeError:  # unhashable cells (never from the readers)
        return _cell_by_cell(cells, clean)
    if memo is None:
        results = [clean(value) for value in distinct]
    else:
        values = distinct.tolist()
        results = list(map(memo.get, values))
        for j in [j for j, r in enumerate(results) if r is None]:
            results[j] = memo[values[j]] = clean(values[j])
    if not results:
        return Column(np.empty(0, dtype=object), np.empty(0, dtype=object))
    values, flags = zip(*results, strict=True)  # Cleaned is a (value, flag) tuple
    return Column(_objects(values).take(codes), _objects(flags).take(codes))


# Results of the scalar functions by value, kept from chunk to chunk for the types whose values
# repeat, per (field type, country?, dayfirst, language); a memo that grows past MEMO_LIMIT
# starts again. Tags are left out: their values are lists, which rows must not share.
MEMO_LIMIT = 100_000
_MEMO_TYPES = frozenset(
    {
        FieldType.NAME,
        FieldType.DATE,
        FieldType.GENDER,
        FieldType.ADDRESS,
        FieldType.TEXT,
        FieldType.POSTCODE,
        FieldType.BOOLEAN,
        FieldType.NUMBER,
        FieldType.CHOICE,
    }
)
_memos: dict[tuple, dict] = {}


def _memo(field_name: str, field_type: str, dayfirst: bool) -> dict | None:
    if field_type not in _MEMO_TYPES and field_name != "country":
        return None
    key = (field_name == "country", field_type, dayfirst, get_language())
    memo = _memos.get(key)
    if memo is None or len(memo) > MEMO_LIMIT:
        memo = _memos[key] = {}
    return memo


def _patch(column: Column, at: list[int], cells: list, clean: Callable[[Any], Cleaned]) -> None:
    """Clean ``cells`` (those at positions ``at``) with the scalar function, per distinct value."""
    if not at:
        return
    rest = _by_distinct_value(_objects(cells), clean, text=all(isinstance(c, str) for c in cells))
    column.values[at] = rest.values
    column.flags[at] = rest.flags


#
# Fast paths for columns of mostly unique values
#


def _mobiles(cells: np.ndarray) -> Column:
    """The mainland shapes ('138 0013 8000', '+86-138…', '0086…', '86…') by one regex; the
    rest (landlines, foreign numbers, full-width digits, tabs inside) by ``clean_mobile``."""
    flags = np.full(len(cells), "", dtype=object)
    match = _FAST_MOBILE.match
    slow_at, slow_cells = [], []
    texts = cells.tolist()
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:
        compacts = [_mobile_compact(cell) for cell in texts]  # a cell holds a line break
    else:
        # The separators dropped from the whole column at once: a cell the regex then matches is
        # digits, '+' and separators only, so it is what stripping and dropping them cell by cell gives.
        compacts = joined.translate(_MOBILE_SEPARATORS).split("\n")
    found = ["+86" + m[1] if m is not None else None for m in map(match, compacts)]
    for i in [i for i, v in enumerate(found) if v is None]:
        if texts[i].strip():
            slow_at.append(i)
            slow_cells.append(texts[i])
        else:
            found[i] = ""
    column = Column(_objects(found), flags)
    _patch(column, slow_at, slow_cells, clean_mobile)
    return column


_MOBILE_SEPARATORS = str.maketrans("", "", " -().")


def _mobile_compact(cell: str) -> str:
    compact = cell.strip()
    if not compact.isdigit():
        compact = compact.replace(" ", "").replace("-", "").replace("(", "").replace(")", "").replace(".", "")
    return compact


def _emails(cells: np.ndarray) -> Column:
    """``clean_email`` without a call per cell: ASCII text needs no NFKC; the domain-typo
    check runs once per distinct domain."""
    n = len(cells)
    values, flags = np.empty(n, dtype=object), np.full(n, "", dtype=object)
    match, normalize = _EMAIL.match, unicodedata.normalize
    bad = _("not a valid email address")
    typo_flags: dict[str, str] = {}
    for i, cell in enumerate(cells):
        stripped = cell.strip()
        if not stripped:
            values[i] = ""
            continue
        text = (stripped if cell.isascii() else normalize("NFKC", cell).strip()).lower()
        if match(text) is None:
            values[i], flags[i] = stripped, bad
            continue
        values[i] = text
        domain = text.rpartition("@")[2]
        flag = typo_flags.get(domain)
        if flag is None:
            typo_of = email_domain_typo(domain)
            flag = _("the domain looks like a typo of %(domain)s") % {"domain": typo_of} if typo_of else ""
            typo_flags[domain] = flag
        if flag:
            flags[i] = flag
    return Column(values, flags)


def resident_id_births(ids: list[str]) -> list[str | None]:
    """The ISO birth date of each valid resident ID among ``ids`` (compact, 18 characters,
    the first 17 ASCII digits), None for the others: the checks of
    ``identity._resident_id_birth`` (check digit, birth date, region known in that year) on a
    digit matrix."""
    if not ids:
        return []
    matrix = np.frombuffer("".join(ids).encode("ascii"), dtype=np.uint8).reshape(len(ids), 18)
    digits = matrix[:, :17].astype(np.int64) - 48
    checksum = (1 - 2 * (digits @ _RIC_WEIGHTS % 11)) % 11
    expected = np.where(checksum == 10, ord("X"), 48 + checksum)
    year = digits[:, 6] * 1000 + digits[:, 7] * 100 + digits[:, 8] * 10 + digits[:, 9]
    month = digits[:, 10] * 10 + digits[:, 11]
    day = digits[:, 12] * 10 + digits[:, 13]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    ok = (matrix[:, 17] == expected) & month_ok & (day >= 1) & (day <= days) & (year >= 1)
    births: list[str | None] = [None] * len(ids)
    known: dict[tuple[str, int], bool] = {}
    for i in np.flatnonzero(ok).tolist():
        text = ids[i]
        place = (text[:6], int(year[i]))
        found = known.get(place)
        if found is None:
            found = known[place] = _place_known(*place)
        if found:
            births[i] = f"{text[6:10]}-{text[10:12]}-{text[12:14]}"
    return births


class IdColumn(NamedTuple):
    values: np.ndarray
    flags: np.ndarray
    births: list[str | None]  # ISO birth date of each valid resident ID, else None


def _id_numbers(cells: np.ndarray) -> IdColumn:
    """``clean_id_number`` with the resident-ID check on a digit matrix (``resident_id_births``);
    text that is not ASCII goes through the scalar function."""
    n = len(cells)
    values, flags = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    candidates_at: list[int] = []
    slow_at, slow_cells = [], []
    short = _("a resident ID has 18 characters")
    for i in np.flatnonzero(cells != "").tolist():
        cell = cells[i]
        if not cell.isascii():
            slow_at.append(i)
            slow_cells.append(cell)
            continue
        text = cell.strip().upper().replace(" ", "").replace("-", "")
        values[i] = text
        if len(text) == 18 and text[:17].isdigit():
            candidates_at.append(i)
        elif len(text) in (15, 16, 17, 19) and text.isdigit():
            flags[i] = short
    births: list[str | None] = [None] * n
    if candidates_at:
        wrong = _("resident ID checksum or date is wrong")
        for i, born in zip(candidates_at, resident_id_births(values[candidates_at].tolist()), strict=True):
            if born is None:
                flags[i] = wrong
            else:
                births[i] = born
    column = IdColumn(values, flags, births)
    if slow_at:
        _patch(column, slow_at, slow_cells, clean_id_number)  # type: ignore[arg-type]
        for i in slow_at:
            facts = resident_id_facts(values[i]) if not flags[i] else None
            births[i] = facts[0].isoformat() if facts else None
    return column


#
# Columns and chunks
#


def clean_array(cells: np.ndarray, field_name: str, field_type: str, *, dayfirst: bool = False) -> Column:
    """(values, flags) of one column of cells, as object arrays."""
    cells = np.asarray(cells, dtype=object)
    clean = cleaner_for(field_name, field_type, dayfirst=dayfirst)
    if len(cells) < SMALL_COLUMN or not _all_text(cells):
        return _cell_by_cell(cells, clean)
    if field_name != "country":
        if field_type == FieldType.MOBILE:
            return _mobiles(cells)
        if field_type == FieldType.EMAIL:
            return _emails(cells)
        if field_type == FieldType.ID_NUMBER:
            return _id_numbers(cells)
    return _by_distinct_value(cells, clean, _memo(field_name, field_type, dayfirst), text=True)


def clean_series(series: pd.Series, field_name: str, field_type: str, *, dayfirst: bool = False) -> tuple[list, list]:
    """(values, flags) for one column of strings."""
    column = clean_array(series.to_numpy(dtype=object), field_name, field_type, dayfirst=dayfirst)
    return column.values.tolist(), column.flags.tolist()


def clean_frame(
    frame: pd.DataFrame,
    mapping: dict[str, str],
    field_types: dict[str, str],
    *,
    dayfirst: bool = False,
    rules: Mapping[str, FieldRules] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Normalized values and flags per data-dictionary field, as object arrays, plus the
    derived fields: family/given name from a full name, province/city/district from an
    address (when the file does not carry them), and the resident ID checked against birth
    date and gender; last, the admins' own ``rules`` of the fields (``imports.cleaning.rules``)."""
    values: dict[str, np.ndarray] = {}
    flags: dict[str, np.ndarray] = {}
    births: list[str | None] | None = None
    for header, field in mapping.items():
        column = clean_array(
            frame[header].to_numpy(dtype=object), field, field_types.get(field, "text"), dayfirst=dayfirst
        )
        values[field], flags[field] = column.values, column.flags
        if field == "id_number" and isinstance(column, IdColumn):
            births = column.births
    n = len(frame)
    if "full_name" in values and "family_name" not in values and "given_name" not in values:
        names = np.where(flags["full_name"] == "", values["full_name"], "")
        codes, distinct = factorize(names, text=_all_text(names))
        parts = [split_name(name) for name in distinct]
        values["family_name"] = _objects([p[0] for p in parts]).take(codes)
        values["given_name"] = _objects([p[1] for p in parts]).take(codes)
        flags["family_name"] = np.full(n, "", dtype=object)
        flags["given_name"] = np.full(n, "", dtype=object)
    if "address" in values and not ({"province", "city", "district"} & values.keys()):
        codes, distinct = factorize(values["address"], text=_all_text(values["address"]))
        parts = [split_address(a) if a else ("", "", "") for a in distinct]
        columns = list(zip(*parts, strict=False)) or [(), (), ()]
        for name, part in zip(("province", "city", "district"), columns, strict=False):
            values[name] = _objects(part).take(codes)
            flags[name] = np.full(n, "", dtype=object)
    if "id_number" in values and ("birth_date" in values or "gender" in values):
        _check_id_consistency(values, flags, births)
    if rules:
        apply_all(values, flags, rules)
    return values, flags


def _check_id_consistency(
    values: dict[str, np.ndarray], flags: dict[str, np.ndarray], births: list[str | None] | None
) -> None:
    """Flag a resident ID whose encoded birth date or gender disagrees with the columns
    (``identity.id_number_consistency``, here for the rows whose ID is valid)."""
    ids, id_flags = values["id_number"], flags["id_number"]
    birth_values, birth_flags = values.get("birth_date"), flags.get("birth_date")
    genders = values.get("gender")
    at = np.flatnonzero((ids != "") & (id_flags == "")).tolist()
    if births is None:  # a small column: the facts one by one
        facts = [resident_id_facts(ids[i]) for i in at]
        id_births = [f[0].isoformat() if f else None for f in facts]
    else:
        id_births = [births[i] for i in at]
    birth_differs = _("the birth date in the ID differs from the birth date column")
    gender_differs = _("the gender encoded in the ID differs from the gender column")
    for i, born in zip(at, id_births, strict=True):
        if born is None:
            continue
        if birth_values is not None:
            birth = birth_values[i]
            if isinstance(birth, str) and birth and not birth_flags[i] and birth != born:
                id_flags[i] = birth_differs
                continue
        if genders is not None:
            gender = genders[i]
            if gender in ("M", "F") and gender != ("M" if int(ids[i][16]) % 2 else "F"):
                id_flags[i] = gender_differs


def clean_columns(
    frame: pd.DataFrame,
    mapping: dict[str, str],
    field_types: dict[str, str],
    *,
    dayfirst: bool = False,
    rules: Mapping[str, FieldRules] | None = None,
) -> tuple[dict[str, list], dict[str, list]]:
    """``clean_frame`` with plain lists (for callers outside the batch pipeline)."""
    values, flags = clean_frame(frame, mapping, field_types, dayfirst=dayfirst, rules=rules)
    return {k: v.tolist() for k, v in values.items()}, {k: f.tolist() for k, f in flags.items()}
