"""Mobile, phone and email."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
from django.utils.translation import gettext as _
from rapidfuzz.distance import Levenshtein

from imports.cleaning.base import Cleaned, blank

# The common mainland-mobile shapes, handled without phonenumbers (which costs ~30 µs a value).
CN_MOBILE_PATTERN = r"^(?:\+?86|0086)?(1[3-9]\d{9})$"
_CN_MOBILE = re.compile(CN_MOBILE_PATTERN)
SEPARATORS_PATTERN = r"[\s\-().]"
_SEPARATORS = re.compile(SEPARATORS_PATTERN)
# Local part: the printable characters RFC 5322 allows unquoted; domain: dot-separated labels.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
# Mail domains common in China and abroad; a domain one or two edits away from one of
# these is flagged as a likely typo (never silently corrected).
COMMON_EMAIL_DOMAINS = (
    "qq.com",
    "163.com",
    "126.com",
    "139.com",
    "sina.com",
    "sina.cn",
    "sohu.com",
    "foxmail.com",
    "aliyun.com",
    "yeah.net",
    "vip.qq.com",
    "vip.163.com",
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "msn.com",
)
_TLD_TYPOS = {"con", "cmo", "ocm", "comm", "om", "cm", "co m", "nte", "ent"}


@lru_cache(maxsize=100_000)
def _parse_phone(compact: str, region: str, mobile_only: bool) -> str | None:
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if mobile_only and phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_mobile(value: str, region: str = "CN") -> str | None:
    """E.164 form of a mobile number, or None when it is not a valid number."""
    text = unicodedata.normalize("NFKC", value).strip()
    compact = _SEPARATORS.sub("", text)
    match = _CN_MOBILE.match(compact)
    if match:
        return "+86" + match.group(1)
    if compact.startswith("86") and len(compact) == 13 and compact[2] == "1":
        compact = "+" + compact
    return _parse_phone(compact, region, False)


def clean_mobile(value, region: str = "CN") -> Cleaned:  # noqa: ANN001
    """'138 0013 8000', '+86-138…', '0086…', '86138…' all give +8613800138000."""
    if blank(value):
        return Cleaned("")
    normalized = normalize_mobile(str(value), region)
    if normalized is None:
        return Cleaned(str(value).strip(), _("not a valid phone number"))
    return Cleaned(normalized)


def clean_phone(value, region: str = "CN") -> Cleaned:  # noqa: ANN001
    """A landline or mobile: '010-6552 9988', '(021)12345678', '+86 10 6552 9988' → E.164.
    An extension ('转123', 'ext. 12') is kept after the number as ';ext=123'."""
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip()
    ext = ""
    match = re.search(r"(?:转|分机|ext\.?|x)\s*(\d{1,6})$", text, flags=re.IGNORECASE)
    if match:
        ext, text = match.group(1), text[: match.start()]
    normalized = normalize_mobile(text, region)
    if normalized is None:
        return Cleaned(str(value).strip(), _("not a valid phone number"))
    return Cleaned(normalized + (f";ext={ext}" if ext else ""))


@lru_cache(maxsize=50_000)
def email_domain_typo(domain: str) -> str:
    """The common domain ``domain`` is probably a typo of, or ''."""
    if domain in COMMON_EMAIL_DOMAINS:
        return ""
    label, _sep, tld = domain.rpartition(".")
    if tld in _TLD_TYPOS and f"{label}.com" in COMMON_EMAIL_DOMAINS:
        return f"{label}.com"
    best, best_distance = "", 3
    for known in COMMON_EMAIL_DOMAINS:
        distance = Levenshtein.distance(domain, known, score_cutoff=2)
        if distance <= 2 and distance < best_distance:
            best, best_distance = known, distance
    # Very short domains are too close to everything to judge.
    return best if len(domain) >= 6 else ""


def clean_email(value) -> Cleaned:  # noqa: ANN001
    """Lower-cased; a bad syntax or a domain that looks like a typo is flagged, never fixed."""
    if blank(value):
        return Cleaned("")
    text = unicodedata.normalize("NFKC", str(value)).strip().lower()
    if not _EMAIL.match(text):
        return Cleaned(str(value).strip(), _("not a valid email address"))
    typo_of = email_domain_typo(text.rpartition("@")[2])
    if typo_of:
        return Cleaned(text, _("the domain looks like a typo of %(domain)s") % {"domain": typo_of})
    return Cleaned(text)
