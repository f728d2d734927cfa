"""A chunk's rows built column by column (imports.rows) must be what building them row by row
gives: the same dicts, byte-identical JSON texts (so the same content hashes as before and as
a single push), the same flags, sealed values that decrypt to the plaintext, staging COPY
fields that PostgreSQL reads back as those texts, and the customer extras of
``linking.CustomerExtras``."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from accounts.crypto import CIPHERTEXT_PREFIX, blind_indexer, decrypt
from crmhub.choices import FieldType
from imports.cleaning.frame import clean_frame
from imports.linking import CustomerExtras
from imports.rows import ChunkColumns, dumps_sorted
from imports.writers import _NO_EXTRAS, STAGE_COLUMNS, extras_fields, stage_copy_text
from tests.imports.test_cleaning_vectorised import UGLY

MAPPING = {
    "客户编号": "member_no",
    "姓名": "full_name",
    "手机号": "mobile",
    "邮箱": "email",
    "身份证号": "id_number",
    "出生日期": "birth_date",
    "性别": "gender",
    "地址": "address",
    "标签": "tags",
    "短信许可": "consent_sms",
    "积分": "points",
    "会员等级": "member_level",
}
TYPES = {
    "member_no": FieldType.CODE,
    "full_name": FieldType.NAME,
    "mobile": FieldType.MOBILE,
    "email": FieldType.EMAIL,
    "id_number": FieldType.ID_NUMBER,
    "birth_date": FieldType.DATE,
    "gender": FieldType.GENDER,
    "address": FieldType.ADDRESS,
    "tags": FieldType.TAGS,
    "consent_sms": FieldType.BOOLEAN,
    "points": FieldType.NUMBER,
    "member_level": FieldType.TEXT,
}
# Cells JSON and COPY must escape: quotes, backslashes, tabs, newlines, other control characters.
AWKWARD = ['say "hi"', "back\\slash", "tab\there", "line\nbreak", "cr\rlf", "\x07bell", "\x0bvt\x0cff", "😀", "é"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    pools = {
        "客户编号": [f"M{i}" for i in range(30)] + AWKWARD,
        "姓名": UGLY[FieldType.NAME] + AWKWARD,
        "手机号": UGLY[FieldType.MOBILE],
        "邮箱": UGLY[FieldType.EMAIL],
        "身份证号": UGLY[FieldType.ID_NUMBER],
        "出生日期": UGLY[FieldType.DATE],
        "性别": UGLY[FieldType.GENDER],
        "地址": UGLY[FieldType.ADDRESS] + AWKWARD,
        "标签": ["vip;new", "VIP，高价值;VIP", "", "a|b/c", "、"],
        "短信许可": UGLY[FieldType.BOOLEAN],
        "积分": ["1,234", "1.5", "", "x", "nan", "-inf", "12"],
        "会员等级": UGLY[FieldType.TEXT] + AWKWARD,
        "备注": ["", "", "=cmd|' /C calc'!A0", *AWKWARD],
    }
    rows = [{h: rng.choice(pool) for h, pool in pools.items()} for _ in range(n)]
    return pd.DataFrame(rows, dtype=str)


def _unescape_copy(field: str) -> str | None:
    if field == "\\N":
        return None
    table = {"b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: table[m[1]], field)


def _chunk(n: int, seed: int) -> tuple[ChunkColumns, list[str]]:
    frame = _frame(n, seed)
    values, flags = clean_frame(frame, MAPPING, TYPES)
    headers = list(frame.columns)
    chunk = ChunkColumns(
        headers,
        [frame[h].to_numpy(dtype=object) for h in headers],
        values,
        flags,
        secret_headers={"身份证号"},
        secret_fields={"id_number"},
    )
    keys = [f"K{i}\t{AWKWARD[i % len(AWKWARD)]}" for i in range(n)]
    return chunk, keys


@pytest.mark.parametrize("n", [3, 700])
def test_it_builds_the_rows_texts_as_json_dumps_of_their_dicts(n):
    chunk, keys = _chunk(n, seed=n)
    kept = [i for i in range(n) if i % 7 != 3]  # rows refused by the pipeline are left out
    extras = CustomerExtras()
    rows = chunk.prepared_rows(kept, keys, [i + 2 for i in kept], seal=True, stage=True, extras=extras)
    digest = blind_indexer()
    for row, i in zip(rows, kept, strict=True):
        frame_row = {h: c[i] for h, c in zip(chunk.headers, chunk.cells, strict=True)}
        raw = {h: v for h, v in frame_row.items() if v != ""}
        normalized = {
            n: c[i]
            for n, c in zip(chunk.names, chunk.values, strict=True)
            if c[i] is not None and c[i] != "" and c[i] != []
        }
        flags = {n: f[i] for n, f in zip(chunk.names, chunk.flags, strict=True) if f[i]}
        assert (row.row_number, row.key) == (i + 2, keys[i])
        assert list(row.raw.items()) == list(raw.items()) and list(row.normalized.items()) == list(normalized.items())
        assert list(row.flags.items()) == list(flags.items())
        assert row.record_hash == digest(dumps_sorted([raw, normalized]))
        # Sealed: the secret values are ciphertexts (the same in the texts and the dicts), nothing else changed.
        assert row.sealed_raw_json == dumps_sorted(row.sealed_raw)
        assert row.sealed_normalized_json == dumps_sorted(row.sealed_normalized)
        for sealed, plain, secret in (
            (row.sealed_raw, raw, "身份证号"),
            (row.sealed_normalized, normalized, "id_number"),
        ):
            assert {k: v for k, v in sealed.items() if k != secret} == {k: v for k, v in plain.items() if k != secret}
            if secret in plain:
                assert sealed[secret].startswith(CIPHERTEXT_PREFIX) and decrypt(sealed[secret]) == plain[secret]
        # The staging fields read back as the texts; the extras are CustomerExtras' of the row.
        fields = [_unescape_copy(f) for f in row.stage_fields.split("\t")]
        expected_flags = json.dumps(flags, ensure_ascii=False, separators=(",", ":")) if flags else "{}"
        assert fields == [keys[i], row.sealed_raw_json, row.sealed_normalized_json, expected_flags, row.record_hash]
        assert row.stage_extras == extras_fields(CustomerExtras()(normalized, flags))
    assert any(row.flags for row in rows) and any("id_number" in row.normalized for row in rows)


def test_the_content_hash_of_a_chunk_row_is_the_hash_of_the_same_record_pushed_alone():
    from imports.single import Definitions, prepare_one

    chunk, keys = _chunk(200, seed=3)
    rows = chunk.prepared_rows(list(range(200)), keys, list(range(200)), seal=False, stage=False, extras=None)
    defs = Definitions(field_types=TYPES, active=frozenset(TYPES), secret=frozenset())
    for i, row in enumerate(rows):
        cells = {h: c[i] for h, c in zip(chunk.headers, chunk.cells, strict=True)}
        one = prepare_one(key=keys[i], cells=cells, mapping=MAPPING, defs=defs)
        assert (one.record_hash, one.flags) == (row.record_hash, row.flags), cells


@pytest.mark.django_db
def test_postgresql_reads_the_staging_copy_text_back_as_written():
    if connection.vendor != "postgresql":
        # SQLite imports through the portable writer, which never stages COPY text; the rows feeding
        # both writers are compared above on every database.
        pytest.skip("the staging COPY is PostgreSQL's writer; this test runs in the PostgreSQL pass")
    from imports.writers import STAGE_DDL, Existing

    chunk, keys = _chunk(300, seed=5)
    rows = chunk.prepared_rows(list(range(300)), keys, list(range(300)), seal=True, stage=True, extras=CustomerExtras())
    new, changed = (
        rows[:200],
        [(row, Existing(5000 + i, "old", None if i % 2 else 7)) for i, row in enumerate(rows[200:])],
    )
    text = stage_copy_text(
        list(range(1, 201)), new, [(100 + i, i % 3 == 0) for i in range(200)], changed, extras=CustomerExtras()
    )
    with connection.cursor() as cursor:
        cursor.execute(STAGE_DDL)
        with cursor.copy(f"COPY imports_stage ({STAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)
        cursor.execute(
            "SELECT sr_id, is_new, customer_id, customer_created, source_key, raw::text, normalized::text, "
            "flags::text, "
            "record_hash, pinyin, id_hash, birth_date, fields::text FROM imports_stage ORDER BY sr_id"
        )
        staged = cursor.fetchall()
        cursor.execute("TRUNCATE imports_stage")

    def jsonb(text: str) -> object:
        return json.loads(text)

    assert len(staged) == 300
    for got, row in zip(staged, rows, strict=True):
        sr_id, is_new, customer_id, created, key, raw, normalized, flags, record_hash, *extra = got
        assert (key, record_hash) == (row.key, row.record_hash)
        assert (jsonb(raw), jsonb(normalized), jsonb(flags)) == (row.sealed_raw, row.sealed_normalized, row.flags)
        if is_new:
            assert (customer_id, created) == (100 + sr_id - 1, (sr_id - 1) % 3 == 0)
            pinyin, id_hash, birth, fields = CustomerExtras()(row.normalized, row.flags)
            assert (extra[0], extra[1], extra[2], json.loads(extra[3])) == (pinyin, id_hash, birth, json.loads(fields))
        else:
            assert extra == [None, None, None, None] and not created
            assert customer_id == (None if (sr_id - 5000) % 2 else 7)
    assert _NO_EXTRAS.count("\\N") == 4


def test_rows_prepared_without_the_chunk_texts_give_the_same_staging_fields():
    """Rows the writer gets without fields made ahead (other callers) are formatted from their dicts."""
    from imports.writers import stage_fields

    chunk, keys = _chunk(50, seed=9)
    ahead = chunk.prepared_rows(list(range(50)), keys, list(range(50)), seal=True, stage=True, extras=None)
    for row in ahead:
        text = row.stage_fields
        row.stage_fields = None
        fields, expected = stage_fields(row).split("\t"), text.split("\t")
        # The dicts are written in their own key order: equal as JSON, and equal elsewhere.
        assert [json.loads(_unescape_copy(f)) for f in fields[1:4]] == [
            json.loads(_unescape_copy(f)) for f in expected[1:4]
        ]
        assert (fields[0], fields[4]) == (expected[0], expected[4])


def test_an_object_column_of_mixed_values_is_encoded_as_json_does():
    from imports.rows import object_texts, present_mask

    column = np.array([True, False, None, "", [], ["a"], 1, 1.5, float("nan"), "x\\y"], dtype=object)
    mask = present_mask(column, normalized=True)
    texts = object_texts([("b", column, mask), ("a", np.array(["1"] * 10, dtype=object), np.ones(10, dtype=bool))], 10)
    for value, keep, text in zip(column, mask, texts, strict=True):
        assert text == dumps_sorted({"a": "1", **({"b": value} if keep else {})})


def test_it_seals_only_the_secret_values_place_in_the_texts():
    """The sealed texts replace the secret key's value in the plain texts: other keys that end
    with the secret key's name, values that spell its label, a key with a quote, values already
    sealed and values that are not text are left as they are."""
    rng = random.Random(5)
    n = 300
    label_lookalike = '"身份证号":"11010519491231002X"'
    secret_cells = ["11010519491231002X", 'a"b\\c', "", "enc1:not-sealed-again", "😀", "\t", label_lookalike]
    other_cells = ["11010519491231002X", label_lookalike, '{"身份证号":"x"}', "", 'x"', "\\"]
    cells = {
        "身份证号": [rng.choice(secret_cells) for _ in range(n)],
        "旧身份证号": [rng.choice(other_cells) for _ in range(n)],
        '身份"证号': [rng.choice(secret_cells) for _ in range(n)],
        "备注": [rng.choice(other_cells) for _ in range(n)],
        # not secret, sorted before the secret key, and ends with its label after an escaped quote
        '旧"身份证号': [rng.choice(secret_cells) for _ in range(n)],
    }
    headers = list(cells)
    tags = np.empty(n, dtype=object)
    tags[:] = [rng.choice([[], ["vip"], ["a", "b"]]) for _ in range(n)]
    values = {
        "id_number": np.array(cells["身份证号"], dtype=object),
        "tags": tags,
        "note": np.array(cells["备注"], dtype=object),
    }
    flags = {name: np.full(n, "", dtype=object) for name in values}
    chunk = ChunkColumns(
        headers,
        [np.array(cells[h], dtype=object) for h in headers],
        values,
        flags,
        secret_headers={"身份证号", '身份"证号'},
        secret_fields={"id_number", "tags"},
    )
    rows = chunk.prepared_rows(
        list(range(n)), [f"K{i}" for i in range(n)], list(range(n)), seal=True, stage=False, extras=None
    )
    for row in rows:
        assert row.sealed_raw_json == dumps_sorted(row.sealed_raw)
        assert row.sealed_normalized_json == dumps_sorted(row.sealed_normalized)
        for sealed, plain in ((row.sealed_raw, row.raw), (row.sealed_normalized, row.normalized)):
            assert sealed.keys() == plain.keys()
            for key, value in plain.items():
                if key in ("身份证号", '身份"证号', "id_number") and not value.startswith(CIPHERTEXT_PREFIX):
                    assert sealed[key] != value and decrypt(sealed[key]) == value
                else:
                    assert sealed[key] == value
