from __future__ import annotations

import io
from pathlib import Path

HEADER = ["客户编号", "姓名", "手机号", "邮箱", "身份证号", "备注"]
ROWS = [
    ["C001", "张三", "138 0013 8000", "zs@qq.com", "11010519491231002X", "vip"],
    ["C002", "李四", "+86-139-0013-9000", "ls@gmial.com", "", ""],
    ["C003", "王五", "12345", "", "", "=HYPERLINK(1)"],
    ["", "无名", "13700137000", "", "", ""],
]


def csv_bytes(rows=None, header=None, encoding: str = "utf-8", title: bool = False) -> bytes:  # noqa: ANN001
    lines = []
    if title:
        lines += ["客户名单（2024）", ""]
    lines.append(",".join(header or HEADER))
    lines += [",".join(r) for r in (ROWS if rows is None else rows)]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def xlsx_bytes(sheets: dict[str, list[list]], merges: dict[str, list[str]] | None = None) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        for ref in (merges or {}).get(name, []):
            ws.merge_cells(ref)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
