"""Chinese addresses: normalised text, split into province / city / district where possible."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from imports.cleaning.base import Cleaned, blank, collapse_spaces, to_halfwidth

MUNICIPALITIES = ("北京市", "天津市", "上海市", "重庆市")
PROVINCES = (
    *MUNICIPALITIES,
    "河北省",
    "山西省",
    "辽宁省",
    "吉林省",
    "黑龙江省",
    "江苏省",
    "浙江省",
    "安徽省",
    "福建省",
    "江西省",
    "山东省",
    "河南省",
    "湖北省",
    "湖南省",
    "广东省",
    "海南省",
    "四川省",
    "贵州省",
    "云南省",
    "陕西省",
    "甘肃省",
    "青海省",
    "台湾省",
    "内蒙古自治区",
    "广西壮族自治区",
    "西藏自治区",
    "宁夏回族自治区",
    "新疆维吾尔自治区",
    "香港特别行政区",
    "澳门特别行政区",
)


def _short(province: str) -> str:
    for suffix in ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市"):
        if province.endswith(suffix):
            return province[: -len(suffix)]
    return province


# Full names first, then short forms (广东 → 广东省), longest first so 内蒙古 beats 内.
_PROVINCE_FORMS = sorted(
    [(p, p) for p in PROVINCES] + [(_short(p), p) for p in PROVINCES], key=lambda pair: -len(pair[0])
)
_CITY = re.compile(r"^(.{1,12}?(?:自治州|地区|盟|市))")
_DISTRICT = re.compile(r"^(.{1,10}?(?:新区|区|县|旗|市))")


class AddressParts(NamedTuple):
    province: str = ""
    city: str = ""
    district: str = ""
    detail: str = ""


def clean_address(value: Any) -> Cleaned:  # noqa: ANN401
    if blank(value):
        return Cleaned("")
    return Cleaned(collapse_spaces(to_halfwidth(str(value))))


@lru_cache(maxsize=100_000)
def split_address(address: str) -> AddressParts:
    """'广东省深圳市南山区科技园路1号' → (广东省, 深圳市, 南山区, 科技园路1号); parts that
    cannot be recognised are left empty and stay in ``detail``."""
    rest = (address or "").strip()
    province = city = district = ""
    for form, full in _PROVINCE_FORMS:
        if rest.startswith(form):
            province, rest = full, rest[len(form) :]
            break
    if province in MUNICIPALITIES:
        city = province
        if rest.startswith("市辖区"):
            rest = rest[3:]
    elif m := _CITY.match(rest):
        city, rest = m[1], rest[len(m[1]) :]
    if (province or city) and (m := _DISTRICT.match(rest)):
        district, rest = m[1], rest[len(m[1]) :]
    return AddressParts(province, city, district, rest)
