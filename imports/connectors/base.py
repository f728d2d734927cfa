"""The base class of pull connectors, their registry, and the chunk source the pipeline reads."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

REGISTRY: dict[str, type[Connector]] = {}


class ConnectorError(Exception):
    """A connector cannot do what was asked; the message says why (never a credential or a row value)."""


def register_connector(kind: str) -> Callable[[type[Connector]], type[Connector]]:
    def wrap(cls: type[Connector]) -> type[Connector]:
        cls.kind = kind
        REGISTRY[kind] = cls
        return cls

    return wrap


def connector_class(kind: str) -> type[Connector]:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ConnectorError(f"unknown connector kind {kind!r} (known: {', '.join(sorted(REGISTRY))})") from None


@dataclass
class Page:
    """One page as text cells, column by column (``cells[i]`` holds column ``columns[i]`` of
    each of the ``size`` rows), and the cursor to save once the page is written."""

    columns: list[str]
    cells: list[list[str]]
    size: int
    cursor: dict[str, Any] | None

    def __len__(self) -> int:
        return self.size

    def frame(self) -> pd.DataFrame:
        """The pipeline's chunk: a frame of text columns (built column by column; the names are
        set afterwards, as a query may return two columns of the same name)."""
        if not self.size:
            return pd.DataFrame(columns=self.columns, dtype=object)
        if not self.columns:  # records without a single field: rows the pipeline reports as keyless
            return pd.DataFrame(index=range(self.size))
        frame = pd.DataFrame(dict(enumerate(self.cells)), dtype=str)
        frame.columns = self.columns
        return frame


@dataclass
class Preview:
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Connector:
    """One kind of pull source.

    ``config`` holds the non-secret settings (validated by ``clean_config``), ``secret`` the
    credentials (URL or auth header value, stored encrypted), ``cursor`` the position saved
    after the last page committed (None: from the beginning).
    """

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    secret_label: ClassVar[str] = ""

    def __init__(self, *, config: dict[str, Any], secret: str, cursor: dict[str, Any] | None = None) -> None:
        self.config = self.clean_config(config, secret)
        self.secret = secret
        self.cursor = cursor

    @classmethod
    def clean_config(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        """The config with defaults filled in; raises ConnectorError on a bad setting."""
        raise NotImplementedError

    def masked_secret(self) -> str:
        """The credentials as they may be shown back."""
        raise NotImplementedError

    def key_columns(self) -> list[str]:
        return list(self.config["key_columns"])

    def preview(self, limit: int = 5) -> Preview:
        """Columns and the first ``limit`` rows ("test connection")."""
        raise NotImplementedError

    def pages(self, page_rows: int) -> Iterator[Page]:
        """Pages of rows past ``self.cursor``, in cursor order."""
        raise NotImplementedError


def cell_text(value: Any) -> str:
    """A cell as the pipeline's text: None is empty, dates ISO, numbers without float noise."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return ",".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def column_text(values: Sequence[Any]) -> list[str]:
    """``cell_text`` of every value of one column. A column's values share a type (plus None),
    so the common types take one C-level pass instead of a call of ``cell_text`` per cell."""
    kinds = set(map(type, values))
    has_none = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [""] * len(values)
    if len(kinds) == 1:
        texts = _TEXT_OF.get(kinds.pop())
        if texts is not None:
            if has_none:
                return [texts(v) if v is not None else "" for v in values]
            return list(values) if texts is str else list(map(texts, values))
    return list(map(cell_text, values))


# Types whose cell text is one C-level call (exactly what ``cell_text`` does for them).
_TEXT_OF: dict[type, Callable[[Any], str]] = {
    str: str,
    int: str,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
}


def cursor_value_dump(value: Any) -> dict[str, Any]:
    """A cursor value as JSON that keeps its type, so the next sync binds the same type."""
    if isinstance(value, dt.datetime):
        return {"t": "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        return {"t": "str", "v": str(value)}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, decimal.Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    return {"t": "str", "v": cell_text(value)}


def cursor_value_load(item: dict[str, Any]) -> Any:
    kind, value = item["t"], item["v"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


class ConnectorChunkSource:
    """The pipeline's chunk source for a connector sync: frames of the connector's pages;
    once a page's rows are written, its cursor is saved in the same transaction."""

    def __init__(self, connector_pk: int, connector: Connector) -> None:
        self.connector_pk = connector_pk
        self.connector = connector
        self.pending: dict[str, Any] | None = None
        self.pages_done = 0

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        for page in self.connector.pages(chunk_rows):
            self.pending = page.cursor
            yield page.frame()

    def chunk_committed(self) -> None:
        from imports.models import Connector as ConnectorModel

        if self.pending is not None:
            ConnectorModel.objects.filter(pk=self.connector_pk).update(cursor=self.pending)
            self.connector.cursor = self.pending
        self.pages_done += 1
