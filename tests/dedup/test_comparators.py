"""Each comparison level, on the pure comparators (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from dedup import names
from dedup.comparators import COMPARISONS, digits_levels
from dedup.features import features_from_rows


def level(comparison: str, left: dict, right: dict, params: dict | None = None) -> str:
    frame = features_from_rows([{"id": 1, **left}, {"id": 2, **right}])
    c = COMPARISONS[comparison]
    value = int(c.levels_for(frame.iloc[[0]], frame.iloc[[1]], params)[0])
    return "missing" if value == 0 else c.levels[value - 1]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("张伟", "张伟", "exact"),
        ("张伟", "張偉", "exact"),  # traditional → simplified
        ("张 伟", "张伟", "exact"),
        ("JOHN  Smith", "john smith", "exact"),
        ("张伟", "章伟", "sound_alike"),  # same pinyin
        ("王芳", "王方", "sound_alike"),
        ("Bill Smith", "William Smith", "sound_alike"),  # nickname
        ("Smith John", "John Smith", "sound_alike"),  # word order (Western key is order-free)
        ("伟张", "张伟", "swapped"),
        ("欧阳娜娜", "娜娜欧阳", "swapped"),  # compound surname
        ("Jonathan Smithe", "Jonathan Smith", "close"),
        ("张晓明", "张晓敏", "close"),  # xiaoming/xiaomin
        ("张晓明", "张晓东", "similar"),
        ("张伟", "张芳", "different"),  # same family, different given: not "similar"
        ("张伟", "李娜", "different"),
        ("张伟", "", "missing"),
    ],
)
def test_it_grades_names(a, b, expected):
    assert level("name", {"full_name": a}, {"full_name": b}) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1985-03-04", "1985-03-04", "exact"),
        ("1985-03-04", "1985-04-03", "day_month_swapped"),
        ("1985-03-04", "1985-03-14", "one_part"),
        ("1985-03-04", "1958-03-04", "one_part"),
        ("1985-03-04", "1990-07-08", "different"),
        ("1985-03-03", "1985-03-03", "exact"),
        ("1985-03-04", None, "missing"),
    ],
)
def test_it_grades_birth_dates(a, b, expected):
    assert level("birth_date", {"birth_date": a}, {"birth_date": b}) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("+8613800138000", "13800138000", "exact"),  # E.164 and national
        ("+8613800138000", "+8613800183000", "typo"),  # adjacent digits transposed
        ("+8613800138000", "+8613800138001", "typo"),  # one digit
        ("+8613800138000", "+8613911112222", "different"),
        ("", "+8613911112222", "missing"),
    ],
)
def test_it_grades_mobiles(a, b, expected):
    assert level("mobile", {"mobile": a}, {"mobile": b}) == expected


def test_it_grades_id_numbers_and_ignores_invalid_ones():
    same = {"id_number": "11010519491231002X"}
    assert level("id_number", same, dict(same)) == "exact"
    assert level("id_number", same, {"id_number": "11010519491231020X"}) == "typo"  # plaintext only
    assert level("id_number", same, {"id_number": "440524188001010014"}) == "different"
    assert level("id_number", same, {"id_number": "440524188001010014", "id_valid": False}) == "missing"


def test_it_compares_blind_indexes_only_for_equality():
    frame = features_from_rows([{"id": 1, "id_number_hash": "ab" * 32}, {"id": 2, "id_number_hash": "ab" * 31 + "ba"}])
    c = COMPARISONS["id_number"]
    assert c.levels[int(c.levels_for(frame.iloc[[0]], frame.iloc[[1]])[0]) - 1] in ("typo", "different")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("zw@qq.com", "zw@qq.com", "exact"),
        ("zw@qq.com", "zw@163.com", "near"),
        ("zhangwei@qq.com", "zhangwie@qq.com", "near"),
        ("zw@qq.com", "lina@qq.com", "different"),
    ],
)
def test_it_grades_emails(a, b, expected):
    assert level("email", {"email": a}, {"email": b}) == expected


def test_it_grades_locations_and_equality_fields():
    assert level("location", {"address": "上海市 徐汇区 漕溪北路 1号"}, {"address": "上海市徐汇区漕溪北路1号"}) in (
        "same_address",
    )
    assert level("location", {"postcode": "200030"}, {"postcode": "200030"}) == "same_postcode"
    assert level("location", {"city": "上海"}, {"city": "上海"}) == "same_city"
    assert level("location", {"city": "上海"}, {"city": "北京"}) == "different"
    assert level("gender", {"gender": "M"}, {"gender": "F"}) == "different"
    assert level("gender", {"gender": "M"}, {"gender": "U"}) == "missing"
    assert level("wechat_unionid", {"wechat_unionid": "u1"}, {"wechat_unionid": "u1"}) == "exact"
    assert level("member_no", {"member_no": "M1"}, {"member_no": "M2"}) == "different"


def test_it_uses_the_rule_thresholds():
    a, b = {"full_name": "Jonathan Smithe"}, {"full_name": "Jonathan Smith"}
    assert level("name", a, b) == "close"
    assert level("name", a, b, {"high": 0.999, "low": 0.8}) == "similar"


def test_digit_levels_are_vectorised():
    a = np.array(["13800138000", "13800138000", ""], dtype=object)
    b = np.array(["13800138000", "13800318000", "1"], dtype=object)
    assert digits_levels(a, b).tolist() == [1, 2, 0]


def test_name_helpers():
    assert names.fold("張偉") == "张伟"
    assert names.pinyin("章伟") == names.pinyin("张伟") == "zhangwei"
    assert names.western_key("Bill  SMITH") == names.western_key("smith, william") == "smith william"
    assert names.split_chinese("欧阳娜娜") == ("欧阳", "娜娜")
    assert names.family_key("John Smith") == "smith"
    assert names.given_key("Bill Smith") == "william"


def test_the_per_row_and_vectorised_feature_paths_agree():
    import pandas as pd

    from dedup.features import _small_features, build_features

    rows = [
        {
            "id": 1,
            "full_name": "張偉",
            "birth_date": "1985-03-04",
            "mobile": "+86 138-0013-8000",
            "email": "ZW@QQ.com",
            "gender": "m",
            "city": "上海",
            "address": "上海市 徐汇区",
            "postcode": "200 030",
            "id_number_hash": "ab",
        },
        {"id": 2, "family_name": "欧阳", "given_name": "娜娜", "birth_date": None, "gender": "U", "id_valid": False},
        {"id": 3, "full_name": "Bill  Smith", "email": "nolocal", "member_no": " M1 ", "wechat_unionid": "u1"},
        {"id": 4, "family_name": "Smith", "given_name": "William", "mobile": "8613800138000"},
        {"id": 5},
    ]
    small = _small_features(rows)
    big = build_features(pd.DataFrame.from_records(rows))
    pd.testing.assert_frame_equal(small.reset_index(drop=True), big.reset_index(drop=True), check_dtype=False)


def test_pinyin_read_per_character_equals_pypinyins_reading():
    """``names.pinyin`` reads names without a dictionary phrase one character at a time (the
    batch's features convert ~240k distinct names at 1M records): the same as pypinyin's own
    reading, over random names of common and rare characters and names holding phrases."""
    import random

    from pypinyin import Style, lazy_pinyin

    rng = random.Random(7)
    common = (
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘单解区仇朴查"
        "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红重庆长乐"
    )
    rare = [chr(c) for c in range(0x4E00, 0x9FA5)]
    samples = {"曾经", "重庆", "单于", "长孙无忌", "解放", "朴实", "乐乐", "欧阳娜娜", "张伟", "銀行", "张a伟"}
    for _ in range(20_000):
        pool = common if rng.random() < 0.7 else rare
        samples.add("".join(rng.choice(pool) for _ in range(rng.choice([1, 2, 3, 3, 4]))))
    fast = 0
    for name in samples:
        folded = names.fold(name)
        expected = "".join(lazy_pinyin(folded, style=Style.NORMAL, errors="ignore")) if names.has_cjk(folded) else ""
        assert names.pinyin(name) == expected, name
        fast += bool(names._HANS.match(folded)) and not names._holds_phrase(folded)
    assert fast > len(samples) * 0.9  # the per-character path is the common one
    assert names._holds_phrase("曾经") and names._holds_phrase("重庆")
