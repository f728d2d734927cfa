"""The column-wise cleaning (imports.cleaning.frame) must give exactly what the scalar
``clean_*`` functions give cell by cell: the same values (and types) and the same flags.
Columns are drawn at random from pools of ordinary and ugly values (the cases of the other
tests in tests/imports among them), long enough to take the vectorised paths."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from django.utils import translation

from crmhub.choices import FieldType
from imports.cleaning import (
    clean_address,
    clean_boolean,
    clean_country,
    clean_date,
    clean_email,
    clean_gender,
    clean_id_number,
    clean_mobile,
    clean_name,
    clean_text,
    id_number_consistency,
    split_address,
    split_name,
)
from imports.cleaning.frame import SMALL_COLUMN, clean_array, clean_frame, factorize, resident_id_births


def _resident_id(rng: random.Random, *, valid: bool = True) -> str:
    from stdnum.cn.ric import calc_check_digit

    region = rng.choice(["110105", "440305", "310115", "999999", "000000", "510107"])
    born = f"{rng.randrange(1840, 2030):04d}{rng.randrange(0, 14):02d}{rng.randrange(0, 32):02d}"
    body = f"{region}{born}{rng.randrange(1000):03d}"
    digit = calc_check_digit(body + "X")
    if not valid:
        digit = rng.choice("0123456789X")
    return body + digit


def _mobile(rng: random.Random) -> str:
    digits = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    return rng.choice(
        [
            digits,
            f"{digits[:3]} {digits[3:7]} {digits[7:]}",
            f"+86-{digits[:3]}-{digits[3:7]}-{digits[7:]}",
            f"0086{digits}",
            f"86{digits}",
            f"+86 {digits}",
            f"(+86) {digits[:3]}.{digits[3:7]}.{digits[7:]}",
            f"0{rng.randrange(10, 99)}-{rng.randrange(1000000, 9999999)}",
            f" {digits}\u3000",
            digits.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
            f"{digits[:3]}\t{digits[3:]}",
            f"1{rng.choice('012')}{rng.randrange(10**9):09d}",
            digits[:-1],
        ]
    )


UGLY = {
    FieldType.MOBILE: [
        "138 0013 8000",
        "+86-138-0013-8000",
        "0086 13800138000",
        "8613800138000",
        "１３８００１３８０００",
        "(+86) 138.0013.8000",
        "12345",
        "",
        "  ",
        "+44 20 7946 0958",
        "010-65529988",
        "010-6552 9988",
        "13800138000\n",
        "1380013800\n0",
        "\u200b13800138000",
        "١٣٨٠٠١٣٨٠٠٠",
        "+8613800138000",
        "+86+13800138000",
        "abc",
    ],
    FieldType.EMAIL: [
        " Foo@QQ.COM ",
        "li@gmial.com",
        "a@qq.con",
        "a@@b",
        "x@company-internal.cn",
        "ＡＢＣ@ＱＱ.ＣＯＭ",
        "用户@qq.com",
        "a@b.c",
        "a@b.co",
        "first.last@sub.example.org",
        ".a@qq.com",
        "a.@qq.com",
        "a@qq.com.",
        "a@-qq.com",
        "",
        "   ",
        "zs@qq.com",
        "ls@gmial.com",
        "OY@Example.COM",
        "a@hotmial.com",
        "b@163.con",
        "c@qq.cm",
        "d@yahoo.co",
        "e@x.io",
    ],
    FieldType.ID_NUMBER: [
        "11010519491231002X",
        "11010519491231002x",
        "110105194912310021",
        "999999194912310025",
        "999999194912310021",
        "110105194902300020",
        "110105194902300021",
        "110105185001010013",
        "110105185001010011",
        "1101051949123100",
        "E12345678",
        "110105 19491231 002X",
        "110105-19491231-002X",
        "１１０１０５１９４９１２３１００２Ｘ",
        "00123456789012345678",
        "123456789012345",
        "1234567890123456789",
        "",
        "  ",
        " - ",
        "11010500001231002X",
        "110105200002290029",
        "110105190002290021",
        "11010519491231002*",
        "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X",
        "G1234567",
    ],
    FieldType.DATE: [
        "2024/1/5",
        "2024年1月5日",
        "2024 年 1 月 5 日",
        "05-01-2024",
        "25/12/2024",
        "45296",
        "45296.0",
        "20240105",
        "2024-01-05 08:30:00",
        "2024-01-05T08:30:00",
        "2024-02-30",
        "someday",
        "1700-01-01",
        "2999-01-01",
        "0",
        "",
        "１９９０－０１－０２",
        "1949年12月31日",
        "2024/13/40",
    ],
    FieldType.GENDER: ["男", "女士", "M", "female", "1", "0", "2", "未知", "?", "1.0", " f ", "Ｍ", "", "男性", "x"],
    FieldType.NAME: [
        " 張　偉 ",
        "ＪＯＨＮ  Smith",
        "张3",
        "欧阳娜娜",
        "阿卜杜•热合曼",
        "John Ronald Smith",
        "Smith, John",
        "",
        "张 伟",
        "劉德華",
        "Alexander " * 25,
        "@@",
    ],
    FieldType.ADDRESS: [
        "广东省深圳市南山区科技园路1号",
        "北京市朝阳区建国路88号",
        " 上海市  浦东新区 世纪大道 ",
        "123 Main Street",
        "",
        "内蒙古呼和浩特市新城区",
        "ＡＢＣ路１号",
    ],
    FieldType.TEXT: ["金卡", "银卡", "", "  普通 ", "ｖｉｐ", "=cmd|' /C calc'!A0", "a\tb"],
    FieldType.BOOLEAN: ["是", "否", "maybe", "", "1", "0", "TRUE", "off"],
}
SCALAR = {
    FieldType.MOBILE: clean_mobile,
    FieldType.EMAIL: clean_email,
    FieldType.ID_NUMBER: clean_id_number,
    FieldType.DATE: clean_date,
    FieldType.GENDER: clean_gender,
    FieldType.NAME: clean_name,
    FieldType.ADDRESS: clean_address,
    FieldType.TEXT: clean_text,
    FieldType.BOOLEAN: clean_boolean,
}
GENERATED = {
    FieldType.MOBILE: _mobile,
    FieldType.EMAIL: lambda rng: (
        f"User{rng.randrange(10**6)}@"
        + rng.choice(["qq.com", "QQ.com", "gmial.com", "163.com", "sina.cn", "gmail.con", "x"])
    ),
    FieldType.ID_NUMBER: lambda rng: _resident_id(rng, valid=rng.random() < 0.7),
    FieldType.DATE: lambda rng: rng.choice(
        [
            f"{rng.randrange(1800, 2040)}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}",
            f"{rng.randrange(1, 32)}/{rng.randrange(1, 14)}/{rng.randrange(1900, 2030)}",
            f"{rng.randrange(1950, 2005)}年{rng.randrange(1, 13)}月{rng.randrange(1, 29)}日",
            str(rng.randrange(0, 3_000_000)),
        ]
    ),
}


def _column(field_type: str, rng: random.Random, n: int = 3000) -> list[str]:
    pool = UGLY[field_type]
    make = GENERATED.get(field_type)
    return [make(rng) if make and rng.random() < 0.6 else rng.choice(pool) for _ in range(n)]


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize("field_type", list(UGLY))
def test_it_cleans_a_column_exactly_as_the_scalar_function_does(field_type, language):
    rng = random.Random(f"{field_type}{language}")
    cells = _column(field_type, rng)
    with translation.override(language):
        for dayfirst in (False, True) if field_type == FieldType.DATE else (False,):
            column = clean_array(np.array(cells, dtype=object), "x", field_type, dayfirst=dayfirst)
            if field_type == FieldType.DATE:
                expected = [clean_date(c, dayfirst=dayfirst) for c in cells]
            else:
                expected = [SCALAR[field_type](c) for c in cells]
            got = list(zip(column.values.tolist(), column.flags.tolist(), strict=True))
            for cell, mine, theirs in zip(cells, got, expected, strict=True):
                assert mine == tuple(theirs) and type(mine[0]) is type(theirs[0]), cell


@pytest.mark.parametrize("line_breaks", [False, True])
def test_it_cleans_mobiles_with_or_without_line_breaks_in_the_column_as_the_scalar_function_does(line_breaks):
    # Without a line break anywhere the column's separators are dropped in one pass over the
    # column joined by line breaks; a single cell holding one sends the column cell by cell.
    rng = random.Random(f"mobiles{line_breaks}")
    pool = [c for c in UGLY[FieldType.MOBILE] if "\n" not in c]
    pool += ["\t13800138000", "13800138000\u3000", " (138) 0013-8000 ", "1 3 8 0 0 1 3 8 0 0 0", "+86.138-0013.8000"]
    pool += ["138\t0013 8000", "+(86)13800138000", "--13800138000", "13800138000.", "\x0b13800138000"]
    cells = [rng.choice(pool) if rng.random() < 0.5 else GENERATED[FieldType.MOBILE](rng) for _ in range(2000)]
    if line_breaks:
        cells[rng.randrange(len(cells))] = "13800138000\n"
    column = clean_array(np.array(cells, dtype=object), "mobile", FieldType.MOBILE)
    got = list(zip(column.values.tolist(), column.flags.tolist(), strict=True))
    assert got == [tuple(SCALAR[FieldType.MOBILE](c)) for c in cells]


def test_it_factorizes_text_as_pandas_factorizes_objects():
    rng = random.Random("factorize")
    pool = ["", " ", "nan", "NaN", "None", "NULL", "<NA>", "张三", "e\u0301", "é", "a\x00b", "😀", "0", "00"]
    cells = np.array([rng.choice(pool) for _ in range(500)], dtype=object)
    codes, distinct = factorize(cells, text=True)
    expected_codes, expected = pd.factorize(cells, use_na_sentinel=False)
    assert codes.tolist() == expected_codes.tolist()
    assert distinct.tolist() == expected.tolist() and all(type(v) is str for v in distinct)


def test_it_gives_the_flags_in_the_language_of_the_run():
    cells = np.array(["someday", "张3", "a@@b", "110105194912310021"] * SMALL_COLUMN, dtype=object)
    for language in ("en", "zh-hans", "en"):
        with translation.override(language):
            for field_type in (FieldType.DATE, FieldType.NAME, FieldType.EMAIL, FieldType.ID_NUMBER):
                scalar = SCALAR[field_type]
                assert clean_array(cells, "x", field_type).flags.tolist() == [scalar(c).flag for c in cells]


def test_it_checks_resident_ids_on_the_digit_matrix_as_stdnum_does():
    from stdnum.cn import ric

    rng = random.Random(11643)
    ids = [_resident_id(rng, valid=rng.random() < 0.8) for _ in range(5000)]
    for number, born in zip(ids, resident_id_births(ids), strict=True):
        assert (born is not None) == ric.is_valid(number), number
        if born is not None:
            assert born == ric.get_birth_date(number).isoformat()


def test_it_cleans_country_columns_as_countries():
    cells = np.array(["中国", "jp", "Atlantis", "", "usa"] * 20, dtype=object)
    column = clean_array(cells, "country", FieldType.TEXT)
    assert column.values.tolist() == [clean_country(c).value for c in cells]


def _frame_one_by_one(frame: pd.DataFrame, mapping: dict[str, str], types: dict[str, str]) -> tuple[dict, dict]:
    """The chunk cleaning as it was done before it was vectorised: cell by cell, row by row."""
    scalar = {**SCALAR, FieldType.DATE: lambda v: clean_date(v)}
    values = {f: [scalar[types[f]](v).value for v in frame[h]] for h, f in mapping.items()}
    flags = {f: [scalar[types[f]](v).flag for v in frame[h]] for h, f in mapping.items()}
    n = len(frame)
    split = [split_name(v) if not f else ("", "") for v, f in zip(values["full_name"], flags["full_name"], strict=True)]
    values["family_name"], values["given_name"] = [p[0] for p in split], [p[1] for p in split]
    flags["family_name"] = flags["given_name"] = [""] * n
    parts = [split_address(a) if a else None for a in values["address"]]
    for name in ("province", "city", "district"):
        values[name] = [getattr(p, name) if p else "" for p in parts]
        flags[name] = [""] * n
    for i, id_number in enumerate(values["id_number"]):
        if id_number and not flags["id_number"][i]:
            birth = values["birth_date"][i] if not flags["birth_date"][i] else ""
            reason = id_number_consistency(id_number, birth, values["gender"][i] or "")
            if reason:
                flags["id_number"][i] = reason
    return values, flags


@pytest.mark.parametrize("rows", [5, 4000])
def test_it_cleans_a_chunk_with_its_derived_fields_as_row_by_row(rows):
    rng = random.Random(rows)
    ids = [_resident_id(rng) for _ in range(50)]
    facts = [(f"{i[6:10]}-{i[10:12]}-{i[12:14]}", "男" if int(i[16]) % 2 else "女") for i in ids]
    frame_rows = []
    for _ in range(rows):
        k = rng.randrange(len(ids))
        birth, gender = facts[k]
        frame_rows.append(
            {
                "姓名": rng.choice(UGLY[FieldType.NAME]),
                "地址": rng.choice(UGLY[FieldType.ADDRESS]),
                "身份证": rng.choice([ids[k], ids[k], "", *UGLY[FieldType.ID_NUMBER]]),
                "生日": rng.choice([birth, birth, "1950-01-01", "", "someday"]),
                "性别": rng.choice([gender, gender, "男", "女", "", "?"]),
            }
        )
    frame = pd.DataFrame(frame_rows, dtype=str)
    mapping = {"姓名": "full_name", "地址": "address", "身份证": "id_number", "生日": "birth_date", "性别": "gender"}
    types = {
        "full_name": FieldType.NAME,
        "address": FieldType.ADDRESS,
        "id_number": FieldType.ID_NUMBER,
        "birth_date": FieldType.DATE,
        "gender": FieldType.GENDER,
    }
    values, flags = clean_frame(frame, mapping, types)
    expected_values, expected_flags = _frame_one_by_one(frame, mapping, types)
    assert {k: v.tolist() for k, v in values.items()} == expected_values
    assert {k: f.tolist() for k, f in flags.items()} == expected_flags
    assert any(flags["id_number"] == id_number_consistency(ids[0], "1800-01-01", ""))  # the check did flag


def test_it_reads_names_as_pypinyin_does():
    from pypinyin import lazy_pinyin

    from imports.cleaning.names import _pinyin_text

    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    surnames += "欧阳司马单于长孙"
    given = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉文斌浩宇欣怡子涵梓萱重庆长乐行银朝阳"
    rng = random.Random(7)
    names = {rng.choice(surnames) + "".join(rng.choice(given) for _ in range(rng.randrange(1, 4))) for _ in range(5000)}
    names |= {"欧阳娜娜", "单于", "重庆", "阿卜杜·热合曼", "John Smith", "张3", "长孙无忌", "曾国藩", "朝阳"}
    for name in names:
        assert _pinyin_text(name) == "".join(lazy_pinyin(name)), name


def test_the_blind_indexer_of_the_content_hash_equals_the_blind_index():
    from accounts.crypto import blind_index, blind_indexer

    index = blind_indexer()
    for value in ["", "a", "11010519491231002X", "张伟" * 50, "[{},{}]", "x" * 200]:
        assert index(value) == blind_index(value)
