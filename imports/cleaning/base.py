from __future__ import annotations

import re
import unicodedata
from typing import Any, NamedTuple


class Cleaned(NamedTuple):
    value: Any
    flag: str = ""


_SPACES = re.compile(r"\s+")
# A space between two Han characters is an artefact of typing or alignment, never meaningful.
_HAN_GAP = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def to_halfwidth(text: str) -> str:
    """Full-width letters, digits, punctuation and the ideographic space to their ASCII forms (NFKC)."""
    return unicodedata.normalize("NFKC", text)


def collapse_spaces(text: str) -> str:
    """Trim, collapse runs of whitespace to one space, and drop spaces between Han characters."""
    return _HAN_GAP.sub("", _SPACES.sub(" ", text).strip())


def clean_text(value: Any) -> Cleaned:
    if blank(value):
        return Cleaned("")
    return Cleaned(collapse_spaces(to_halfwidth(str(value))))


def clean_code(value: Any) -> Cleaned:
    """Identifiers (member numbers, openids): half-width, no whitespace, case kept."""
    if blank(value):
        return Cleaned("")
    return Cleaned(_SPACES.sub("", to_halfwidth(str(value))))
