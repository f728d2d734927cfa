"""Mobile, phone and email."""
from __future__ import annotations

import re
import unicodedata

import phonenumbers
from django.utils.translation import gettext as _

from imports.cleaning.base import Cleaned, blank

# The common mainland-mobile shapes, handled without phonenumbers (which costs ~30 µs a value).
_CN_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
_SEPARATORS = re.compile(r"[\s\-().]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_mobile(value: str, region: str = "CN") -> str | None:
    """E.164 form of a mobile number, or None when it is not a valid number."""
    text = unicodedata.normalize("NFKC", value).strip()
    compact = _SEPARATORS.sub("", text)
    match = _CN_MOBILE.match(compact)
    if match:
        return "+86" + match.group(1)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_mobile(value, region: str = "CN") -> Cleaned:  # noqa: ANN001
    if blank(value):
        return Cleaned("")
    normalized = normalize_mobile(str(value), region)
    if normalized is None:
        return Cleaned(str(value).strip(), _("not a valid phone number"))
    return Cleaned(normalized)


def clean_email(value) -> Cleaned:  # noqa: ANN001
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip().lower()
    if not _EMAIL.match(text):
        return Cleaned(str(value).strip(), _("not a valid email address"))
    return Cleaned(text)
