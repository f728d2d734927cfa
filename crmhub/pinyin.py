"""Fuzzy pinyin for the search box: the spellings a person might have meant. Pure, no ORM.

A search for a name typed in pinyin (or in characters, through their pinyin) looks up every
variant exactly, through the btree index of ``Customer.name_pinyin``: at a million customers that
is a few hundred index probes (milliseconds), where a trigram similarity scan of the same column
reads tens of thousands of rows (BENCHMARKS.md, issue 6).

Variants are (1) the confusions of Chinese speakers and pinyin input: zh/z, ch/c, sh/s, n/l, h/f,
r/l, and the nasal finals ang/an, eng/en, ing/in; (2) one slip of the keyboard: a letter missing,
added, replaced, or two neighbours swapped (Damerau-Levenshtein distance 1). For a Chinese name
only variants that still read as pinyin syllables are kept (a few dozen instead of ~450 strings).
"""

from __future__ import annotations

import string
import unicodedata
from functools import lru_cache

# Each pair is tried both ways, one occurrence at a time.
CONFUSIONS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("ang", "an"), ("eng", "en"), ("ing", "in"), ("n", "l"),
              ("h", "f"), ("r", "l"))  # fmt: skip
# Past this length only missing and swapped letters are tried: keeps the lookup to a few hundred values.
FULL_EDIT_MAX_LENGTH = 12


@lru_cache(maxsize=1)
def syllables() -> frozenset[str]:
    """Every toneless pinyin syllable (ü written v, as lazy_pinyin writes it), from pypinyin's dictionary."""
    from pypinyin.pinyin_dict import pinyin_dict

    out = set()
    for readings in pinyin_dict.values():
        for reading in readings.split(","):
            text = unicodedata.normalize("NFD", reading).replace("u\u0308", "v")
            out.add("".join(c for c in text if not unicodedata.combining(c)))
    return frozenset(s for s in out if s.isascii() and s.isalpha())


@lru_cache(maxsize=65536)
def is_pinyin(text: str) -> bool:
    """Whether ``text`` splits into pinyin syllables (zhangwei: zhang wei; jamessmith: no)."""
    known = syllables()
    reachable = [True] + [False] * len(text)
    for end in range(1, len(text) + 1):
        reachable[end] = any(reachable[start] and text[start:end] in known for start in range(max(0, end - 6), end))
    return reachable[-1]


def _replace_each(text: str, old: str, new: str) -> set[str]:
    out = set()
    start = text.find(old)
    while start != -1:
        out.add(text[:start] + new + text[start + len(old) :])
        start = text.find(old, start + 1)
    return out


@lru_cache(maxsize=4096)
def confusion_variants(pinyin: str) -> frozenset[str]:
    """Spellings that sound alike to many speakers: zhangwei → zangwei, zhanwei, ..."""
    out: set[str] = set()
    for a, b in CONFUSIONS:
        out |= _replace_each(pinyin, a, b)
        out |= _replace_each(pinyin, b, a)
    out.discard(pinyin)
    if is_pinyin(pinyin):
        return frozenset(v for v in out if is_pinyin(v))
    return frozenset(out)


@lru_cache(maxsize=4096)
def typo_variants(pinyin: str) -> frozenset[str]:
    """Every string one keyboard slip away from ``pinyin`` (lowercase a-z)."""
    letters = string.ascii_lowercase
    splits = [(pinyin[:i], pinyin[i:]) for i in range(len(pinyin) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    # Letters replaced or added only where the result can be checked as pinyin: for other names
    # (Western ones) they would be hundreds of strings, most of them nothing anyone is called.
    if len(pinyin) <= FULL_EDIT_MAX_LENGTH and is_pinyin(pinyin):
        out |= {a + c + b[1:] for a, b in splits if b for c in letters}
        out |= {a + c + b for a, b in splits for c in letters}
    out.discard(pinyin)
    if is_pinyin(pinyin):
        return frozenset(v for v in out if is_pinyin(v))
    return frozenset(v for v in out if v)
