"""Pure name helpers for matching: folding, pinyin, nicknames, Chinese/Western splitting.

No ORM here. Everything is cached by value because names repeat a great deal (张伟, 王芳,
John Smith), so a million records cost only as many conversions as distinct names.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc
from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT
from pypinyin.constants import RE_HANS as _HANS

_T2S = opencc.OpenCC("t2s")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NOT_WORD = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")
_CJK_SEPARATORS = re.compile(r"[\s·•・.\-]")

# Chinese compound surnames: without them 欧阳娜娜 would split as 欧 + 阳娜娜.
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒".split()
    + "夏侯 轩辕 令狐 端木 独孤 南宫 西门 百里 呼延 闻人 澹台".split()
)

# Western given-name variants mapped to one canonical form (a small, common core; both
# directions — William/Bill — fold to the same key).
_NICKNAME_GROUPS = (
    "william bill billy will willy liam",
    "robert bob bobby rob robbie bert",
    "richard rick ricky dick rich",
    "james jim jimmy jamie",
    "john jack johnny jon",
    "jonathan jon jonny",
    "michael mike mikey mick",
    "thomas tom tommy",
    "joseph joe joey",
    "charles charlie chuck chas",
    "christopher chris kit",
    "daniel dan danny",
    "matthew matt",
    "anthony tony",
    "andrew andy drew",
    "steven stephen steve stevie",
    "edward ed eddie ted ned",
    "benjamin ben benny",
    "samuel sam sammy",
    "alexander alex sandy alec",
    "nicholas nick nicky",
    "patrick pat paddy",
    "peter pete",
    "david dave davy",
    "henry harry hank",
    "lawrence larry",
    "timothy tim timmy",
    "gregory greg",
    "kenneth ken kenny",
    "ronald ron ronnie",
    "donald don donnie",
    "gerald gerry jerry",
    "elizabeth liz lizzy beth betty eliza libby",
    "margaret maggie meg peggy marge",
    "katherine catherine kate katie kathy cathy kat",
    "jennifer jen jenny",
    "rebecca becky becca",
    "susan sue susie suzanne",
    "deborah debbie deb",
    "patricia pat patty trish",
    "barbara barb babs",
    "jessica jess jessie",
    "victoria vicky tori",
    "christine christina chris chrissy tina",
    "alexandra alex sandra sandy",
    "abigail abby",
    "samantha sam sammy",
    "dorothy dot dottie",
    "judith judy",
    "pamela pam",
    "cynthia cindy",
    "theresa teresa terry tess",
    "frances fran frankie",
    "francis frank frankie",
)


def _nickname_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for group in _NICKNAME_GROUPS:
        names = group.split()
        for name in names:
            # A nickname shared by two groups (chris, sam, alex...) keeps its first group.
            mapping.setdefault(name, names[0])
    return mapping


NICKNAMES = _nickname_map()


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


class Names:
    """The name derivations, each memoised by ``cache`` (a decorator). The module's functions
    below are one shared instance with bounded LRU caches (real time: a few names per call);
    a batch makes its own with unbounded ones (``Names.batch()``), so that each distinct
    name and its parts are folded and read once however many there are, without evicting and
    recomputing past an LRU's bound, and the tables go when the batch is done."""

    def __init__(self, cache) -> None:  # noqa: ANN001
        self.fold = cache(self._fold)
        self.pinyin = cache(self._pinyin)
        self.split_chinese = cache(self._split_chinese)
        self.western_key = cache(self._western_key)
        self.name_key = cache(self._name_key)
        self.family_key = cache(self._family_key)
        self.given_key = cache(self._given_key)
        self.swapped_name = cache(self._swapped_name)

    @classmethod
    def batch(cls) -> Names:
        return cls(lru_cache(maxsize=None))

    @staticmethod
    def _fold(text: str) -> str:
        if not text:
            return ""
        text = unicodedata.normalize("NFKC", text).strip()
        if has_cjk(text):
            return _CJK_SEPARATORS.sub("", _T2S.convert(text))
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        return _SPACES.sub(" ", _NOT_WORD.sub(" ", text.lower())).strip()

    def _pinyin(self, text: str) -> str:
        text = self.fold(text)
        if not text or not has_cjk(text):
            return ""
        if _HANS.match(text) and not _holds_phrase(text):
            # No phrase of pypinyin's dictionary inside: pypinyin would read the characters one
            # by one, so their cached readings give its answer ~10x faster (a test holds them equal).
            return "".join(_char_pinyin(c) for c in text)
        return "".join(lazy_pinyin(text, style=Style.NORMAL, errors="ignore"))

    def _split_chinese(self, full: str) -> tuple[str, str]:
        full = self.fold(full)
        if len(full) < 2:
            return full, ""
        if full[:2] in COMPOUND_SURNAMES and len(full) > 2:
            return full[:2], full[2:]
        return full[:1], full[1:]

    def _western_key(self, text: str) -> str:
        tokens = self.fold(text).split()
        return " ".join(sorted(canonical_given(t) for t in tokens))

    def _name_key(self, text: str) -> str:
        return self.pinyin(text) if has_cjk(text) else self.western_key(text)

    def _family_key(self, full_name: str, family_name: str = "") -> str:
        family = self.fold(family_name)
        if not family:
            full = self.fold(full_name)
            if not full:
                return ""
            if has_cjk(full):
                family = self.split_chinese(full)[0]
            else:
                tokens = full.split()
                family = tokens[-1] if len(tokens) > 1 else ""
        if has_cjk(family):
            return self.pinyin(family)
        return family

    def _given_key(self, full_name: str, given_name: str = "", family_name: str = "") -> str:
        given = self.fold(given_name)
        if not given:
            full = self.fold(full_name)
            if not full:
                return ""
            if has_cjk(full):
                fam = self.fold(family_name)
                given = full[len(fam) :] if fam and full.startswith(fam) else self.split_chinese(full)[1]
            else:
                tokens = full.split()
                given = tokens[0] if len(tokens) > 1 else full
        if has_cjk(given):
            return self.pinyin(given)
        return canonical_given(given.split()[0]) if given else ""

    def _swapped_name(self, full_name: str, family_name: str = "", given_name: str = "") -> str:
        full = self.fold(full_name)
        if not full:
            return ""
        if has_cjk(full):
            fam = self.fold(family_name)
            if fam and full.startswith(fam):
                return full[len(fam) :] + fam
            family, given = self.split_chinese(full)
            return given + family
        tokens = full.split()
        return " ".join(tokens[1:] + tokens[:1]) if len(tokens) > 1 else full


@lru_cache(maxsize=50_000)
def _char_pinyin(char: str) -> str:
    return "".join(lazy_pinyin(char, style=Style.NORMAL, errors="ignore"))


def _holds_phrase(text: str) -> bool:
    """Whether a word of pypinyin's phrase dictionary (whose readings may differ from the
    characters', 曾经 / 重庆) occurs in ``text``."""
    n = len(text)
    return any(text[i:j] in PHRASES_DICT for i in range(n - 1) for j in range(i + 2, n + 1))


def canonical_given(token: str) -> str:
    return NICKNAMES.get(token, token)


_SHARED = Names(lru_cache(maxsize=200_000))

#: NFKC, traditional→simplified, lower case, punctuation dropped, spaces collapsed. Chinese
#: names lose their inner spaces and middle dots (张 伟, 阿卜杜·热合曼).
fold = _SHARED.fold
#: Toneless pinyin of a folded name, syllables joined ('zhangwei'); '' for non-Chinese.
pinyin = _SHARED.pinyin
#: (family, given) of a folded Chinese full name, compound surnames included.
split_chinese = _SHARED.split_chinese
#: Folded Western name with given-name nicknames canonicalised and tokens sorted, so that
#: 'Bill Smith', 'Smith, William' and 'william smith' share one key.
western_key = _SHARED.western_key
#: The sound-alike key of a name: pinyin for Chinese names, western_key otherwise.
name_key = _SHARED.name_key
#: Pinyin (Chinese) or folded (Western) family name, from the family-name column when known,
#: else derived from the full name (Chinese: first character or compound surname; Western:
#: last token).
family_key = _SHARED.family_key
given_key = _SHARED.given_key
#: The folded name with family and given parts swapped (伟张 for 张伟, 'smith john' for
#: 'john smith'): equal to the other record's folded name when one system wrote them the
#: other way round.
swapped_name = _SHARED.swapped_name
