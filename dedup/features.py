"""Matching features of golden records: the folded, derived columns comparisons and blocking
keys read. Pure: a pandas frame of customer values in, a frame of features out.

Input columns (any may be missing): id, full_name, family_name, given_name, gender, birth_date,
mobile, email, id_number_hash (or a plaintext ``id_number`` in unit tests), id_valid,
member_no, wechat_unionid, postcode, city, address.
"""

from __future__ import annotations

import datetime as dt

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


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    return df[column].fillna("").astype(str).str.strip()


def _mapped(series: pd.Series, func) -> pd.Series:  # noqa: ANN001
    """``func`` applied once per distinct value (names repeat a lot)."""
    uniques = pd.unique(series.to_numpy())
    table = {u: func(u) for u in uniques}
    return series.map(table)


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


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    """One row of features per input row, same order and index."""
    full = _text(df, "full_name")
    family_raw = _text(df, "family_name")
    given_raw = _text(df, "given_name")
    # A record with only family and given names gets a full name from them.
    needs_full = (full == "") & ((family_raw != "") | (given_raw != ""))
    if needs_full.any():
        joined = [
            (f + g) if names.has_cjk(f + g) else f"{g} {f}".strip()
            for f, g in zip(family_raw[needs_full], given_raw[needs_full], strict=True)
        ]
        full = full.copy()
        full[needs_full] = joined

    out = pd.DataFrame(index=df.index)
    out["id"] = df["id"].to_numpy() if "id" in df else np.arange(len(df))
    out["name"] = _mapped(full, names.fold)
    out["name_key"] = _mapped(full, names.name_key)
    triples = pd.Series(list(zip(full, family_raw, given_raw, strict=True)), index=df.index)
    out["name_swapped"] = _mapped(triples, lambda t: names.swapped_name(t[0], t[1], t[2]))
    out["family"] = _mapped(triples, lambda t: names.family_key(t[0], t[1]))
    out["given"] = _mapped(triples, lambda t: names.given_key(t[0], t[2], t[1]))

    if "birth_date" in df:
        out["birth"] = [_iso_date(v) for v in df["birth_date"].to_numpy()]
    else:
        out["birth"] = ""
    mobile = _text(df, "mobile").str.replace(r"[^\d]", "", regex=True)
    # Mainland numbers: compare the 11-digit national number whatever the prefix.
    out["mobile"] = mobile.where(~(mobile.str.startswith("86") & (mobile.str.len() == 13)), mobile.str[2:])
    email = _text(df, "email").str.lower()
    out["email"] = email
    local = email.str.split("@").str[0].fillna("")
    out["email_local"] = local.where(email.str.contains("@"), "")
    if "id_number_hash" in df:
        out["id_key"] = _text(df, "id_number_hash")
    else:
        out["id_key"] = _text(df, "id_number").str.upper()
    if "id_valid" in df:
        out["id_valid"] = df["id_valid"].fillna(True).astype(bool).to_numpy()
    else:
        out["id_valid"] = True
    out["unionid"] = _text(df, "wechat_unionid")
    out["member_no"] = _text(df, "member_no")
    gender = _text(df, "gender").str.upper()
    out["gender"] = gender.where(gender.isin(["M", "F"]), "")
    out["postcode"] = _text(df, "postcode").str.replace(r"\s", "", regex=True)
    out["city"] = _mapped(_text(df, "city"), names.fold)
    out["address"] = _mapped(_text(df, "address"), names.fold)
    return out


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
