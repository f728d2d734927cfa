from __future__ import annotations

import io
import zipfile

import pytest
from django.test import override_settings

from imports.mapping import detect_key_columns, suggest_mapping
from imports.readers import FileRefused, inspect_file, iter_chunks, sample_rows
from tests.imports.helpers import HEADER, csv_bytes, write, xlsx_bytes


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_it_reads_each_encoding(tmp_path, encoding):
    path = write(tmp_path, "c.csv", csv_bytes(encoding=encoding))
    layout = inspect_file(str(path))
    assert layout.headers == HEADER
    rows = sample_rows(str(path), layout, n=2)
    assert rows[0]["姓名"] == "张三" and rows[1]["手机号"] == "+86-139-0013-9000"


def test_it_sniffs_tabs_and_semicolons(tmp_path):
    for sep in ("\t", ";"):
        data = csv_bytes().decode().replace(",", sep).encode()
        layout = inspect_file(str(write(tmp_path, "c.txt", data)))
        assert layout.delimiter == sep and layout.headers == HEADER


def test_it_finds_the_header_under_title_rows_and_keeps_leading_zeros(tmp_path):
    rows = [["C001", "张三", "013800138000", "", "00123456789012345678", ""]]
    path = write(tmp_path, "c.csv", csv_bytes(rows=rows, title=True))
    layout = inspect_file(str(path))
    assert layout.header_row == 2 and layout.headers == HEADER
    row = next(iter_chunks(str(path), layout)).iloc[0]
    assert row["身份证号"] == "00123456789012345678" and row["手机号"] == "013800138000"


def test_it_reads_a_two_sheet_workbook_and_the_chosen_sheet(tmp_path):
    data = xlsx_bytes(
        {
            "说明": [["本表为客户名单"]],
            "客户": [["客户报表"], ["CID", "手机", "身份证号"], ["C1", 13800138000, "11010519491231002X"]],
        },
        merges={"客户": ["A1:C1"]},
    )
    path = write(tmp_path, "b.xlsx", data)
    first = inspect_file(str(path))
    assert first.sheets == ["说明", "客户"] and first.sheet == "说明"
    layout = inspect_file(str(path), sheet="客户")
    assert layout.header_row == 1 and layout.headers == ["CID", "手机", "身份证号"]
    assert sample_rows(str(path), layout) == [{"CID": "C1", "手机": "13800138000", "身份证号": "11010519491231002X"}]
    with pytest.raises(FileRefused, match="no sheet"):
        inspect_file(str(path), sheet="nope")


def test_it_fills_merged_header_cells_from_their_anchor(tmp_path):
    data = xlsx_bytes(
        {"S": [["客户编号", "联系方式", None, "姓名"], ["C1", "13800138000", "a@b.com", "王五"]]},
        merges={"S": ["B1:C1"]},
    )
    layout = inspect_file(str(write(tmp_path, "m.xlsx", data)))
    assert layout.headers == ["客户编号", "联系方式", "联系方式 (2)", "姓名"]


def test_it_reads_legacy_xls(tmp_path):
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("S")
    for r, row in enumerate([HEADER[:3], ["C1", "张三", "13800138000"]]):
        for c, v in enumerate(row):
            sheet.write(r, c, v)
    path = tmp_path / "old.xls"
    book.save(str(path))
    layout = inspect_file(str(path))
    assert layout.kind == "xls" and sample_rows(str(path), layout)[0]["姓名"] == "张三"


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("empty.csv", b"", "empty"),
        ("blank.csv", b"\xef\xbb\xbf\r\n\r\n", "empty"),
        ("noheader.csv", "C001,张三,13800138000\nC002,李四,13900139000\n".encode(), "looks like data"),
        ("broken.xlsx", b"PK\x03\x04garbage" * 10, "damaged"),
        ("fake.xlsx", b"this is not a workbook at all", "not a readable Excel"),
    ],
)
def test_it_refuses_bad_files_with_a_reason(tmp_path, name, data, reason):
    with pytest.raises(FileRefused, match=reason):
        inspect_file(str(write(tmp_path, name, data)))


def test_it_refuses_a_password_protected_workbook(tmp_path):
    # An encrypted OOXML file is a CFB container holding an EncryptedPackage stream.
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 600
    with pytest.raises(FileRefused, match="password"):
        inspect_file(str(write(tmp_path, "secret.xlsx", data)))


def test_it_refuses_a_decompression_bomb(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (20 * 1024 * 1024))
    with pytest.raises(FileRefused, match="decompression bomb"):
        inspect_file(str(write(tmp_path, "bomb.xlsx", buffer.getvalue())))


def test_it_refuses_a_file_over_the_size_limit(tmp_path):
    path = write(tmp_path, "c.csv", csv_bytes())
    with override_settings(CRMHUB_IMPORT_MAX_UPLOAD_BYTES=10), pytest.raises(FileRefused, match="limit"):
        inspect_file(str(path))


def test_it_refuses_text_that_is_not_in_its_detected_encoding(tmp_path):
    data = csv_bytes() + b"C9,\xff\xfe\xfa,1\r\n"
    with pytest.raises(FileRefused):
        inspect_file(str(write(tmp_path, "bad.csv", data)))


@pytest.mark.django_db
def test_it_suggests_mappings_for_chinese_and_english_headers():
    from crmhub.models import FieldDefinition

    headers = [
        "客户编号",
        "客户姓名",
        "联系电话",
        "E-mail",
        "身份证号码",
        "出生年月",
        "家庭住址",
        "会员等级",
        "性 别",
        "手机号码 ",
    ]
    suggestions = {s.header: s.field for s in suggest_mapping(headers, FieldDefinition.objects.all())}
    assert suggestions["客户姓名"] == "full_name"
    assert suggestions["联系电话"] in ("mobile", "") and suggestions["手机号码 "] in ("mobile", "")
    assert "mobile" in suggestions.values()
    assert suggestions["E-mail"] == "email" and suggestions["身份证号码"] == "id_number"
    assert suggestions["出生年月"] == "birth_date" and suggestions["家庭住址"] == "address"
    assert suggestions["性 别"] == "gender" and suggestions["会员等级"] == ""
    assert detect_key_columns(headers) == ["客户编号"]
    assert detect_key_columns(["CustomerCode", "name"]) == ["CustomerCode"]
    fuzzy = {
        s.header: s.field for s in suggest_mapping(["Emial address", "mobile phone no"], FieldDefinition.objects.all())
    }
    assert fuzzy["Emial address"] == "email" and fuzzy["mobile phone no"] == "mobile"
