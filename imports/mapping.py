"""Proposing a mapping from a file's headers to the data dictionary, and finding the key column.

Headers are compared after normalisation (half-width, lower case, no spaces or
punctuation) with each field's name, labels and synonyms: an exact hit scores 100, else
rapidfuzz's ratio (it counts characters, so Chinese headers compare properly) above
``FUZZY_THRESHOLD``. Each field takes at most one column, the best-scoring one.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz

FUZZY_THRESHOLD = 82
# Headers that name a source's own record key (the cross-reference), best first.
KEY_SYNONYMS = (
    "cid",
    "customercode",
    "customerid",
    "custid",
    "customerno",
    "customernumber",
    "clientid",
    "clientcode",
    "客户编号",
    "客户代码",
    "客户id",
    "客户号",
    "客户编码",
    "会员号",
    "会员编号",
    "会员卡号",
    "会员id",
    "用户id",
    "用户编号",
    "memberno",
    "memberid",
    "membernumber",
    "编号",
    "id",
    "code",
    "key",
    "recordid",
    "序号",
)


def normalize_header(text: str) -> str:
    return re.sub(r"[\s_\-./:：()（）#*]+", "", unicodedata.normalize("NFKC", str(text)).lower())


@dataclass(frozen=True)
class Suggestion:
    header: str
    field: str  # '' when unmapped
    score: int


def _candidates(fields) -> list[tuple[str, str]]:  # noqa: ANN001
    """(normalized synonym, field name) for every active field."""
    out: list[tuple[str, str]] = []
    for f in fields:
        for text in [f.name, f.label_en, f.label_zh, *(f.synonyms or [])]:
            if text:
                out.append((normalize_header(text), f.name))
    return out


def suggest_mapping(headers: list[str], fields) -> list[Suggestion]:  # noqa: ANN001
    """A suggestion per header (in file order); ``fields`` are FieldDefinitions."""
    candidates = _candidates(fields)
    exact = {}
    for synonym, name in candidates:
        exact.setdefault(synonym, name)
    scored: list[tuple[int, str, str]] = []  # (score, header, field)
    for header in headers:
        key = normalize_header(header)
        if not key:
            continue
        if key in exact:
            scored.append((100, header, exact[key]))
            continue
        best_score, best_field = 0, ""
        for synonym, name in candidates:
            # Short headers ('名', 'id') only match exactly: fuzzy scores on one or two characters mean nothing.
            if len(synonym) < 2 or len(key) < 2:
                continue
            score = fuzz.ratio(key, synonym)
            if score > best_score:
                best_score, best_field = int(score), name
        if best_score >= FUZZY_THRESHOLD:
            scored.append((best_score, header, best_field))
    taken: dict[str, str] = {}
    chosen: dict[str, tuple[str, int]] = {}
    for score, header, field in sorted(scored, key=lambda s: -s[0]):
        if field in taken:
            continue
        taken[field] = header
        chosen[header] = (field, score)
    return [Suggestion(h, *chosen.get(h, ("", 0))) for h in headers]


def detect_key_columns(headers: list[str]) -> list[str]:
    """The column(s) most likely holding the source's record key, or []."""
    normalized = {normalize_header(h): h for h in headers}
    for synonym in KEY_SYNONYMS:
        if synonym in normalized:
            return [normalized[synonym]]
    return []


def header_signature(headers: list[str]) -> str:
    """Identifies a file layout: the same headers (in any order) give the same signature."""
    payload = json.dumps(sorted(normalize_header(h) for h in headers), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()
