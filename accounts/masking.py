"""Mask styles: how a value looks to someone allowed to know it exists but not to read it.

Pure functions of a string; ``accounts.policy`` decides who gets which.
"""

from __future__ import annotations

import re

from crmhub.choices import MaskStyle

_CJK = re.compile(r"[\u3400-\u9fff]")
_DISTRICT_END = re.compile(r"^(.*?(?:区|县|旗|市辖区|自治县))")


def mask_mobile(value: str) -> str:
    digits = value.lstrip("+")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_id_number(value: str) -> str:
    if len(value) <= 10:
        return value[:2] + "*" * max(len(value) - 2, 0)
    return f"{value[:6]}{'*' * (len(value) - 10)}{value[-4:]}"


def mask_email(value: str) -> str:
    local, sep, domain = value.partition("@")
    if not sep:
        return mask_partial(value)
    return f"{local[:1]}***@{domain}"


def mask_name(value: str) -> str:
    value = value.strip()
    if not value:
        return value
    if _CJK.search(value):
        # Chinese: keep the family name (first character), hide the rest.
        return value[0] + "*" * (len(value) - 1)
    parts = value.split()
    if len(parts) == 1:
        return parts[0][0] + "***"
    # Western: keep the initial of the given names and the family name.
    return " ".join([p[0] + "***" for p in parts[:-1]] + [parts[-1]])


def mask_address(value: str) -> str:
    """Cut a Chinese address after its district; otherwise keep only the first word."""
    match = _DISTRICT_END.match(value)
    if match:
        return match.group(1) + "****"
    words = value.split(",")
    if len(words) > 1:
        return "****, " + ",".join(words[-2:]).strip()
    return "****"


def mask_partial(value: str) -> str:
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


def mask_full(value: str) -> str:
    return "****"


_MASKERS = {
    MaskStyle.MOBILE: mask_mobile,
    MaskStyle.ID_NUMBER: mask_id_number,
    MaskStyle.EMAIL: mask_email,
    MaskStyle.NAME: mask_name,
    MaskStyle.ADDRESS: mask_address,
    MaskStyle.PARTIAL: mask_partial,
    MaskStyle.FULL: mask_full,
}


def mask(value, style: str):  # noqa: ANN001, ANN201
    """Mask ``value`` in ``style``; empty values stay empty, non-strings become '****'."""
    if value is None or value == "" or value == []:
        return value
    if style == MaskStyle.NONE:
        return value
    if not isinstance(value, str):
        return "****"
    return _MASKERS.get(style, mask_full)(value)
