"""The set-based writer on PostgreSQL builds golden customers, their history and their
"created" events in SQL (``imports.linking.new_customers_sql``). It must give exactly what the
per-row Python path (``customer_row`` + ``changes_record_bulk``) gives: the same file is imported
through both and every customer, history row and event is compared."""

from __future__ import annotations

# ruff: noqa: E501 - the rows read best one per line
import json

import pytest
from django.db import connection

from accounts.crypto import CIPHERTEXT_PREFIX, blind_index, decrypt, unseal_values
from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.models import ChangeEvent, Customer, FieldDefinition, SourceRecord
from tests.imports.helpers import csv_bytes, write

HEADER = [
    "客户编号",
    "姓名",
    "手机号",
    "邮箱",
    "身份证号",
    "出生日期",
    "性别",
    "地址",
    "标签",
    "短信许可",
    "公司",
    "会员等级",
]
LONG_NAME = "Alexander " * 25  # 250 characters: cut to the column's 200 in the customer, whole in the record
ROWS = [
    [
        "A1",
        "张三",
        "138 0013 8000",
        "zs@qq.com",
        "11010519491231002X",
        "1949年12月31日",
        "女",
        "北京市朝阳区建国路1号",
        "vip;new",
        "是",
        "京东",
        "金卡",
    ],
    ["A2", "李四", "12345", "ls@gmial.com", "110105194912310021", "2024/13/40", "F", "", "", "否", "", ""],
    ["A3", LONG_NAME, "+86-139-0013-9000", "", "", "1990-01-02", "", "上海市浦东新区", "", "", "", "普通"],
    ["A4", "", "", "", "", "", "", "", "", "", "", ""],
    ["A5", "欧阳娜娜", "0086 137 0013 7000", "OY@Example.COM", "", "", "女", "", "a", "", "x" * 250, ""],
]
COMPARED = [f.attname for f in Customer._meta.concrete_fields if f.attname not in ("id", "created_at", "updated_at")]


def _import(tmp_path, code: str, *, in_sql: bool) -> None:  # noqa: ANN001
    from crmhub.services import source_get_or_create
    from imports.pipeline import ImportPipeline
    from imports.services import file_run_from_path, mapping_suggest

    source, _ = source_get_or_create(code=code)
    path = write(tmp_path, f"{code}.csv", csv_bytes(ROWS, header=HEADER))
    run = file_run_from_path(
        path=str(path), source=source, enqueue=False, plan_for=lambda layout: mapping_suggest(headers=layout.headers)
    )
    assert run.options["mapping"]["会员等级"] == "member_level"
    pipeline = ImportPipeline(run)
    pipeline.writer.customers_in_sql = in_sql
    with change_context(channel=ChangeChannel.IMPORT, ref=f"import_run:{run.pk}"):
        assert pipeline.execute() is True


def _by_key(code: str) -> dict[str, dict]:
    out = {}
    for record in SourceRecord.objects.filter(source__code=code).select_related("customer"):
        customer = record.customer
        values = {name: getattr(customer, name) for name in COMPARED}
        history = list(customer.history.values(*[n for n in COMPARED if n not in ("name_pinyin", "id_number_hash")]))
        events = list(
            ChangeEvent.objects.filter(customer_id=customer.pk).values("event_type", "changed_fields", "data")
        )
        for event in events:
            event["data"] = unseal_values(event["data"])
        out[record.source_key] = {"customer": values, "history": history, "events": events}
    return out


@pytest.mark.django_db(transaction=True)
def test_customers_and_events_built_in_sql_equal_the_python_path(tmp_path):
    if connection.vendor != "postgresql":
        # SQLite only has the per-row Python path (the one this test compares against, tested on both
        # databases by tests/imports); the SQL path runs in CI's PostgreSQL pass.
        pytest.skip("the set-based customer SQL is PostgreSQL's writer")
    FieldDefinition.objects.create(name="member_level", label_en="Level", label_zh="会员等级", synonyms=["会员等级"])
    _import(tmp_path, "python", in_sql=False)
    _import(tmp_path, "sql", in_sql=True)
    python, sql = _by_key("python"), _by_key("sql")
    assert sorted(sql) == sorted(python) == ["A1", "A2", "A3", "A4", "A5"]
    for key in python:
        assert sql[key] == python[key], key
    a1, a2, a3 = sql["A1"], sql["A2"], sql["A3"]
    # What the comparison covers: truncation, flagged values left out, dates, tags, booleans, custom.
    assert len(a3["customer"]["full_name"]) == 200 and a3["customer"]["name_pinyin"] == "alexander" * 20
    assert a2["customer"]["mobile"] == "" and a2["customer"]["birth_date"] is None
    assert a2["customer"]["consent_sms"] is False and a1["customer"]["consent_sms"] is True
    assert a1["customer"]["tags"] == ["vip", "new"] and a1["customer"]["custom"] == {"member_level": "金卡"}
    assert a1["customer"]["id_number"] == "11010519491231002X"
    assert a1["customer"]["id_number_hash"] == blind_index("11010519491231002X")
    assert a1["events"][0]["data"]["birth_date"] == "1949-12-31"
    assert a1["events"][0]["changed_fields"] == sorted(a1["events"][0]["changed_fields"])
    assert len(a1["history"]) == 1
    # Secret values are sealed in the stored rows and in the event, never plaintext.
    customer = SourceRecord.objects.get(source__code="sql", source_key="A1").customer
    with connection.cursor() as cursor:
        cursor.execute("SELECT id_number FROM crmhub_customer WHERE id = %s", [customer.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith(CIPHERTEXT_PREFIX) and decrypt(stored) == "11010519491231002X"
    event = ChangeEvent.objects.get(customer_id=customer.pk)
    assert event.data["id_number"].startswith(CIPHERTEXT_PREFIX)
    assert event.channel == ChangeChannel.IMPORT and event.ref.startswith("import_run:")


@pytest.mark.django_db
def test_customer_values_staged_as_json_equal_what_sql_builds():
    """``linking.customer_values_texts`` (the prepare thread) stages each new customer's values;
    they must be the jsonb ``customer_values_sql`` builds from the staged normalized values, which
    is what the SQL path falls back to for rows staged without them."""
    if connection.vendor != "postgresql":
        pytest.skip("the staging table is PostgreSQL's writer; this test runs in the PostgreSQL pass")
    from imports.cleaning.frame import clean_frame
    from imports.linking import CustomerExtras, customer_values_sql
    from imports.rows import ChunkColumns
    from imports.writers import STAGE_COLUMNS, STAGE_DDL, stage_copy_text
    from tests.imports.test_rows import MAPPING, TYPES, _frame

    frame = _frame(600, seed=11)
    frame.loc[::7, "姓名"] = LONG_NAME  # cut to 200 characters in the customer
    frame.loc[::5, "地址"] = "路" * 600
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
    keys = [f"K{i}" for i in range(600)]
    rows = chunk.prepared_rows(list(range(600)), keys, list(range(600)), seal=True, stage=True, extras=CustomerExtras())
    assert sum(row.stage_values != "\\N" for row in rows) == 600  # every value of these rows is reproduced exactly
    text = stage_copy_text(list(range(1, 601)), rows, [(i, True) for i in range(1, 601)], [], extras=CustomerExtras())
    with connection.cursor() as cursor:
        cursor.execute(STAGE_DDL)
        with cursor.copy(f"COPY imports_stage ({STAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)
        cursor.execute(
            f"SELECT x.sr_id, x.cv, {customer_values_sql('x.v', 'x.birth_date')}, x.cv::text FROM (SELECT s.*, "
            "s.normalized - ARRAY(SELECT jsonb_object_keys(s.flags)) AS v FROM imports_stage s) x ORDER BY x.sr_id"
        )
        staged = cursor.fetchall()
        cursor.execute("TRUNCATE imports_stage")
    assert len(staged) == 600
    for sr_id, staged_values, built, stored_text in staged:
        assert staged_values == built, rows[sr_id - 1].normalized
        # The staged text lists the keys in the order jsonb stores them (its parser then has nothing to sort).
        text = rows[sr_id - 1].stage_values.replace("\\\\", "\\")
        assert _key_order(text) == _key_order(stored_text), text
    staged = [row[:3] for row in staged]
    # What the comparison covers: long text cut to the column, custom values (numbers and text), sealed IDs,
    # flagged values left out, dates, tags, booleans.
    values = [json.loads(v) for _i, v, _b in staged]
    assert any(len(v.get("full_name", "")) == 200 for v in values)
    assert any(v.get("address") == "路" * Customer._meta.get_field("address").max_length for v in values)
    assert any(isinstance(v.get("custom", {}).get("points"), float | int) for v in values)
    assert any(v.get("id_number", "").startswith(CIPHERTEXT_PREFIX) for v in values)
    assert any("birth_date" in v for v in values) and any("tags" in v for v in values)
    assert any("consent_sms" in v for v in values)
    assert any("mobile" in r.flags and "mobile" not in v for r, v in zip(rows, values, strict=True))


def _key_order(text: str) -> list[str]:
    """The keys of a JSON object text in the order written; a nested object's keys follow its own key."""
    marker = object()

    def hook(pairs: list) -> list:
        out: list = [marker]
        for key, value in pairs:
            out.append(key)
            if isinstance(value, list) and value[:1] == [marker]:
                out.extend(value[1:])
        return out

    return json.loads(text, object_pairs_hook=hook)[1:]


def test_customer_values_whose_text_could_differ_from_sql_are_left_to_sql():
    """A text field holding something other than a string, or an object that ``jsonb_strip_nulls``
    would change, is not staged (NULL): SQL builds those rows' values."""
    import numpy as np

    from imports.linking import customer_values_texts
    from imports.rows import ChunkColumns, present_mask

    values = {
        "full_name": np.array(["张三", 5, "李四", ""], dtype=object),
        "points": np.array([{"a": None}, 1, 2.5, None], dtype=object),
        "birth_date": np.array(["1990-01-02", "", "1990-13-01", ""], dtype=object),
    }
    flags = {name: np.array(["", "", "", ""], dtype=object) for name in values}
    chunk = ChunkColumns(
        ["h"], [np.array(["a", "b", "c", "d"], dtype=object)], values, flags, secret_headers=set(), secret_fields=set()
    )
    items = [(name, column, present_mask(column, normalized=True)) for name, column in values.items()]
    texts = customer_values_texts(chunk, 4, items, [flags[name] for name in values])
    assert texts[:2] == ["\\N", "\\N"]
    assert json.loads(texts[2]) == {"full_name": "李四", "custom": {"points": 2.5}}  # the date does not parse
    assert _key_order(texts[2]) == ["custom", "points", "full_name"]  # jsonb's order: shorter keys first
    assert texts[3] == "{}"
