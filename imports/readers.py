"""Reading customer files: CSV/TSV/TXT, XLSX and legacy XLS.

``inspect_file`` looks at a file before anything is written: it refuses what cannot be
imported (empty, no header, corrupt or password-protected workbooks, too large,
decompression bombs, undecodable text) with a reason a person can act on, and finds the
layout: encoding, delimiter, sheet, header row (under any title rows) and column names
(merged header cells filled from their anchor). ``iter_chunks`` then streams the data
rows as DataFrames of strings, so leading zeros and long digit strings stay exactly as
written and files larger than memory pass through in chunks.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any

import pandas as pd
from django.conf import settings
from django.utils.translation import gettext as _

from imports.constants import (
    HEADER_SCAN_ROWS,
    MAX_UNCOMPRESSED_BYTES,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    SAMPLE_BYTES,
)

CFB_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURE = b"PK\x03\x04"
# An encrypted OOXML workbook is a CFB container with this stream (names are UTF-16LE).
ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_DATA_LIKE = re.compile(r"\d{3,}|@|^\d{4}[-/年]\d{1,2}")


class FileRefused(ValueError):
    """The file cannot be imported; the message says why and what to do."""


@dataclass
class FileLayout:
    kind: str  # "csv", "xlsx" or "xls"
    headers: list[str]
    header_row: int = 0  # 0-based index of the header row (file line or sheet row)
    encoding: str = ""
    delimiter: str = ","
    sheet: str = ""
    sheets: list[str] = field(default_factory=list)
    rows_estimate: int | None = None

    def as_options(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FileLayout:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in options.items() if k in names})


#
# Entry points
#


def inspect_file(
    path: str, *, filename: str = "", sheet: str | None = None, header_row: int | None = None
) -> FileLayout:
    """The layout of the file at ``path``, or FileRefused."""
    size = os.path.getsize(path)
    if size > settings.CRMHUB_IMPORT_MAX_UPLOAD_BYTES:
        raise FileRefused(
            _("The file is %(size)s MB; the limit is %(limit)s MB. Split it into smaller files.")
            % {"size": size // (1024 * 1024), "limit": settings.CRMHUB_IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)}
        )
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if not head.strip(b" \t\r\n\x00" + codecs.BOM_UTF8 + codecs.BOM_UTF16_LE + codecs.BOM_UTF16_BE):
        raise FileRefused(_("The file is empty."))
    kind = _kind(path, head, filename)
    if kind == "xlsx":
        return _inspect_xlsx(path, sheet=sheet, header_row=header_row)
    if kind == "xls":
        return _inspect_xls(path, sheet=sheet, header_row=header_row)
    return _inspect_text(path, head, filename=filename, header_row=header_row)


def sample_rows(path: str, layout: FileLayout, n: int = 5) -> list[dict[str, str]]:
    """The first ``n`` data rows as {header: value}."""
    for chunk in iter_chunks(path, layout, chunksize=n):
        return chunk.head(n).to_dict("records")
    return []


def iter_chunks(path: str, layout: FileLayout, *, chunksize: int = 20_000) -> Iterator[pd.DataFrame]:
    """Data rows in DataFrames of strings ('' for empty cells), columns named by ``layout.headers``;
    wholly empty rows are skipped."""
    if layout.kind == "csv":
        yield from _csv_chunks(path, layout, chunksize)
    else:
        rows = _xlsx_rows(path, layout) if layout.kind == "xlsx" else _xls_rows(path, layout)
        width = len(layout.headers)
        batch: list[list[str]] = []
        for row in rows:
            if not any(row):
                continue
            row = (row + [""] * width)[:width] if len(row) != width else row
            batch.append(row)
            if len(batch) >= chunksize:
                yield pd.DataFrame(batch, columns=layout.headers, dtype=str)
                batch = []
        if batch:
            yield pd.DataFrame(batch, columns=layout.headers, dtype=str)


#
# Kind, encoding, delimiter, headers
#


def _kind(path: str, head: bytes, filename: str) -> str:
    ext = os.path.splitext(filename or path)[1].lower()
    if head.startswith(ZIP_SIGNATURE):
        return "xlsx"
    if head.startswith(CFB_SIGNATURE):
        if _contains(path, ENCRYPTED_PACKAGE):
            raise FileRefused(
                _(
                    "The workbook is password-protected. Remove the password in Excel (File › Info › Protect "
                    "Workbook) and upload it again."
                )
            )
        return "xls"
    if ext in (".xlsx", ".xlsm", ".xls"):
        text_like = b"\x00" not in head[:4096] or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if ext == ".xls" and text_like and not head.lstrip().startswith(b"<"):
            return "csv"  # many systems export tab-separated text named .xls
        raise FileRefused(
            _(
                "The file is not a readable Excel workbook (it may be damaged). Open it in Excel, "
                "save it again as .xlsx, and upload that."
            )
        )
    return "csv"


def _contains(path: str, needle: bytes) -> bool:
    overlap = len(needle)
    tail = b""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            if needle in tail + block:
                return True
            tail = block[-overlap:]
    return False


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4:
        return "utf-16-le"
    if len(sample) >= 4 and sample[0::2].count(0) > len(sample) // 4:
        return "utf-16-be"
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            sample[: len(sample) - cut].decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError as exc:
            if exc.end < len(sample) - 4:
                break
    # Chinese Excel writes CSV in GBK; GB18030 is its superset, so decode it as GB18030.
    for cut in range(2):
        try:
            text = sample[: len(sample) - cut].decode("gb18030")
        except UnicodeDecodeError:
            continue
        non_ascii = [c for c in text if ord(c) > 127]
        if (
            non_ascii
            and sum("\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" for c in non_ascii) >= len(non_ascii) * 0.6
        ):
            return "gb18030"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise FileRefused(_("Cannot tell the text encoding of the file. Save it as UTF-8 CSV and upload it again."))
    encoding = best.encoding.lower().replace("_", "")
    if encoding in ("gbk", "gb2312", "gb18030", "cp936", "hz"):
        return "gb18030"
    return best.encoding


def _check_decodes(path: str, encoding: str) -> int:
    """Decode the whole file (streaming) and count its lines; FileRefused on a bad byte."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines = 0
    offset = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise FileRefused(
                    _("The file is not valid %(encoding)s text near byte %(offset)s. Save it again as UTF-8 CSV.")
                    % {"encoding": encoding, "offset": offset + exc.start}
                ) from exc
            lines += text.count("\n")
            offset += len(block)
        decoder.decode(b"", final=True)
    return lines


def _sniff_delimiter(text: str, filename: str) -> str:
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    sample = "\n".join(lines[-40:])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        pass
    if filename.lower().endswith(".tsv") or any("\t" in line for line in lines):
        return "\t"
    counts = {d: sum(line.count(d) for line in lines) for d in ",;|"}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _cell_text(value: Any) -> str:
    """A cell as the text a person sees; integral numbers without '.0' or exponent."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e18:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def detect_header_row(rows: list[list[str]]) -> int:
    """The index of the header row: the first row about as wide as the widest row near the
    top whose cells read like column names (title rows above it are narrower)."""
    widths = [sum(1 for c in row if str(c).strip()) for row in rows]
    if not widths or max(widths) == 0:
        raise FileRefused(_("The file has no rows."))
    widest = max(widths)
    for i, (row, width) in enumerate(zip(rows, widths, strict=True)):
        if width and width >= max(1, (widest + 1) // 2) and (widest == 1 or width >= 2):
            cells = [str(c).strip() for c in row if str(c).strip()]
            data_like = sum(1 for c in cells if _DATA_LIKE.search(c))
            if data_like * 2 >= len(cells) and widest > 1:
                raise FileRefused(
                    _(
                        "The first row looks like data, not column names. Add a header row (e.g. 客户编号, 姓名, 手机) "
                        "and upload the file again."
                    )
                )
            return i
    raise FileRefused(_("No header row found in the first %(n)s rows.") % {"n": len(rows)})


def clean_headers(cells: list[Any], merged_from: dict[int, str] | None = None) -> list[str]:
    """Column names: trimmed, half-width; an empty cell inside a merged range takes the
    anchor's name; other empty ones become column_N; duplicates get ' (2)', ' (3)'..."""
    merged_from = merged_from or {}
    headers: list[str] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        name = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", _cell_text(cell))).strip()
        if not name:
            name = merged_from.get(i, "") or f"column_{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        headers.append(name)
    while headers and headers[-1].startswith("column_") and not str(cells[len(headers) - 1] or "").strip():
        headers.pop()  # trailing empty columns
    return headers


#
# Text files
#


def _inspect_text(path: str, head: bytes, *, filename: str, header_row: int | None) -> FileLayout:
    encoding = detect_encoding(head)
    lines = _check_decodes(path, encoding)
    text = head.decode(encoding, errors="ignore")
    delimiter = _sniff_delimiter(text, filename)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter))[:HEADER_SCAN_ROWS]
    if len(rows) == HEADER_SCAN_ROWS or len(head) < SAMPLE_BYTES:
        pass
    else:
        rows = rows[:-1]  # the sample's last line may be cut
    if header_row is None:
        header_row = detect_header_row(rows)
    if header_row >= len(rows):
        raise FileRefused(_("The file has no row %(n)s.") % {"n": header_row + 1})
    width = max(len(r) for r in rows[header_row:]) if rows[header_row:] else 0
    headers = clean_headers(rows[header_row] + [""] * (width - len(rows[header_row])))
    if not headers:
        raise FileRefused(_("The file has no header row."))
    return FileLayout(
        kind="csv",
        headers=headers,
        header_row=header_row,
        encoding=encoding,
        delimiter=delimiter,
        rows_estimate=max(0, lines - header_row - 1),
    )


def _csv_chunks(path: str, layout: FileLayout, chunksize: int) -> Iterator[pd.DataFrame]:
    reader = pd.read_csv(
        path,
        sep=layout.delimiter,
        encoding=layout.encoding,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        header=None,
        names=layout.headers,
        skiprows=layout.header_row + 1,
        index_col=False,
        chunksize=chunksize,
        skip_blank_lines=True,
        engine="c",
        quoting=csv.QUOTE_MINIMAL,
        encoding_errors="strict",
    )
    for chunk in reader:
        chunk = chunk.fillna("")
        filled = chunk.ne("").any(axis=1)
        yield chunk[filled].reset_index(drop=True) if not filled.all() else chunk


#
# XLSX
#


def _check_zip(path: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise FileRefused(
            _("The workbook is damaged (not a valid .xlsx archive). Open it in Excel, save it again and upload that.")
        ) from exc
    total = sum(i.file_size for i in infos)
    if (
        len(infos) > MAX_ZIP_MEMBERS
        or total > MAX_UNCOMPRESSED_BYTES
        or any(i.file_size > (1 << 20) and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1) for i in infos)
    ):
        raise FileRefused(
            _(
                "The workbook expands to %(size)s MB when opened, or compresses suspiciously well: refused as a "
                "possible decompression bomb. Export it as CSV instead."
            )
            % {"size": total // (1024 * 1024)}
        )
    if "xl/workbook.xml" not in {i.filename for i in infos}:
        raise FileRefused(_("The file is a zip archive but not an Excel workbook."))


def _open_xlsx(path: str):  # noqa: ANN202
    import openpyxl

    _check_zip(path)
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on damaged files
        raise FileRefused(
            _(
                "The workbook is damaged and cannot be read (%(reason)s). Open it in Excel, save it "
                "again and upload that."
            )
            % {"reason": type(exc).__name__}
        ) from exc


def _pick_sheet(names: list[str], sheet: str | None) -> str:
    if not names:
        raise FileRefused(_("The workbook has no sheets."))
    if sheet is None or sheet == "":
        return names[0]
    if sheet not in names:
        raise FileRefused(
            _("The workbook has no sheet %(sheet)s; it has: %(names)s.") % {"sheet": sheet, "names": ", ".join(names)}
        )
    return sheet


def _xlsx_merges(path: str, worksheet_path: str) -> list[tuple[int, int, int, int]]:
    """Merged ranges (min_row, min_col, max_row, max_col; 0-based) read from the sheet XML."""
    from openpyxl.utils.cell import range_boundaries

    found: list[tuple[int, int, int, int]] = []
    pattern = re.compile(rb'<(?:\w+:)?mergeCell ref="([A-Z]+\d+:[A-Z]+\d+)"')
    with zipfile.ZipFile(path) as zf, zf.open(worksheet_path.lstrip("/")) as fh:
        tail = b""
        while block := fh.read(1 << 20):
            data = tail + block
            for m in pattern.finditer(data):
                min_col, min_row, max_col, max_row = range_boundaries(m.group(1).decode())
                found.append((min_row - 1, min_col - 1, max_row - 1, max_col - 1))
            tail = data[-64:]
    return sorted(set(found))


def _merged_names(
    cells: list[Any], row: int, merges: list[tuple[int, int, int, int]], above: list[list[Any]]
) -> dict[int, str]:
    names: dict[int, str] = {}
    for r0, c0, r1, c1 in merges:
        if r0 <= row <= r1:
            anchor = above[r0][c0] if r0 < len(above) and c0 < len(above[r0]) else None
            for c in range(c0, c1 + 1):
                if c != c0 or r0 != row:
                    names[c] = _cell_text(anchor).strip()
    return names


def _inspect_xlsx(path: str, *, sheet: str | None, header_row: int | None) -> FileLayout:
    wb = _open_xlsx(path)
    try:
        names = list(wb.sheetnames)
        chosen = _pick_sheet(names, sheet)
        ws = wb[chosen]
        rows = []
        try:
            for row in ws.iter_rows(values_only=True, max_row=HEADER_SCAN_ROWS):
                rows.append(list(row))
        except Exception as exc:  # noqa: BLE001
            raise FileRefused(
                _("The workbook is damaged and cannot be read (%(reason)s).") % {"reason": type(exc).__name__}
            ) from exc
        text_rows = [[_cell_text(c) for c in r] for r in rows]
        if not any(any(c.strip() for c in r) for r in text_rows):
            raise FileRefused(_("The sheet %(sheet)s is empty.") % {"sheet": chosen})
        if header_row is None:
            header_row = detect_header_row(text_rows)
        width = max(len(r) for r in rows)
        header_cells = rows[header_row] + [None] * (width - len(rows[header_row]))
        merged = {}
        if any(c is None or _cell_text(c).strip() == "" for c in header_cells):
            merged = _merged_names(header_cells, header_row, _xlsx_merges(path, ws._worksheet_path), rows)
        headers = clean_headers(header_cells, merged)
        total = ws.max_row if ws.max_row else None
    finally:
        wb.close()
    return FileLayout(
        kind="xlsx",
        headers=headers,
        header_row=header_row,
        sheet=chosen,
        sheets=names,
        rows_estimate=(total - header_row - 1) if total else None,
    )


def _xlsx_rows(path: str, layout: FileLayout) -> Iterator[list[str]]:
    wb = _open_xlsx(path)
    try:
        ws = wb[layout.sheet]
        for row in ws.iter_rows(min_row=layout.header_row + 2, values_only=True):
            yield [_cell_text(c) for c in row]
    finally:
        wb.close()


#
# XLS (legacy)
#


def _open_xls(path: str):  # noqa: ANN202
    import xlrd

    try:
        return xlrd.open_workbook(path, formatting_info=True, on_demand=True)
    except xlrd.biffh.XLRDError as exc:
        if "encrypt" in str(exc).lower():
            raise FileRefused(
                _("The workbook is password-protected. Remove the password in Excel and upload it again.")
            ) from exc
        raise FileRefused(
            _("The workbook is damaged and cannot be read. Open it in Excel, save it as .xlsx and upload that.")
        ) from exc
    except Exception as exc:  # noqa: BLE001
        raise FileRefused(
            _("The workbook is damaged and cannot be read. Open it in Excel, save it as .xlsx and upload that.")
        ) from exc


def _xls_value(book, cell) -> str:  # noqa: ANN001
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return _cell_text(xlrd.xldate_as_datetime(cell.value, book.datemode))
        except Exception:  # noqa: BLE001
            return _cell_text(cell.value)
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return ""
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return "TRUE" if cell.value else "FALSE"
    return _cell_text(cell.value)


def _inspect_xls(path: str, *, sheet: str | None, header_row: int | None) -> FileLayout:
    book = _open_xls(path)
    try:
        names = book.sheet_names()
        chosen = _pick_sheet(names, sheet)
        ws = book.sheet_by_name(chosen)
        rows = [[_xls_value(book, c) for c in ws.row(r)] for r in range(min(ws.nrows, HEADER_SCAN_ROWS))]
        if not any(any(c.strip() for c in r) for r in rows):
            raise FileRefused(_("The sheet %(sheet)s is empty.") % {"sheet": chosen})
        if header_row is None:
            header_row = detect_header_row(rows)
        width = max(len(r) for r in rows)
        cells = rows[header_row] + [""] * (width - len(rows[header_row]))
        merges = [(r0, c0, r1 - 1, c1 - 1) for r0, r1, c0, c1 in ws.merged_cells]
        headers = clean_headers(cells, _merged_names(cells, header_row, merges, rows))
        total = ws.nrows
    finally:
        book.release_resources()
    return FileLayout(
        kind="xls",
        headers=headers,
        header_row=header_row,
        sheet=chosen,
        sheets=names,
        rows_estimate=total - header_row - 1,
    )


def _xls_rows(path: str, layout: FileLayout) -> Iterator[list[str]]:
    book = _open_xls(path)
    try:
        ws = book.sheet_by_name(layout.sheet)
        for r in range(layout.header_row + 1, ws.nrows):
            yield [_xls_value(book, c) for c in ws.row(r)]
    finally:
        book.release_resources()
