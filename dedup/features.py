"""Matching features of golden records: the folded, derived columns comparisons and blocking
keys read. Pure: a pandas frame of customer values in, a frame of features out.

Input columns (any may be missing): id, full_name, family_name, given_name, gender, birth_date,
mobile, email, id_number_hash (or a plaintext ``id_number`` in unit tests), id_valid,
member_no, wechat_unionid, postcode, city, address.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from dedup import names

FEATURE_COLUMNS = (
    "id",
    "name",
    "name_key",
    "name_swapped",
    "family",
    "given",
    "birth",
    "mobile",
    "email",
    "email_local",
    "id_key",
    "id_valid",
    "unionid",
    "member_no",
    "gender",
    "postcode",
    "city",
    "address",
)


def _text(df: pd.DataFrame, column: str) -> np.ndarray:
    """The column as stripped text ('' for a missing value): an object array. A plain list
    comprehension, not pandas' ``.str`` methods, which cost several times more per value."""
    if column not in df:
        return np.full(len(df), "", dtype=object)
    values = df[column].fillna("").to_numpy(dtype=object)
    return np.array([v.strip() if type(v) is str else str(v).strip() for v in values], dtype=object)


def _per_distinct(values: np.ndarray, func) -> np.ndarray:  # noqa: ANN001
    """``func`` applied once per distinct value (names, cities, dates repeat a lot)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    table = np.array([func(u) for u in uniques], dtype=object)
    return table[codes] if len(table) else np.empty(0, dtype=object)


_NOT_DIGIT = re.compile(r"[^\d]")
_SPACE = re.compile(r"\s")


def _mobile(value: str) -> str:
    if value.isascii() and value.isdigit():
        digits = value
    elif value[:1] == "+" and value[1:].isascii() and value[1:].isdigit():
        digits = value[1:]
    else:
        digits = _NOT_DIGIT.sub("", value)
    # Mainland numbers: compare the 11-digit national number whatever the prefix.
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    """One row of features per input row, same order and index. Each derived value is
    computed once per distinct input (a million customers hold ~240k distinct names, a few
    hundred cities, ~30k birth dates)."""
    full = _text(df, "full_name")
    family_raw = _text(df, "family_name")
    given_raw = _text(df, "given_name")
    # A record with only family and given names gets a full name from them.
    needs_full = np.flatnonzero((full == "") & ((family_raw != "") | (given_raw != "")))
    for k in needs_full.tolist():
        f, g = family_raw[k], given_raw[k]
        full[k] = (f + g) if names.has_cjk(f + g) else f"{g} {f}".strip()

    namer = names.Names.batch()  # this call's memo tables: each distinct name read once
    columns: dict[str, object] = {}
    columns["id"] = df["id"].to_numpy() if "id" in df else np.arange(len(df))
    columns["name"] = _per_distinct(full, namer.fold)
    columns["name_key"] = _per_distinct(full, namer.name_key)
    # The name parts depend on (full, family, given): one code per distinct triple.
    triple = _triple_codes(full, family_raw, given_raw)
    firsts = np.unique(triple, return_index=True)[1]  # a row holding each triple (codes are dense)
    reps = list(zip(full[firsts].tolist(), family_raw[firsts].tolist(), given_raw[firsts].tolist(), strict=True))

    def parts(func) -> np.ndarray:  # noqa: ANN001
        table = np.array([func(*t) for t in reps], dtype=object)
        return table[triple] if len(table) else np.empty(0, dtype=object)

    columns["name_swapped"] = parts(namer.swapped_name)
    columns["family"] = parts(lambda full_, family, _given: namer.family_key(full_, family))
    columns["given"] = parts(lambda full_, family, given: namer.given_key(full_, given, family))

    if "birth_date" in df:
        columns["birth"] = _per_distinct(df["birth_date"].to_numpy(dtype=object), _iso_date)
    else:
        columns["birth"] = np.full(len(df), "", dtype=object)
    columns["mobile"] = np.array([_mobile(v) for v in _text(df, "mobile")], dtype=object)
    email = [v.lower() for v in _text(df, "email")]
    columns["email"] = np.array(email, dtype=object)
    columns["email_local"] = np.array([v.split("@", 1)[0] if "@" in v else "" for v in email], dtype=object)
    if "id_number_hash" in df:
        columns["id_key"] = _text(df, "id_number_hash")
    else:
        columns["id_key"] = np.array([v.upper() for v in _text(df, "id_number")], dtype=object)
    if "id_valid" in df:
        columns["id_valid"] = df["id_valid"].fillna(True).astype(bool).to_numpy()
    else:
        columns["id_valid"] = np.ones(len(df), dtype=bool)
    columns["unionid"] = _text(df, "wechat_unionid")
    columns["member_no"] = _text(df, "member_no")
    columns["gender"] = _per_distinct(_text(df, "gender"), _gender)
    columns["postcode"] = _per_distinct(_text(df, "postcode"), lambda v: _SPACE.sub("", v))
    columns["city"] = _per_distinct(_text(df, "city"), names.Names._fold)
    columns["address"] = _per_distinct(_text(df, "address"), names.Names._fold)
    return pd.DataFrame(
        {
            name: (pd.Series(values, index=df.index, dtype=object) if name not in ("id", "id_valid") else values)
            for name, values in columns.items()
        },
        index=df.index,
    )


def _iso_date(value) -> str:  # noqa: ANN001
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.strftime("%Y-%m-%d")
    text = str(value)[:10]
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        return ""


def _gender(value: str) -> str:
    value = value.upper()
    return value if value in ("M", "F") else ""


def _triple_codes(full: np.ndarray, family: np.ndarray, given: np.ndarray) -> np.ndarray:
    """One int64 code per distinct (full, family, given)."""
    code = pd.factorize(full)[0].astype(np.int64)
    for part in (family, given):
        other = pd.factorize(part)[0].astype(np.int64)
        code = pd.factorize(code * (int(other.max(initial=0)) + 1) + other)[0].astype(np.int64)
    return code


def features_from_rows(rows: list[dict]) -> pd.DataFrame:
    """Features of records given as dicts: the per-row path for a handful of records (real
    time, where pandas' per-operation overhead would dominate), the vectorised one beyond."""
    if len(rows) <= SMALL:
        return _small_features(rows)
    return build_features(pd.DataFrame.from_records(rows))


SMALL = 500


def _t(value) -> str:  # noqa: ANN001
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _row_features(r: dict, position: int) -> tuple:
    full, family, given = _t(r.get("full_name")), _t(r.get("family_name")), _t(r.get("given_name"))
    if not full and (family or given):
        full = (family + given) if names.has_cjk(family + given) else f"{given} {family}".strip()
    mobile = "".join(ch for ch in _t(r.get("mobile")) if ch.isdigit())
    if mobile.startswith("86") and len(mobile) == 13:
        mobile = mobile[2:]
    email = _t(r.get("email")).lower()
    local = email.split("@")[0] if "@" in email else ""
    id_key = _t(r.get("id_number_hash")) if "id_number_hash" in r else _t(r.get("id_number")).upper()
    valid = r.get("id_valid", True)
    gender = _t(r.get("gender")).upper()
    return (
        r.get("id", position),
        names.fold(full),
        names.name_key(full),
        names.swapped_name(full, family, given),
        names.family_key(full, family),
        names.given_key(full, given, family),
        _iso_date(r.get("birth_date")),
        mobile,
        email,
        local,
        id_key,
        True if valid is None else bool(valid),
        _t(r.get("wechat_unionid")),
        _t(r.get("member_no")),
        gender if gender in ("M", "F") else "",
        "".join(_t(r.get("postcode")).split()),
        names.fold(_t(r.get("city"))),
        names.fold(_t(r.get("address"))),
    )


def _small_features(rows: list[dict]) -> pd.DataFrame:
    data = [_row_features(r, k) for k, r in enumerate(rows)]
    columns = list(zip(*data, strict=True)) if data else [[] for _ in FEATURE_COLUMNS]
    frame = pd.DataFrame(
        {name: pd.Series(col, dtype=object) for name, col in zip(FEATURE_COLUMNS, columns, strict=True)}
    )
    frame["id_valid"] = frame["id_valid"].astype(bool)
    return frame
