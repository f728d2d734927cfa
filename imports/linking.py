"""Linking new source records to golden customers.

``link_new_records_to_customers`` is the one place that decides which customer a new
source record belongs to. Today every new record gets a golden customer of its own, built
from its valid normalized values; the real-time matcher plugs in here (return an existing
customer's id, with ``created=False``, for records it recognises).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from django.db import models

from accounts.crypto import seal_values, secret_field_names
from crmhub.choices import ChangeEventType
from crmhub.models import Customer
from crmhub.outbox import Change, changes_record_bulk, feed_values
from crmhub.services import customer_values_from_normalized
from imports.cleaning import name_pinyin

if TYPE_CHECKING:
    from imports.rows import ChunkColumns


@dataclass(frozen=True)
class Link:
    customer_id: int
    created: bool


class CustomerCreator(Protocol):
    def create_customers(self, rows: list[dict[str, Any]]) -> list[int]: ...


_CHAR_LIMITS = {
    f.attname: f.max_length
    for f in Customer._meta.concrete_fields
    if getattr(f, "max_length", None) and f.attname != "id_number"
}


def customer_row(
    normalized: dict[str, Any], flags: dict[str, str], secret: Collection[str] = frozenset()
) -> dict[str, Any]:
    """Customer attribute values from a record's plaintext normalized values. Flagged values
    stay in the source record only; text longer than a column is cut to fit (the source
    record keeps it whole). Custom values of ``secret`` fields are sealed, as everywhere they
    are stored (the ID number has its encrypted column)."""
    values = customer_values_from_normalized(
        {k: v for k, v in normalized.items() if k not in flags} if flags else normalized
    )
    if secret and "custom" in values:
        values["custom"] = seal_values(values["custom"], set(secret))
    for name, value in values.items():
        limit = _CHAR_LIMITS.get(name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            values[name] = value[:limit]
    values["name_pinyin"] = name_pinyin(values.get("full_name", ""))[: _CHAR_LIMITS["name_pinyin"]]
    return values


def link_new_records_to_customers(
    *, records: list[tuple[dict[str, Any], dict[str, str]]], creator: CustomerCreator
) -> list[Link]:
    """A Link per new record (``(normalized plaintext, flags)``), in order."""
    secret = secret_field_names()
    rows = [customer_row(normalized, flags, secret) for normalized, flags in records]
    ids = creator.create_customers(rows)
    # Downstream systems learn of each new golden record through the change feed, in this
    # chunk's transaction.
    created = [
        (customer_id, feed_values({k: v for k, v in row.items() if k != "name_pinyin"}))
        for customer_id, row in zip(ids, rows, strict=True)
    ]
    changes_record_bulk(Change(ChangeEventType.CREATED, pk, sorted(values), values) for pk, values in created)
    return [Link(customer_id=i, created=True) for i in ids]


#
# The same customers, built set-based on PostgreSQL
#

_JSON_CORE = ("tags", "consent_marketing", "consent_sms", "consent_email")
_CORE = frozenset(Customer.CORE_FIELDS)


def customers_sql_possible(secret_fields: set[str]) -> bool:
    """Whether ``new_customers_sql`` gives the customers ``customer_row`` would: it builds them
    from the sealed normalized values, so the only secret core field may be the ID number
    (stored encrypted in the customer row too)."""
    return secret_fields & set(Customer.CORE_FIELDS) == {"id_number"}


def customer_values_sql(v: str = "v", birth_date: str = "birth_date") -> str:
    """A jsonb expression of a staged new record's customer values: what ``customer_row``
    returns (without ``name_pinyin``), with dates as ISO strings, i.e. the data of its
    "created" event. ``v`` is its valid normalized values (sealed: ``normalized`` less the
    flagged keys), ``birth_date`` the parsed date (NULL when there is none)."""
    parts: list[str] = []
    for name in Customer.CORE_FIELDS:
        if name == "birth_date":
            parts.append(f"'birth_date', to_jsonb({birth_date})")
        elif name in _JSON_CORE or name == "id_number":
            parts.append(f"'{name}', {v}->'{name}'")
        else:
            parts.append(f"'{name}', left({v}->>'{name}', {_CHAR_LIMITS[name]})")
    core = ", ".join(f"'{n}'" for n in Customer.CORE_FIELDS)
    parts.append(f"'custom', NULLIF({v} - ARRAY[{core}]::text[], '{{}}'::jsonb)")
    return f"jsonb_strip_nulls(jsonb_build_object({', '.join(parts)}))"


def new_customers_sql(*, stage_sql: str) -> tuple[str, dict[str, Any]]:
    """``WITH`` clauses that insert the golden customers of staged new records and name the
    inserted rows ``ins`` and their values ``src`` (for history and events).

    ``stage_sql`` selects the stage rows ``s`` with ``customer_id``, ``normalized`` (sealed),
    ``flags``, the ``CustomerExtras`` (``pinyin``, ``id_hash``, ``birth_date``, ``fields``) and
    ``cv``, the customer values as ``customer_values_texts`` made them (or NULL).
    Columns not set from the values take the model's defaults (parameters, as Django would send
    them)."""
    from django.db import connection

    params: dict[str, Any] = {}
    columns, selects = [], []
    for f in Customer._meta.concrete_fields:
        name = f.attname
        columns.append(f.column)
        if name == "id":
            selects.append("src.id")
        elif name in ("created_at", "updated_at"):
            selects.append("%(now)s")
        elif name == "name_pinyin":
            selects.append("src.pinyin")
        elif name == "id_number_hash":
            selects.append("src.id_hash")
        elif name == "birth_date":
            selects.append("src.birth_date")
        elif name == "custom":
            selects.append("COALESCE(src.cv->'custom', '{}'::jsonb)")
        elif name in Customer.CORE_FIELDS:
            if name in _JSON_CORE:
                default = f.get_default()
                if isinstance(f, models.JSONField):
                    params[f"d_{name}"] = json.dumps(default)
                    selects.append(f"COALESCE(src.cv->'{name}', %(d_{name})s::jsonb)")
                else:
                    selects.append(f"(src.cv->>'{name}')::boolean")
            else:
                params[f"d_{name}"] = f.get_default() if f.has_default() else ""
                selects.append(f"COALESCE(src.cv->>'{name}', %(d_{name})s)")
        else:
            default = None if (f.null and not f.has_default()) else f.get_default()
            if isinstance(f, models.JSONField):
                params[f"d_{name}"] = json.dumps(default)
                selects.append(f"%(d_{name})s::jsonb")
            else:
                params[f"d_{name}"] = f.get_db_prep_save(default, connection) if default is not None else None
                selects.append(f"%(d_{name})s")
    # OFFSET 0 keeps the valid values a computed column (else the planner repeats them per use).
    valid = (
        "SELECT s.customer_id, s.pinyin, s.id_hash, s.birth_date, s.fields, s.cv, "
        f"s.normalized - ARRAY(SELECT jsonb_object_keys(s.flags)) AS v {stage_sql} OFFSET 0"
    )
    # The values come staged as JSON from ``customer_values_texts`` (parsing that text costs a
    # fifth of building the object here); SQL builds them only for rows staged without (NULL).
    sql = (
        "WITH src AS MATERIALIZED (SELECT x.customer_id AS id, "
        f"COALESCE(x.cv, {customer_values_sql('x.v', 'x.birth_date')}) AS cv, "
        f"x.pinyin, x.id_hash, x.birth_date, x.fields FROM ({valid}) AS x), "
        f"ins AS (INSERT INTO {Customer._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM src RETURNING *) "
    )
    return sql, params


class CustomerExtras:
    """What the SQL of ``new_customers_sql`` cannot derive from a staged record: the pinyin
    key and the ID number's blind index (both need plaintext) and the parsed birth date, as
    ``customer_row`` computes them. Memoised per value: names and dates repeat."""

    def __init__(self) -> None:
        from accounts.crypto import blind_indexer

        self._pinyin: dict[str, str] = {}
        self._dates: dict[str, date | None] = {}
        self._fields: dict[tuple, str] = {}
        self._id_hash = blind_indexer()

    def __call__(self, values: dict[str, Any], flags: dict[str, str]) -> tuple[str, str, date | None, str]:
        name = values.get("full_name") if "full_name" not in flags else None
        pinyin = ""
        if isinstance(name, str) and name:
            pinyin = self._pinyin.get(name)
            if pinyin is None:
                limit = _CHAR_LIMITS["full_name"]
                pinyin = self._pinyin[name] = name_pinyin(name[:limit])[: _CHAR_LIMITS["name_pinyin"]]
        id_number = values.get("id_number") if "id_number" not in flags else None
        id_hash = self._id_hash(id_number) if isinstance(id_number, str) else ""
        birth = values.get("birth_date") if "birth_date" not in flags else None
        if isinstance(birth, str):
            if birth in self._dates:
                birth = self._dates[birth]
            else:
                try:
                    parsed = date.fromisoformat(birth)
                except ValueError:
                    parsed = None  # kept in the source record only, as customer_values_from_normalized does
                birth = self._dates[birth] = parsed
        elif not isinstance(birth, date):
            birth = None
        # The keys of ``customer_values_sql`` (the event's changed fields), sorted, as JSON.
        present = tuple(k for k in values if k not in flags)
        fields = self._fields.get((present, birth is not None))
        if fields is None:
            names = {k if k in _CORE else "custom" for k in present if k != "birth_date"}
            if birth is not None:
                names.add("birth_date")
            fields = self._fields[(present, birth is not None)] = json.dumps(sorted(names))
        return pinyin, id_hash, birth, fields


_TEXT_CORE = frozenset(_CHAR_LIMITS) & _CORE
_SCALARS = (str, bool, int, float)


def _json_exact(value: Any) -> bool:  # noqa: ANN401
    """Whether ``value``'s JSON text, parsed as jsonb, is what ``jsonb_strip_nulls`` leaves of it:
    scalars, and lists of scalars (only object members are stripped)."""
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, list) and all(isinstance(v, _SCALARS) for v in value)


class _NotExact(str):
    """A value's text that SQL might write differently: the row is left to SQL."""


_NOT_EXACT = _NotExact("null")


def _value_text(name: str, value: Any) -> str | None:  # noqa: ANN401
    """The JSON text of one valid value as ``customer_values_sql`` puts it in the object: text
    fields cut to their column, the birth date as the ISO text of the parsed date (None: it
    does not parse and is left out), anything else as it is; ``_NOT_EXACT`` where SQL might
    write it otherwise (a text field's value that is not a string; objects, whose null members
    ``jsonb_strip_nulls`` drops)."""
    if name == "birth_date":
        if not isinstance(value, str):
            return _NOT_EXACT
        try:
            return '"' + date.fromisoformat(value).isoformat() + '"'
        except ValueError:
            return None
    if isinstance(value, str):
        limit = _CHAR_LIMITS.get(name) if name in _TEXT_CORE else None
        return encode_basestring(value if limit is None else value[:limit])
    if name in _TEXT_CORE or not _json_exact(value):
        return _NOT_EXACT
    return _dumps(value)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def jsonb_key_order(key: str) -> tuple[int, bytes]:
    """Where jsonb puts ``key`` among an object's keys: shorter keys (in bytes) first, then bytewise.
    Its parser sorts the keys of every object it reads; keys that already come in this order are
    only checked, in one pass (staging the customer values so ordered made the COPY ~10 % cheaper)."""
    data = key.encode()
    return len(data), data


_CUSTOM_ORDER = jsonb_key_order("custom")


def customer_values_texts(
    chunk: ChunkColumns, n: int, value_items: list[tuple[str, np.ndarray, np.ndarray]], flag_columns: list[np.ndarray]
) -> list[str]:
    """What ``customer_values_sql`` builds for each row of a chunk, as the JSON text of a
    staging COPY field, made column by column (``imports.rows``) for ``n`` rows: ``value_items`` are
    (field, plaintext values, present mask), ``flag_columns`` the flags of the same fields;
    secret values are sealed with the chunk's ciphertexts (``chunk._sealed_column``), as in the
    staged normalized values. Rows holding a value whose text might differ from SQL's (a
    text field's value that is not a string, a nested object) get ``\\N``: SQL builds theirs.
    Keys come in jsonb's order (``jsonb_key_order``), "custom" and its members included."""
    # The core keys jsonb puts before "custom" and those after it; custom members.
    core = np.full(n, "", dtype=object)
    core_after = np.full(n, "", dtype=object)
    custom = np.full(n, "", dtype=object)
    exact = np.ones(n, dtype=bool)
    items = sorted(zip(value_items, flag_columns, strict=True), key=lambda item: jsonb_key_order(item[0][0]))
    for (name, column, present), flags in items:
        at = np.flatnonzero(present & (flags == ""))
        if not len(at):
            continue
        values = column[at]
        if name in chunk.secret_fields:
            values = chunk._sealed_column(values, np.ones(len(at), dtype=bool))
        # Values repeat (names, cities, dates, tags, flags): each distinct one is encoded once,
        # with its key in front.
        label = "," + encode_basestring(name) + ":"
        if name != "birth_date" and pd.api.types.infer_dtype(values, skipna=False) == "string":
            codes, distinct = pd.factorize(values)
            texts = np.asarray([label + _value_text(name, v) for v in distinct.tolist()], dtype=object).take(codes)
            target = _target(name, core, core_after, custom)
            if len(at) == n:
                target += texts
            else:
                target[at] += texts
            continue
        memo: dict[Any, str | None] = {}
        texts = np.empty(len(at), dtype=object)
        keep = np.ones(len(at), dtype=bool)
        for k, v in enumerate(values.tolist()):
            key = (v.__class__, v) if not isinstance(v, list) else (list, *v)
            try:
                text = memo[key]
            except KeyError:
                text = _value_text(name, v)
                text = memo[key] = text if text is None or text is _NOT_EXACT else label + text
            except TypeError:  # unhashable: a list holding lists or objects
                text = _NOT_EXACT
            if text is None:
                keep[k] = False
            elif text is _NOT_EXACT:
                exact[at[k]] = False
            texts[k] = text
        if not keep.all():
            at, texts = at[keep], texts[keep]
        if not len(at):
            continue
        target = _target(name, core, core_after, custom)
        if len(at) == n:
            target += texts
        else:
            target[at] += texts
    has_custom = np.flatnonzero(custom != "")
    if len(has_custom):
        core[has_custom] = (
            core[has_custom] + ',"custom":{' + np.asarray([c[1:] for c in custom[has_custom]], dtype=object) + "}"
        )
    if (core_after != "").any():
        core += core_after
    return [
        ("\\N" if not ok else "{" + (text[1:].replace("\\", "\\\\") if "\\" in text else text[1:]) + "}")
        for text, ok in zip(core.tolist(), exact.tolist(), strict=True)
    ]


def _target(name: str, core: np.ndarray, core_after: np.ndarray, custom: np.ndarray) -> np.ndarray:
    """The texts a field's members are added to (``customer_values_texts``)."""
    if name not in _CORE:
        return custom
    return core if jsonb_key_order(name) < _CUSTOM_ORDER else core_after
