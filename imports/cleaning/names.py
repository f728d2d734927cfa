"""Person names: Chinese and Western, traditional/simplified folding, splitting and a pinyin key."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.utils.translation import gettext as _
from pypinyin import lazy_pinyin
from pypinyin.constants import RE_HANS
from pypinyin.seg.mmseg import seg as phrase_cut

from imports.cleaning.base import Cleaned, blank, collapse_spaces, to_halfwidth

# Two-character surnames: the common ones; a two-character prefix not in this set is not a surname.
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 钟离 闻人 澹台 西门 南宫 端木 百里 "
    "呼延 独孤 万俟 单于 申屠 太史 公冶 仲孙 濮阳 淳于 赫连 东郭 拓跋 左丘 "
    "第五 梁丘 闾丘 谷梁 段干 司空 司寇 亓官".split()
)
_HAN = re.compile(r"[\u3400-\u9fff]")
_ALL_HAN = re.compile(r"^[\u3400-\u9fff·•]+$")
_NOT_A_NAME = re.compile(r"[\d@#$%^&*_=+<>{}\[\]\\|/?!]")


@lru_cache(maxsize=1)
def _t2s():  # noqa: ANN202 - opencc's converter, loaded once
    import opencc

    return opencc.OpenCC("t2s.json")


@lru_cache(maxsize=200_000)
def fold_traditional(text: str) -> str:
    """Traditional Chinese characters to simplified (張偉 → 张伟); other text unchanged."""
    if not _HAN.search(text):
        return text
    return _t2s().convert(text)


def clean_name(value: Any) -> Cleaned:  # noqa: ANN401
    """Trim, full-width → half-width, collapse spaces, fold traditional characters; '·' in
    transliterated names (阿卜杜·热合曼) is normalised to the middle dot."""
    try:
        text, bad = name_text(value)
    except TypeError:  # an unhashable value
        text, bad = name_text.__wrapped__(value)
    return Cleaned(text, _("contains digits or symbols a person's name does not have") if bad else "")


# Memoised: names repeat. Whether the name is bad is kept as a bool, translated by the caller
# (the message depends on the active language, and looking that up costs more than the rest).
@lru_cache(maxsize=200_000)
def name_text(value: Any) -> tuple[str, bool]:  # noqa: ANN401
    """(the cleaned name, False) or (the value kept, True) when it has digits or symbols."""
    if blank(value):
        return "", False
    text = collapse_spaces(to_halfwidth(str(value))).replace("•", "·").replace("・", "·")
    text = fold_traditional(text)
    if _NOT_A_NAME.search(text):
        return str(value).strip(), True
    return text, False


@lru_cache(maxsize=200_000)
def split_name(full_name: str) -> tuple[str, str]:
    """(family name, given name). Chinese: surname first, compound surnames recognised;
    Western: 'Given Family', or 'Family, Given' with a comma."""
    name = (full_name or "").strip()
    if not name:
        return "", ""
    if _ALL_HAN.match(name):
        if "·" in name:  # transliterated foreign names: given·family
            given, _sep, family = name.rpartition("·")
            return family, given
        if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
            return name[:2], name[2:]
        if len(name) == 1:
            return name, ""
        return name[0], name[1:]
    if "," in name:
        family, _sep, given = name.partition(",")
        return family.strip(), given.strip()
    parts = name.split()
    if len(parts) == 1:
        return "", parts[0]
    return parts[-1], " ".join(parts[:-1])


@lru_cache(maxsize=200_000)
def name_pinyin(name: str) -> str:
    """A search/match key: toneless pinyin without spaces (张伟 → zhangwei); Latin names lower-cased."""
    if not name:
        return ""
    return _NOT_IN_KEY.sub("", _pinyin_text(name).lower())


_NOT_IN_KEY = re.compile(r"[\s·]+")


def _pinyin_text(name: str) -> str:
    """``"".join(lazy_pinyin(name))``, about ten times faster for names of Chinese characters.

    lazy_pinyin cuts Han text into its phrase dictionary's words (greedy longest match) and
    reads each piece on its own: the cut is cheap, the reading of a piece the costly part, and
    a name's pieces are mostly single characters shared by many names. So the same cut is made
    here and each piece's reading memoised (tests/imports compares the two over many names)."""
    if not RE_HANS.fullmatch(name):  # Latin or mixed text: pypinyin's own way
        return "".join(lazy_pinyin(name))
    return "".join(map(_piece_pinyin, phrase_cut.cut(name)))


@lru_cache(maxsize=50_000)
def _piece_pinyin(piece: str) -> str:
    return "".join(lazy_pinyin(piece))
