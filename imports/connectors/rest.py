"""REST pull connector: a JSON endpoint read page by page (page numbers or a next-page cursor).

Auth is one header (``Authorization: Bearer …`` by default) whose value is stored encrypted.
Each request has a connect and a read timeout; 429 and 5xx answers (and dropped connections)
are retried with exponential backoff, honouring Retry-After. Incremental: the largest value
of ``cursor_field`` seen is sent as ``since_param`` on the next sync. The saved position
also names the next page, so a sync stopped midway resumes at the page after the last one
written, whatever order the endpoint returns records in.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from imports.connectors.base import Connector, ConnectorError, Page, Preview, cell_text, register_connector

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 300
MAX_BODY = 50 * 1024 * 1024


def records_at(document: Any, path: str) -> list[Any]:
    """The list at a JSONPath-ish ``path`` ("data.items", "$.result.rows", "" for the document itself)."""
    node = document
    path = path.strip()
    if path.startswith("$"):
        path = path[1:]
    for part in [p for p in path.replace("[", ".").replace("]", "").split(".") if p]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ConnectorError(f"the response has nothing at {part!r} of the records path {path!r}")
    if node is None:
        return []
    if not isinstance(node, list):
        raise ConnectorError(f"the records path {path or '$'!r} does not lead to a list")
    return node


def value_at(document: Any, path: str) -> Any:
    try:
        node = document
        for part in [p for p in path.lstrip("$").split(".") if p]:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
        return node
    except (AttributeError, IndexError, ValueError, TypeError):
        return None


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns ("address.city")."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@register_connector("rest")
class RestConnector(Connector):
    """A JSON endpoint, its pagination, the path to the records and an optional cursor field."""

    label = "REST API (JSON)"
    secret_label = "Auth header value"

    @classmethod
    def clean_config(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        url = (config.get("url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError("the endpoint must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ConnectorError("put credentials in the auth header, not in the URL")
        pagination = config.get("pagination") or "page"
        if pagination not in ("page", "cursor", "none"):
            raise ConnectorError("pagination must be page, cursor or none")
        keys = [k.strip() for k in (config.get("key_columns") or []) if k and k.strip()]
        if not keys:
            raise ConnectorError("name the record field(s) holding the source key")
        if pagination == "cursor" and not config.get("next_path"):
            raise ConnectorError("cursor pagination needs the path of the next-page cursor in the response")
        clean = {
            "url": url,
            "pagination": pagination,
            "key_columns": keys,
            "records_path": (config.get("records_path") or "").strip(),
            "auth_header": (config.get("auth_header") or "Authorization").strip(),
            "page_param": config.get("page_param") or "page",
            "size_param": config.get("size_param") or "page_size",
            "page_size": int(config.get("page_size") or 100),
            "first_page": int(config.get("first_page") or 1),
            "next_path": (config.get("next_path") or "").strip(),
            "cursor_param": config.get("cursor_param") or "cursor",
            "cursor_field": (config.get("cursor_field") or "").strip(),
            "since_param": (config.get("since_param") or "").strip(),
            "connect_timeout": float(config.get("connect_timeout") or 5),
            "read_timeout": float(config.get("read_timeout") or 30),
            "max_retries": int(config.get("max_retries") if config.get("max_retries") is not None else 4),
            "backoff_seconds": float(config.get("backoff_seconds") if config.get("backoff_seconds") is not None else 1),
        }
        if clean["cursor_field"] and not clean["since_param"]:
            raise ConnectorError(
                "an incremental cursor field needs the query parameter to send it as (e.g. updated_since)"
            )
        if not 1 <= clean["page_size"] <= 10_000:
            raise ConnectorError("page size must be between 1 and 10000")
        return clean

    def masked_secret(self) -> str:
        if not self.secret:
            return ""
        head = self.secret.split(" ", 1)[0] if " " in self.secret else ""
        return f"{self.config['auth_header']}: {head + ' ' if head else ''}***"

    #
    # HTTP
    #

    def _url(self, params: dict[str, Any]) -> str:
        parts = urlsplit(self.config["url"])
        query = [*parse_qsl(parts.query, keep_blank_values=True), *[(k, str(v)) for k, v in params.items()]]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _once(self, url: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": self.config["connect_timeout"]}
        if parts.scheme == "https":
            kwargs["context"] = ssl.create_default_context()
        conn = cls(parts.hostname, parts.port, **kwargs)
        try:
            conn.connect()
            conn.sock.settimeout(self.config["read_timeout"])
            headers = {"Accept": "application/json", "User-Agent": "crmhub-connector/1"}
            if self.secret:
                headers[self.config["auth_header"]] = self.secret
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise ConnectorError("the response is larger than 50 MB; use a smaller page size")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def fetch(self, params: dict[str, Any]) -> Any:
        """GET the endpoint with ``params``; the decoded JSON. Retries 429/5xx and dropped connections."""
        url = self._url(params)
        shown = self._url({k: v for k, v in params.items()})
        attempt = 0
        while True:
            wait: float | None = None
            try:
                status, headers, body = self._once(url)
            except TimeoutError:
                raise ConnectorError(
                    f"{shown} did not answer within the timeout "
                    f"({self.config['connect_timeout']:g}s connect, {self.config['read_timeout']:g}s read)"
                ) from None
            except ConnectionRefusedError:
                problem = "the connection was refused"
                status, headers, body = 0, {}, b""
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                problem = f"the connection failed ({type(exc).__name__})"
                status, headers, body = 0, {}, b""
            if status and status not in RETRY_STATUSES:
                break
            if status:
                problem = f"the endpoint answered HTTP {status}"
                wait = retry_after_seconds(headers.get("retry-after"))
            if attempt >= self.config["max_retries"]:
                raise ConnectorError(f"{shown}: {problem}, {attempt + 1} attempts")
            backoff = self.config["backoff_seconds"] * (2**attempt)
            time.sleep(min(MAX_RETRY_AFTER, max(backoff, wait or 0.0)))
            attempt += 1
        if status in (401, 403):
            raise ConnectorError(f"{shown}: the endpoint refused the credentials (HTTP {status})")
        if status >= 400:
            raise ConnectorError(f"{shown}: the endpoint answered HTTP {status}")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConnectorError(f"{shown}: the answer is not JSON") from None

    #
    # Reading
    #

    def _rows(self, document: Any) -> list[dict[str, Any]]:
        records = records_at(document, self.config["records_path"])
        rows = []
        for record in records:
            if not isinstance(record, dict):
                raise ConnectorError("the records path leads to a list of non-objects")
            rows.append(flatten(record))
        return rows

    def preview(self, limit: int = 5) -> Preview:
        rows = self._rows(self.fetch(self._params(self._start()[0], None)))[:limit]
        columns = list(dict.fromkeys(c for r in rows for c in r))
        missing = [k for k in self.config["key_columns"] if k not in columns]
        notes = [f"the sample records lack the key field {', '.join(missing)}"] if missing and rows else []
        return Preview(columns=columns, rows=[{c: cell_text(r.get(c)) for c in columns} for r in rows], notes=notes)

    def _start(self) -> tuple[Any, str]:
        """(page position, since value) where this sync starts."""
        state = self.cursor or {}
        since = state.get("since", "")
        if state.get("resume") is not None:
            return state["resume"], since
        return (self.config["first_page"] if self.config["pagination"] == "page" else None), since

    def _params(self, position: Any, since: str | None) -> dict[str, Any]:
        c, params = self.config, {}
        if c["pagination"] == "page":
            params[c["page_param"]] = position
            params[c["size_param"]] = c["page_size"]
        elif c["pagination"] == "cursor" and position:
            params[c["cursor_param"]] = position
        if since and c["since_param"]:
            params[c["since_param"]] = since
        return params

    def _next(self, position: Any, document: Any, rows: list[dict[str, Any]]) -> Any:
        c = self.config
        if c["pagination"] == "page":
            return position + 1 if len(rows) >= c["page_size"] else None
        if c["pagination"] == "cursor":
            nxt = value_at(document, c["next_path"])
            return nxt if nxt not in (None, "", position) and rows else None
        return None

    def pages(self, page_rows: int) -> Iterator[Page]:
        position, since = self._start()
        newest = (self.cursor or {}).get("newest", since)
        field = self.config["cursor_field"]
        document = self.fetch(self._params(position, since))
        while True:
            rows = self._rows(document)
            for row in rows:
                value = cell_text(row.get(field)) if field else ""
                if value and (not newest or _greater(value, newest)):
                    newest = value
            nxt = self._next(position, document, rows)
            if nxt is None:
                state = {"since": newest if field else "", "resume": None}
            else:
                state = {"since": since, "resume": nxt, "newest": newest}
            columns = list(dict.fromkeys(c for r in rows for c in r))
            yield Page(
                columns=columns,
                cells=[[cell_text(r.get(c)) for r in rows] for c in columns],
                size=len(rows),
                cursor=state,
            )
            if nxt is None:
                return
            position = nxt
            document = self.fetch(self._params(position, since))


def _greater(a: str, b: str) -> bool:
    """Numbers compare as numbers, everything else (ISO timestamps) as text."""
    try:
        return float(a) > float(b)
    except ValueError:
        return a > b
