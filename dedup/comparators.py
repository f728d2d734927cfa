"""Comparisons: for each pair of records and each compared attribute, the *level* of
agreement reached (exact, sound-alike, swapped, fuzzy, different...). Pure and vectorised:
two aligned feature frames in (left rows and right rows of the pairs), one small-int array
of level numbers out. Level 0 always means "a value is missing on either side" and weighs
nothing (see scoring.py).

Each comparison carries default m/u probabilities per level: priors for the estimation in
scoring.py, and the fallback on data too small to estimate from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

NULL = 0


def gettext_noop(message: str) -> str:
    """Marks a label for translation (extracted by makemessages) without importing Django."""
    return message


Frame = pd.DataFrame
LevelFunc = Callable[[Frame, Frame, dict], np.ndarray]


@dataclass(frozen=True)
class Comparison:
    """One compared attribute and its ordered levels (1 = strongest agreement; the last
    level is "different")."""

    name: str
    label: str
    fields: tuple[str, ...]
    levels: tuple[str, ...]
    compute: LevelFunc = field(repr=False)
    default_m: tuple[float, ...] = ()
    default_u: tuple[float, ...] = ()
    # Feature column whose value frequency adjusts the weight of level 1 (term frequency).
    tf_column: str | None = None
    # Disagreement here (last level) is reliable evidence of two different people.
    reliable: bool = False
    identity_key: bool = False
    # Disagreement here means two people unless an identity key agrees: the pair is dropped.
    veto: bool = False
    defaults: dict = field(default_factory=dict)

    def levels_for(self, left: Frame, right: Frame, params: dict | None = None) -> np.ndarray:
        return self.compute(left, right, {**self.defaults, **(params or {})}).astype(np.int8)

    @property
    def different(self) -> int:
        return len(self.levels)


def _arr(frame: Frame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=object)


def _present(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != "") & (b != "")


def _similarity(a: np.ndarray, b: np.ndarray, scorer) -> np.ndarray:  # noqa: ANN001
    if len(a) == 0:
        return np.zeros(0, dtype=np.float64)
    # Threads pay off only on big inputs; a handful of pairs (real time) stays on this thread.
    workers = -1 if len(a) > 5000 else 1
    return np.asarray(process.cpdist(list(a), list(b), scorer=scorer, workers=workers), dtype=np.float64)


def _select(conditions: list[np.ndarray], present: np.ndarray, n_levels: int) -> np.ndarray:
    """First true condition wins (level = its position + 1), else "different"; missing → 0."""
    levels = np.select(conditions, np.arange(1, len(conditions) + 1), default=n_levels)
    return np.where(present, levels, NULL)


#
# Level functions
#


def digits_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 exact, 2 one typo (an adjacent transposition or one digit substituted, same length),
    3 different; 0 missing. For mobiles and ID numbers."""
    present = _present(a, b)
    exact = a == b
    same_len = np.array([len(x) == len(y) for x, y in zip(a, b, strict=True)], dtype=bool)
    typo = np.zeros(len(a), dtype=bool)
    check = present & ~exact & same_len
    if check.any():
        typo[check] = _similarity(a[check], b[check], OSA.distance) == 1
    return _select([exact, typo], present, 3)


def _name_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    """1 exact (after folding: NFKC, traditional→simplified, case, spaces), 2 sound-alike
    (same pinyin: 张伟/章伟; Western: same after nicknames and word order: Bill Smith/William
    Smith), 3 family and given names swapped, 4 close (Jaro-Winkler on the sound-alike key
    ≥ high; for Chinese names: same family sound and given names' pinyin ≥ high), 5 similar
    (≥ low, or token-sort ratio ≥ low), 6 different."""
    a, b = _arr(left, "name"), _arr(right, "name")
    present = _present(a, b)
    ka, kb = _arr(left, "name_key"), _arr(right, "name_key")
    exact = a == b
    sound = (ka == kb) & (ka != "")
    swapped = (_arr(left, "name_swapped") == b) | (a == _arr(right, "name_swapped"))
    keys_a = np.where(ka != "", ka, a)
    keys_b = np.where(kb != "", kb, b)
    # Chinese names: the family name must sound the same and the given names are compared
    # on their own; a whole-name similarity would call 张伟 and 张芳 close (zhangwei/zhangfang).
    # dtype=bool: with no pairs at all (every pair already decided) an empty list would be float.
    no_space = np.array([" " not in x and " " not in y for x, y in zip(ka, kb, strict=True)], dtype=bool)
    chinese = (ka != "") & (kb != "") & no_space
    same_family = _arr(left, "family") == _arr(right, "family")
    ga, gb = _arr(left, "given"), _arr(right, "given")
    keys_a = np.where(chinese, ga, keys_a)
    keys_b = np.where(chinese, gb, keys_b)
    todo = present & ~exact & ~sound & ~swapped & (~chinese | same_family)
    jw = np.zeros(len(a))
    ts = np.zeros(len(a))
    if todo.any():
        jw[todo] = _similarity(keys_a[todo], keys_b[todo], JaroWinkler.normalized_similarity)
        ts[todo] = _similarity(keys_a[todo], keys_b[todo], fuzz.token_sort_ratio) / 100.0
    close = jw >= params["high"]
    similar = (jw >= params["low"]) | (ts >= params["low"])
    return _select([exact, sound, swapped & present, close & todo, similar & todo], present, 6)


def _birth_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    """1 exact, 2 day and month swapped (1985-03-04/1985-04-03), 3 one part wrong (two of
    year, month, day agree: a typo), 4 different; 0 missing."""
    a, b = left["birth"].to_numpy(dtype=object), right["birth"].to_numpy(dtype=object)
    present = _present(a, b)
    ya, ma, da = _date_parts(a)
    yb, mb, db = _date_parts(b)
    exact = a == b
    swapped = (ya == yb) & (ma == db) & (da == mb) & (ma != da)
    agree = (ya == yb).astype(int) + (ma == mb).astype(int) + (da == db).astype(int)
    return _select([exact, swapped, agree == 2], present, 4)


def _date_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month and day of ISO dates ('YYYY-MM-DD'; '' or anything else → -1), read from
    the characters' code points in one numpy pass instead of string slicing per value."""
    n = len(values)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    chars = np.asarray(values, dtype="U10").view(np.uint32).reshape(n, 10).astype(np.int64) - 48
    digit = (chars >= 0) & (chars <= 9)
    iso = digit[:, [0, 1, 2, 3, 5, 6, 8, 9]].all(axis=1) & (chars[:, 4] == -3) & (chars[:, 7] == -3)  # '-' is 45

    def number(cols: list[int]) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for c in cols:
            out = out * 10 + chars[:, c]
        return np.where(iso, out, -1)

    return number([0, 1, 2, 3]), number([5, 6]), number([8, 9])


def _mobile_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    return digits_levels(_arr(left, "mobile"), _arr(right, "mobile"))


def _id_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    """1 same ID, 2 one typo (only when plaintext numbers are compared: blind-index hashes
    are either equal or not), 3 different. A side whose ID failed validation counts as
    missing: an invalid ID is no evidence either way."""
    a, b = _arr(left, "id_key"), _arr(right, "id_key")
    valid = left["id_valid"].to_numpy(dtype=bool) & right["id_valid"].to_numpy(dtype=bool)
    levels = digits_levels(a, b)
    exact = levels == 1
    return np.where(valid | exact, levels, NULL)


def _email_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    """1 exact, 2 same local part at another domain or one typo, 3 different."""
    a, b = _arr(left, "email"), _arr(right, "email")
    present = _present(a, b)
    la, lb = _arr(left, "email_local"), _arr(right, "email_local")
    exact = a == b
    near = ((la == lb) & (la != "")) | (_osa(a, b, present & ~exact) == 1)
    return _select([exact, near], present, 3)


def _osa(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(len(a), 99, dtype=np.int64)
    if mask.any():
        out[mask] = _similarity(a[mask], b[mask], OSA.distance)
    return out


def _equal_levels(column: str) -> LevelFunc:
    def compute(left: Frame, right: Frame, params: dict) -> np.ndarray:
        a, b = _arr(left, column), _arr(right, column)
        return _select([a == b], _present(a, b), 2)

    return compute


def _location_levels(left: Frame, right: Frame, params: dict) -> np.ndarray:
    """1 same address (token-sort ratio ≥ high), 2 same postcode, 3 same city, 4 different."""
    pa, pb = _arr(left, "postcode"), _arr(right, "postcode")
    ca, cb = _arr(left, "city"), _arr(right, "city")
    aa, ab = _arr(left, "address"), _arr(right, "address")
    has_addr = _present(aa, ab)
    present = has_addr | _present(pa, pb) | _present(ca, cb)
    ratio = np.zeros(len(aa))
    if has_addr.any():
        ratio[has_addr] = _similarity(aa[has_addr], ab[has_addr], fuzz.token_sort_ratio) / 100.0
    same_address = has_addr & (ratio >= params["high"])
    same_postcode = _present(pa, pb) & (pa == pb)
    same_city = _present(ca, cb) & (ca == cb)
    return _select([same_address, same_postcode, same_city], present, 4)


#
# The catalogue
#

COMPARISONS: dict[str, Comparison] = {
    c.name: c
    for c in (
        Comparison(
            "name",
            gettext_noop("Name"),
            ("full_name",),
            ("exact", "sound_alike", "swapped", "close", "similar", "different"),
            _name_levels,
            default_m=(0.80, 0.07, 0.02, 0.05, 0.03, 0.03),
            default_u=(0.0005, 0.0005, 0.00002, 0.002, 0.02, 0.977),
            tf_column="name",
            reliable=True,
            veto=True,
            defaults={"high": 0.92, "low": 0.80},
        ),
        Comparison(
            "birth_date",
            gettext_noop("Birth date"),
            ("birth_date",),
            ("exact", "day_month_swapped", "one_part", "different"),
            _birth_levels,
            default_m=(0.93, 0.01, 0.04, 0.02),
            default_u=(0.00005, 0.00002, 0.002, 0.998),
            tf_column="birth",
            reliable=True,
        ),
        Comparison(
            "mobile",
            gettext_noop("Mobile"),
            ("mobile",),
            ("exact", "typo", "different"),
            _mobile_levels,
            default_m=(0.85, 0.03, 0.12),
            default_u=(0.00001, 0.00001, 0.99998),
            tf_column="mobile",
        ),
        Comparison(
            "id_number",
            gettext_noop("ID number"),
            ("id_number",),
            ("exact", "typo", "different"),
            _id_levels,
            default_m=(0.97, 0.01, 0.02),
            default_u=(0.000001, 0.000001, 0.999998),
            reliable=True,
            identity_key=True,
        ),
        Comparison(
            "email",
            gettext_noop("Email"),
            ("email",),
            ("exact", "near", "different"),
            _email_levels,
            default_m=(0.80, 0.08, 0.12),
            default_u=(0.00001, 0.0001, 0.99989),
            tf_column="email",
        ),
        Comparison(
            "gender",
            gettext_noop("Gender"),
            ("gender",),
            ("same", "different"),
            _equal_levels("gender"),
            default_m=(0.98, 0.02),
            default_u=(0.5, 0.5),
            reliable=True,
        ),
        Comparison(
            "location",
            gettext_noop("Address"),
            ("postcode", "city", "address"),
            ("same_address", "same_postcode", "same_city", "different"),
            _location_levels,
            default_m=(0.55, 0.15, 0.15, 0.15),
            default_u=(0.0002, 0.003, 0.05, 0.9468),
            defaults={"high": 0.9},
        ),
        Comparison(
            "wechat_unionid",
            gettext_noop("WeChat unionid"),
            ("wechat_unionid",),
            ("exact", "different"),
            _equal_levels("unionid"),
            default_m=(0.97, 0.03),
            default_u=(0.000001, 0.999999),
            reliable=True,
            identity_key=True,
        ),
        Comparison(
            "member_no",
            gettext_noop("Member number"),
            ("member_no",),
            ("exact", "different"),
            _equal_levels("member_no"),
            default_m=(0.6, 0.4),
            default_u=(0.00001, 0.99999),
        ),
    )
}


def comparison_levels(
    comparisons: list[Comparison], left: Frame, right: Frame, params: dict[str, dict] | None = None
) -> np.ndarray:
    """The (pairs × comparisons) level matrix of aligned left/right feature frames."""
    params = params or {}
    left = left.reset_index(drop=True)
    right = right.reset_index(drop=True)
    out = np.zeros((len(left), len(comparisons)), dtype=np.int8)
    for j, comparison in enumerate(comparisons):
        out[:, j] = comparison.levels_for(left, right, params.get(comparison.name))
    return out
