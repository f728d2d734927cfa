"""A chunk's prepared rows, built a column at a time.

Every stored row needs the JSON texts of its raw cells and its normalized values (for the
keyed content hash, and sealed for the writer), its flags, and on PostgreSQL its line of the
staging COPY and what a new golden customer needs from Python (``linking.CustomerExtras``).
Built row by row that is two dicts, three ``json.dumps`` and a dozen small calls per row;
here the same texts are put together column by column: each value is JSON-encoded once
(``encode_basestring`` for text), the fragments ``"key":value`` are concatenated over whole
columns with numpy, secret values are sealed once per distinct value, and what repeats
(pinyin, dates, flag texts, which fields a customer gets) is computed per distinct value.

The texts are byte for byte what ``json.dumps(..., sort_keys=True)`` gives for the row's dicts,
so content hashes are unchanged (tests/imports/test_rows.py builds both and compares them).
The dicts themselves are built only for the rows that need them (flagged rows for the error
report, samples, the portable writer): ``PreparedRow.raw`` / ``.normalized`` are lazy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pandas as pd

from accounts.crypto import CIPHERTEXT_PREFIX, blind_indexer, encrypt, encrypt_many
from imports.linking import customer_values_texts
from imports.writers import _COPY_SPECIAL, PreparedRow, copy_json, copy_text

# The encoder of the content hash's JSON (``ImportPipeline.prepare`` and ``single.prepare_one``).
dumps_sorted = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode
# The encoder the writers use for flags (insertion order kept).
dumps_flags = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _is_text(column: np.ndarray) -> bool:
    return pd.api.types.infer_dtype(column, skipna=False) in ("string", "empty")


def value_texts(column: np.ndarray, *, text: bool | None = None) -> list[str]:
    """The JSON text of each value, as the encoder writes it inside an object (``text``: whether
    every value is a string, when the caller knows)."""
    if _is_text(column) if text is None else text:
        return list(map(encode_basestring, column))
    return [encode_basestring(v) if isinstance(v, str) else dumps_sorted(v) for v in column]


def present_mask(column: np.ndarray, *, normalized: bool, text: bool | None = None) -> np.ndarray:
    """The rows whose value goes into the object: raw cells other than '', normalized values
    other than None, '' and [] (``text``: whether every value is a string, when known)."""
    if _is_text(column) if text is None else text:
        return column != ""
    if not normalized:
        return np.fromiter((v != "" for v in column), dtype=bool, count=len(column))
    return np.fromiter((v is not None and v != "" and v != [] for v in column), dtype=bool, count=len(column))


def row_patterns(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by which of ``masks`` they are in: each row's group number, and a row of
    each group (bits packed into integers, 62 masks to a word, groups found by hashing)."""
    n = len(masks[0])
    group_of, groups = np.zeros(n, dtype=np.int64), 1
    for start in range(0, len(masks), 62):
        word = np.zeros(n, dtype=np.int64)
        for bit, mask in enumerate(masks[start : start + 62]):
            word |= mask.astype(np.int64) << bit
        codes, distinct = pd.factorize(word)
        group_of, uniques = pd.factorize(group_of * len(distinct) + codes)
        groups = len(uniques)
    firsts = np.zeros(groups, dtype=np.intp)
    firsts[group_of[::-1]] = np.arange(n - 1, -1, -1)
    return group_of, firsts


# Memos of values that repeat start again past this size.
MEMO_LIMIT = 200_000

# What JSON escapes inside a string (ensure_ascii=False): quotes, backslashes, control characters.
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f]')


def object_texts(
    items: Sequence[tuple[str, np.ndarray, np.ndarray]], n: int, *, text: Sequence[bool] | None = None
) -> list[str]:
    """The JSON text of one object per row, keys sorted: ``items`` are (key, column of values,
    mask of the rows that have the key); ``text``, when the caller knows, says for each item
    whether its column holds only strings.

    Rows that have the same keys share a template (``{"a":"%s","b":%s}``) that is filled per
    row by one ``%`` formatting: a text column that needs no escaping goes in as it is, other
    columns as their JSON texts."""
    slots: list[tuple[str, np.ndarray, np.ndarray]] = []
    known = [None] * len(items) if text is None else text
    for (key, column, present), is_text in sorted(zip(items, known, strict=True), key=lambda item: item[0][0]):
        label = encode_basestring(key).replace("%", "%%") + ":"
        if is_text is None:
            is_text = _is_text(column)
        if is_text and _NEEDS_ESCAPE.search("".join(column.tolist())) is None:
            slots.append((label + '"%s"', column, present))
        else:
            texts = np.full(n, "", dtype=object)
            at = np.flatnonzero(present)
            texts[at] = value_texts(column[at], text=is_text)
            slots.append((label + "%s", texts, present))
    out = np.full(n, "{}", dtype=object)
    if not slots or not n:
        return out.tolist()
    group_of, firsts = row_patterns([p for _s, _c, p in slots])
    order = np.argsort(group_of, kind="stable")
    ends = np.cumsum(np.bincount(group_of, minlength=len(firsts)))
    start = 0
    for first, end in zip(firsts.tolist(), ends.tolist(), strict=True):
        rows = order[start:end]
        start = end
        present = [slot for slot in slots if slot[2][first]]
        if not present or not len(rows):
            continue
        template = "{" + ",".join(label for label, _c, _p in present) + "}"
        columns = [column.take(rows).tolist() for _l, column, _p in present]  # lists: zip walks them faster
        out[rows] = np.fromiter(map(template.__mod__, zip(*columns, strict=True)), dtype=object, count=len(rows))
    return out.tolist()


def _has_backslash(text: str) -> bool:
    return "\\" in text


def _copy_column(texts: list[str], escape: Callable[[str], str], needs: Callable[[str], Any]) -> list[str]:
    """``escape`` of each text, called only when some text of the column ``needs`` it: one
    search over the column joined by a character that ``needs`` never looks for."""
    return list(map(escape, texts)) if needs("\x00".join(texts)) else texts


def _replace_member(text: str, old: str, new: str) -> str:
    """``text`` (a compact JSON object) with its member ``old`` (``"key":value``) replaced. A
    member starts right after ``{`` or ``,``; the same characters inside another key (a raw header
    may hold an escaped quote) follow a backslash instead, so they are never taken for it."""
    for opener in ("{", ","):
        at = text.find(opener + old)
        if at >= 0:
            return text[: at + 1] + new + text[at + 1 + len(old) :]
    raise ValueError("a secret value's member was not found in its record's JSON text")


class ChunkColumns:
    """The columns of one chunk (raw cells by header, normalized values and flags by field),
    from which the rows' dicts are built when something asks for them."""

    def __init__(
        self,
        headers: list[str],
        cells: list[np.ndarray],
        values: dict[str, np.ndarray],
        flags: dict[str, np.ndarray],
        *,
        secret_headers: set[str],
        secret_fields: set[str],
        extras_memos: dict[str, dict] | None = None,
    ) -> None:
        self.headers = headers
        self.cells = cells
        self.names = list(values)
        self.values = [values[n] for n in self.names]
        self.flags = [flags[n] for n in self.names]
        self.secret_headers = secret_headers
        self.secret_fields = secret_fields
        self.ciphers: dict[str, str] = {}  # plaintext → ciphertext, so each secret value is encrypted once
        # The customer extras' texts of names and birth dates by value, kept by the pipeline from chunk to chunk.
        self.extras_memos = {} if extras_memos is None else extras_memos

    def raw(self, i: int) -> dict[str, Any]:
        return {h: column[i] for h, column in zip(self.headers, self.cells, strict=True) if column[i] != ""}

    def normalized(self, i: int) -> dict[str, Any]:
        out = {}
        for name, column in zip(self.names, self.values, strict=True):
            v = column[i]
            if v is not None and v != "" and v != []:
                out[name] = v
        return out

    def row_flags(self, i: int) -> dict[str, str]:
        return {name: column[i] for name, column in zip(self.names, self.flags, strict=True) if column[i]}

    def seal(self, values: dict[str, Any], secret_names: set[str]) -> dict[str, Any]:
        """``accounts.crypto.seal_values`` with this chunk's ciphertexts: the copy of a value in
        the raw cells, in the normalized values and in their JSON texts is the same ciphertext."""
        names = secret_names & values.keys() if secret_names else ()
        if not names:
            return values
        out = dict(values)
        for name in names:
            out[name] = self._sealed_value(out[name])
        return out

    def _sealed_value(self, value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, str) and value and not value.startswith(CIPHERTEXT_PREFIX):
            sealed = self.ciphers.get(value)
            if sealed is None:
                sealed = self.ciphers[value] = encrypt(value)
            return sealed
        return value

    def _sealed_column(self, column: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = column.copy()
        at = np.flatnonzero(present)
        if len(at):
            cells = column[at]
            try:
                codes, distinct = pd.factorize(cells, use_na_sentinel=False)
            except TypeError:  # lists (a secret tags field): each value as it is, its strings sealed
                codes, distinct = np.arange(len(cells)), cells
            ciphers = self.ciphers
            todo = [
                v
                for v in distinct.tolist()
                if isinstance(v, str) and v and v not in ciphers and not v.startswith(CIPHERTEXT_PREFIX)
            ]
            if todo:  # the values not sealed yet, in one batch
                ciphers.update(zip(todo, encrypt_many(todo), strict=True))
            sealed = np.fromiter((self._sealed_value(v) for v in distinct), dtype=object, count=len(distinct))
            out[at] = sealed.take(codes)
        return out

    def _sealed_texts(
        self, items: list[tuple[str, np.ndarray, np.ndarray]], secret: set[str], texts: list[str]
    ) -> list[str]:
        """``texts`` with the secret values sealed. Only the secret value's place changes: in a
        row's text, the key's label (``"name":``, with the opening quote) occurs once, as the
        key (a string value cannot hold an unescaped quote, and after a closing quote comes
        ``,``, ``:`` or ``}``), and what follows it is the value's JSON text; so that label and
        value are replaced by the label and the ciphertext's JSON text."""
        out: list[str] | None = None
        for name, column, present in items:
            if name not in secret:
                continue
            rows = np.flatnonzero(present)
            if not len(rows):
                continue
            plain = column.take(rows)
            sealed = self._sealed_column(plain, np.ones(len(rows), dtype=bool))
            label = encode_basestring(name) + ":"
            if out is None:
                out = list(texts)
            for i, value, ciphertext in zip(rows.tolist(), plain.tolist(), sealed.tolist(), strict=True):
                if ciphertext is not value:  # a value sealed (not '', not a ciphertext already, a string)
                    out[i] = _replace_member(
                        out[i], label + encode_basestring(value), label + encode_basestring(ciphertext)
                    )
        return texts if out is None else out

    #
    # The rows
    #

    def prepared_rows(
        self,
        kept: list[int],
        keys: list[str],
        row_numbers: list[int],
        *,
        seal: bool,
        stage: bool,
        extras: Callable[[dict, dict], tuple] | None,
    ) -> list[PreparedRow]:
        """A ``PreparedRow`` for each of the chunk's rows at ``kept``: content hash, flags, and
        (``seal``) the sealed JSON texts, (``stage``) its staging COPY fields, (``extras``) the
        new customer's extras as COPY fields."""
        n = len(kept)
        if not n:
            return []
        at = np.asarray(kept, dtype=np.intp)
        # Whether each column holds only strings, found once (pandas infers it in a pass over the column).
        raw_cells = [c.take(at) for c in self.cells]
        raw_text = [_is_text(c) for c in raw_cells]
        raw_items = [
            (h, c, present_mask(c, normalized=False, text=t))
            for h, c, t in zip(self.headers, raw_cells, raw_text, strict=True)
        ]
        value_cells = [c.take(at) for c in self.values]
        value_text = [_is_text(c) for c in value_cells]
        value_items = [
            (name, c, present_mask(c, normalized=True, text=t))
            for name, c, t in zip(self.names, value_cells, value_text, strict=True)
        ]
        raw_json = object_texts(raw_items, n, text=raw_text)
        normalized_json = object_texts(value_items, n, text=value_text)
        digest = blind_indexer()
        hashes = list(map(digest, map("[{},{}]".format, raw_json, normalized_json)))
        flag_columns = [f.take(at) for f in self.flags]
        flags, flags_json = self._flags(flag_columns, n)

        sealed_raw_json, sealed_normalized_json = raw_json, normalized_json
        if seal:
            sealed_raw_json = self._sealed_texts(raw_items, self.secret_headers, raw_json)
            sealed_normalized_json = self._sealed_texts(value_items, self.secret_fields, normalized_json)
        stage_fields: list[str] | None = None
        if stage:
            # copy_text / copy_json per value only in a column that has something to escape
            fields = [
                _copy_column([keys[i] for i in kept], copy_text, _COPY_SPECIAL.search),
                _copy_column(sealed_raw_json, copy_json, _has_backslash),
                _copy_column(sealed_normalized_json, copy_json, _has_backslash),
                _copy_column(flags_json, copy_json, _has_backslash),
                hashes,
            ]
            stage_fields = list(map("\t".join, zip(*fields, strict=True)))
        extras_fields = (
            self._customer_extras(extras, kept, value_items, flag_columns, flags, self.extras_memos)
            if extras is not None
            else None
        )

        rows: list[PreparedRow] = []
        append = rows.append
        for j, i in enumerate(kept):
            if seal:
                row = PreparedRow(
                    row_numbers[j],
                    keys[i],
                    None,
                    None,
                    flags[j],
                    hashes[j],
                    sealed_raw_json=sealed_raw_json[j],
                    sealed_normalized_json=sealed_normalized_json[j],
                    chunk=self,
                    at=i,
                )
                row.sealed = True
            else:
                row = PreparedRow(row_numbers[j], keys[i], None, None, flags[j], hashes[j], chunk=self, at=i)
            if stage_fields is not None:
                row.stage_fields = stage_fields[j]
            if extras_fields is not None:
                row.stage_extras = extras_fields[j]
            append(row)
        if extras is not None:  # the new customers' values as JSON (branch impdb: linking.customer_values_texts)
            for row, text in zip(rows, customer_values_texts(self, n, value_items, flag_columns), strict=True):
                row.stage_values = text
        return rows

    def _flags(self, columns: list[np.ndarray], n: int) -> tuple[list[dict[str, str]], list[str]]:
        """Each row's flags ({field: reason}, fields in the chunk's order) and their JSON text."""
        flagged = np.zeros(n, dtype=bool)
        for column in columns:
            flagged |= column != ""
        flags: list[dict[str, str]] = [{} for _ in range(n)]
        texts = ["{}"] * n
        encoded: dict[str, str] = {}
        for j in np.flatnonzero(flagged).tolist():
            row = {name: column[j] for name, column in zip(self.names, columns, strict=True) if column[j]}
            flags[j] = row
            parts = []
            for name, reason in row.items():
                text = encoded.get(reason)
                if text is None:
                    text = encoded[reason] = dumps_flags(reason)
                parts.append(f"{encode_basestring(name)}:{text}")
            texts[j] = "{" + ",".join(parts) + "}"
        return flags, texts

    def _customer_extras(
        self,
        extras: Callable[[dict, dict], tuple],
        kept: list[int],
        value_items: list[tuple[str, np.ndarray, np.ndarray]],
        flag_columns: list[np.ndarray],
        flags: list[dict[str, str]],
        memos: dict[str, dict],
    ) -> list[str]:
        """``extras(normalized, flags)`` of every row — (pinyin, ID blind index, birth date,
        fields) — as COPY fields. ``extras`` itself is called once per distinct name, birth
        date and set of valid fields; only the ID number's blind index is computed per row.
        ``memos`` keeps the texts of names and birth dates from chunk to chunk."""
        n = len(kept)
        valid = {name: present & (f == "") for (name, _c, present), f in zip(value_items, flag_columns, strict=True)}
        column = {name: c for name, c, _p in value_items}

        def per_distinct(name: str, part: int, to_text: Callable[[Any], str]) -> list[str]:
            if name not in column:
                return [to_text(extras({}, {})[part])] * n
            memo = memos.get(name)
            if memo is None or len(memo) > MEMO_LIMIT:
                memo = memos[name] = {}
            cells = np.where(valid[name], column[name], None)
            codes, distinct = pd.factorize(cells, use_na_sentinel=False)
            texts = []
            for value in distinct:
                text = memo.get(value)
                if text is None:
                    text = memo[value] = to_text(extras({} if value is None else {name: value}, {})[part])
                texts.append(text)
            return np.asarray(texts, dtype=object).take(codes).tolist()

        pinyins = per_distinct("full_name", 0, copy_text)
        births = per_distinct("birth_date", 2, lambda d: "\\N" if d is None else d.isoformat())
        if "id_number" in column:
            digest = blind_indexer()
            ids, valid_ids = column["id_number"], valid["id_number"]
            id_hashes = [digest(v) if ok and isinstance(v, str) else "" for v, ok in zip(ids, valid_ids, strict=True)]
        else:
            id_hashes = [""] * n
        # Which fields a new customer gets depends on the row's valid fields and whether its
        # birth date parses: one call per distinct combination, on a row that has it.
        has_birth = np.fromiter((b != "\\N" for b in births), dtype=bool, count=n)
        codes, firsts = row_patterns([*(valid[name] for name, _c, _p in value_items), has_birth])
        fields = [copy_text(extras(self.normalized(kept[j]), flags[j])[3]) for j in firsts.tolist()]
        field_texts = np.asarray(fields, dtype=object).take(codes).tolist()
        return [f"{p}\t{h}\t{b}\t{f}" for p, h, b, f in zip(pinyins, id_hashes, births, field_texts, strict=True)]
