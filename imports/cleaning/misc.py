"""Postcodes, yes/no flags, tags, countries and numbers."""

from __future__ import annotations

import math
import re
from typing import Any

from django.utils.translation import gettext as _

from imports.cleaning.base import Cleaned, blank, to_halfwidth

_TRUE = {"1", "y", "yes", "true", "t", "是", "同意", "允许", "接受", "√", "✓", "on"}
_FALSE = {"0", "n", "no", "false", "f", "否", "不同意", "拒绝", "不允许", "×", "✗", "off"}
_TAG_SPLIT = re.compile(r"[,;，；、|/]+")
_COUNTRIES = {
    "中国": "CN",
    "中华人民共和国": "CN",
    "china": "CN",
    "prc": "CN",
    "中国大陆": "CN",
    "香港": "HK",
    "hong kong": "HK",
    "澳门": "MO",
    "macau": "MO",
    "macao": "MO",
    "台湾": "TW",
    "taiwan": "TW",
    "美国": "US",
    "usa": "US",
    "united states": "US",
    "英国": "GB",
    "uk": "GB",
    "united kingdom": "GB",
    "日本": "JP",
    "japan": "JP",
    "新加坡": "SG",
    "singapore": "SG",
    "韩国": "KR",
    "korea": "KR",
    "德国": "DE",
    "germany": "DE",
    "法国": "FR",
    "france": "FR",
    "加拿大": "CA",
    "canada": "CA",
    "澳大利亚": "AU",
    "australia": "AU",
}


def clean_postcode(value: Any, country: str = "CN") -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned("")
    text = re.sub(r"\s+", "", to_halfwidth(str(value)))
    if text.endswith(".0"):
        text = text[:-2]
    if country == "CN" and not re.fullmatch(r"\d{6}", text):
        return Cleaned(str(value).strip(), _("a Chinese postcode has six digits"))
    return Cleaned(text.upper())


def clean_boolean(value: Any) -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned(None)
    text = to_halfwidth(str(value)).strip().lower()
    if text in _TRUE:
        return Cleaned(True)
    if text in _FALSE:
        return Cleaned(False)
    return Cleaned(str(value).strip(), _("not a yes/no value"))


def clean_tags(value: Any) -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned([])
    tags = [t.strip() for t in _TAG_SPLIT.split(to_halfwidth(str(value))) if t.strip()]
    return Cleaned(list(dict.fromkeys(tags)))


def clean_country(value: Any) -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned("")
    text = to_halfwidth(str(value)).strip()
    code = _COUNTRIES.get(text.lower())
    if code:
        return Cleaned(code)
    if re.fullmatch(r"[A-Za-z]{2}", text):
        return Cleaned(text.upper())
    return Cleaned(text, _("not a country this importer knows; use a two-letter code"))


def clean_number(value: Any) -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned("")
    text = to_halfwidth(str(value)).strip().replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return Cleaned(str(value).strip(), _("not a number"))
    if not math.isfinite(number):  # 'nan', 'inf': JSON (and PostgreSQL's jsonb) has no such numbers
        return Cleaned(str(value).strip(), _("not a number"))
    return Cleaned(int(number) if number.is_integer() and "." not in text else number)
