from __future__ import annotations

from typing import Any, NamedTuple


class Cleaned(NamedTuple):
    value: Any
    flag: str = ""


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")
