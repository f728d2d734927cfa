"""Blocking: which pairs are worth comparing at all. Pure (pandas/numpy, no ORM).

Each blocking key maps a record to a string ('' = no key); records sharing a key form a
block and every pair inside a block becomes a candidate pair. Keys are chosen so that a
true duplicate shares at least one of them even with a typo somewhere else, and so that
no key is as coarse as a surname: the three commonest Chinese surnames cover about a fifth
of people, so a surname-only block at 1M records would hold ~70k people (2.5 billion pairs).

A block larger than ``max_block`` is *sub-blocked*: its records are split again by the
key's refinements (given-name initial, birth month...) until the pieces are small enough.
Pieces still too large are skipped and counted, never silently compared in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# E-mail local parts too generic to identify anybody.
GENERIC_LOCAL_PARTS = frozenset(
    "info admin contact service sales support hello office mail test noreply no-reply webmaster kefu hr".split()
)

KeyFunc = Callable[[pd.DataFrame], pd.Series]


def _s(f: pd.DataFrame, column: str) -> pd.Series:
    return f[column].astype(str)


def _join(*parts: pd.Series) -> pd.Series:
    """Concatenate key parts; '' when any part is empty."""
    key = parts[0]
    empty = parts[0] == ""
    for part in parts[1:]:
        key = key + "|" + part
        empty = empty | (part == "")
    return key.where(~empty, "")


def key_mobile8(f: pd.DataFrame) -> pd.Series:
    m = _s(f, "mobile")
    return m.str[-8:].where(m.str.len() >= 8, "")


def key_family_birth_year(f: pd.DataFrame) -> pd.Series:
    """Family name + birth year + given-name initial (pinyin): a sound-alike character keeps
    its initial, and family + year alone would put ~1,000 张 born in 1985 together at 1M."""
    return _join(_s(f, "family"), _s(f, "birth").str[:4], _s(f, "given").str[:1])


def key_given_birth_md(f: pd.DataFrame) -> pd.Series:
    """Given name (pinyin) + month-day: survives a wrong year or a mistyped family name."""
    return _join(_s(f, "given"), _s(f, "birth").str[5:10])


def key_postcode_initial(f: pd.DataFrame) -> pd.Series:
    return _join(_s(f, "postcode"), _s(f, "family").str[:1], _s(f, "given").str[:1])


def key_email_local(f: pd.DataFrame) -> pd.Series:
    local = _s(f, "email_local")
    ok = (local.str.len() >= 3) & ~local.isin(GENERIC_LOCAL_PARTS)
    return local.where(ok, "")


def key_name_city(f: pd.DataFrame) -> pd.Series:
    """Sound-alike full name + city: finds people without phone or birth date in common."""
    return _join(_s(f, "name_key"), _s(f, "city"))


def key_column(column: str) -> KeyFunc:
    def key(f: pd.DataFrame) -> pd.Series:
        return _s(f, column)

    return key


@dataclass(frozen=True)
class BlockingKey:
    name: str
    func: KeyFunc
    # Columns that split an oversized block, applied one after the other.
    refinements: tuple[str, ...] = field(default=())


REFINEMENT_FUNCS: dict[str, KeyFunc] = {
    "given_initial": lambda f: _s(f, "given").str[:1],
    "given": lambda f: _s(f, "given"),
    "birth_month": lambda f: _s(f, "birth").str[5:7],
    "birth_year": lambda f: _s(f, "birth").str[:4],
    "gender": lambda f: _s(f, "gender"),
    "city": lambda f: _s(f, "city"),
}

BLOCKING_KEYS: dict[str, BlockingKey] = {
    k.name: k
    for k in (
        BlockingKey("mobile8", key_mobile8, ("given_initial",)),
        BlockingKey("family_birth_year", key_family_birth_year, ("given", "birth_month")),
        BlockingKey("given_birth_md", key_given_birth_md, ("birth_year", "gender", "city")),
        BlockingKey("postcode_initial", key_postcode_initial, ("given", "birth_year")),
        BlockingKey("email_local", key_email_local, ("given_initial",)),
        BlockingKey("name_city", key_name_city, ("birth_year", "gender")),
        BlockingKey("id_number", key_column("id_key")),
        BlockingKey("wechat_unionid", key_column("unionid")),
        BlockingKey("member_no", key_column("member_no")),
    )
}

DEFAULT_KEYS = tuple(BLOCKING_KEYS)

#
# The same keys over integer codes: what ``block_pairs`` uses. Each feature column is
# factorised once and a derived part (year, initial, last 8 digits...) is computed once per
# *distinct* value, so a million records cost a few numpy passes, not millions of Python
# string operations. ``test_coded_keys_equal_the_string_keys`` keeps both definitions equal.
#

Part = tuple[str, str | None]  # (feature column, derivation)


def _email_ok(local: str) -> str:
    return local if len(local) >= 3 and local not in GENERIC_LOCAL_PARTS else ""


DERIVATIONS: dict[str, Callable[[str], str]] = {
    "year": lambda s: s[:4],
    "month": lambda s: s[5:7],
    "month_day": lambda s: s[5:10],
    "initial": lambda s: s[:1],
    "last8": lambda s: s[-8:] if len(s) >= 8 else "",
    "email_ok": _email_ok,
}

CODED_KEYS: dict[str, tuple[Part, ...]] = {
    "mobile8": (("mobile", "last8"),),
    "family_birth_year": (("family", None), ("birth", "year"), ("given", "initial")),
    "given_birth_md": (("given", None), ("birth", "month_day")),
    "postcode_initial": (("postcode", None), ("family", "initial"), ("given", "initial")),
    "email_local": (("email_local", "email_ok"),),
    "name_city": (("name_key", None), ("city", None)),
    "id_number": (("id_key", None),),
    "wechat_unionid": (("unionid", None),),
    "member_no": (("member_no", None),),
}

CODED_REFINEMENTS: dict[str, Part] = {
    "given_initial": ("given", "initial"),
    "given": ("given", None),
    "birth_month": ("birth", "month"),
    "birth_year": ("birth", "year"),
    "gender": ("gender", None),
    "city": ("city", None),
}


class _Codes:
    """Integer codes of feature columns and derived parts; -1 = no value."""

    def __init__(self, features: pd.DataFrame) -> None:
        self.features = features
        self.cache: dict[Part, np.ndarray] = {}

    def get(self, part: Part) -> np.ndarray:
        if part not in self.cache:
            column, derivation = part
            codes, uniques = pd.factorize(self.features[column].to_numpy(dtype=object))
            values = [str(u) for u in uniques]
            if derivation:
                values = [DERIVATIONS[derivation](v) for v in values]
            derived, derived_uniques = pd.factorize(np.asarray(values, dtype=object))
            derived = derived.astype(np.int64)
            derived[np.asarray(derived_uniques, dtype=object)[derived] == ""] = -1
            self.cache[part] = np.where(codes >= 0, derived[np.maximum(codes, 0)] if len(derived) else -1, -1)
        return self.cache[part]


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One code per distinct (a, b); -1 where either is -1."""
    empty = (a < 0) | (b < 0)
    combined = np.where(empty, -1, a * (int(b.max(initial=0)) + 1) + b)
    # pandas' hash factorisation: O(n), and -1 (missing) stays -1.
    return _dense(combined)


def _dense(values: np.ndarray) -> np.ndarray:
    """Codes 0..k-1 of the distinct non-negative ``values``; -1 stays -1."""
    out = np.full(len(values), -1, dtype=np.int64)
    present = values >= 0
    out[present] = pd.factorize(values[present])[0]
    return out


def _coded_key(codes: _Codes, name: str) -> np.ndarray:
    parts = CODED_KEYS[name]
    key = codes.get(parts[0])
    for part in parts[1:]:
        key = _combine(key, codes.get(part))
    return key


@dataclass
class BlockingStats:
    pairs: int = 0
    blocks: int = 0
    largest_block: int = 0
    sub_blocked: int = 0
    skipped_blocks: int = 0
    skipped_records: int = 0
    per_key: dict[str, int] = field(default_factory=dict)


def _pairs_in_groups(codes: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) position pairs within groups of equal ``codes`` (sorted), vectorised per
    group size: blocks of the same size share one triangular index pattern."""
    order = np.argsort(codes, kind="stable")
    codes, positions = codes[order], positions[order]
    if len(codes) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    lefts, rights = [], []
    for size in np.unique(sizes):
        if size < 2:
            continue
        block_starts = starts[sizes == size]
        ti, tj = np.triu_indices(size, 1)
        li = (block_starts[:, None] + ti[None, :]).ravel()
        ri = (block_starts[:, None] + tj[None, :]).ravel()
        lefts.append(positions[li])
        rights.append(positions[ri])
    if not lefts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(lefts), np.concatenate(rights)


def block_pairs(
    features: pd.DataFrame,
    keys: tuple[str, ...] | list[str] = DEFAULT_KEYS,
    *,
    max_block: int = 10,
    stats: BlockingStats | None = None,
) -> np.ndarray:
    """Candidate pairs as an (n, 2) array of *row positions* in ``features`` with
    left < right, each pair once, whatever the number of keys it shares."""
    stats = stats if stats is not None else BlockingStats()
    n = len(features)
    codes = _Codes(features)
    all_pairs: list[np.ndarray] = []
    for name in keys:
        if name not in BLOCKING_KEYS:
            raise ValueError(f"unknown blocking key {name!r}; known: {', '.join(BLOCKING_KEYS)}")
        bkey = BLOCKING_KEYS[name]
        key = _coded_key(codes, name)
        positions = np.flatnonzero(key >= 0)
        key = key[positions]
        refinements = list(bkey.refinements)
        found = 0
        while len(positions):
            block = pd.factorize(key)[0]
            counts = np.bincount(block)
            size_of = counts[block]
            small = (size_of >= 2) & (size_of <= max_block)
            if small.any():
                li, ri = _pairs_in_groups(block[small], positions[small])
                all_pairs.append(np.stack([np.minimum(li, ri), np.maximum(li, ri)], axis=1))
                found += len(li)
                stats.blocks += int(np.count_nonzero((counts >= 2) & (counts <= max_block)))
                stats.largest_block = max(stats.largest_block, int(size_of[small].max()))
            big = size_of > max_block
            if not big.any():
                break
            if not refinements:
                stats.skipped_blocks += int(np.count_nonzero(counts > max_block))
                stats.skipped_records += int(np.count_nonzero(big))
                break
            stats.sub_blocked += int(np.count_nonzero(counts > max_block))
            refine = codes.get(CODED_REFINEMENTS[refinements.pop(0)])[positions[big]]
            keep = refine >= 0
            # Records the refinement cannot place (no given name, no birth month...) leave
            # this key: counted as skipped, never compared across the whole oversized block.
            stats.skipped_records += int(np.count_nonzero(~keep))
            positions = positions[big][keep]
            key = _combine(block[big][keep], refine[keep])
        stats.per_key[name] = found
    if not all_pairs:
        stats.pairs = 0
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(all_pairs).astype(np.int64)
    code = pairs[:, 0] * n + pairs[:, 1]
    del pairs
    code.sort()  # sorted, then duplicates dropped: cheaper than np.unique's hashing at 10^7
    code = code[np.r_[True, code[1:] != code[:-1]]]
    pairs = np.stack([code // n, code % n], axis=1)
    stats.pairs = len(pairs)
    return pairs


def record_keys(features: pd.DataFrame, keys: tuple[str, ...] | list[str] = DEFAULT_KEYS) -> dict[str, list[str]]:
    """The blocking-key values of a few records (real-time matching looks these up)."""
    return {name: list(BLOCKING_KEYS[name].func(features)) for name in keys}
