from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from crmhub.models import SourceRecord
from imports.choices import RunStatus
from imports.connectors.base import ConnectorError
from imports.connectors.rest import RestConnector, records_at
from imports.connectors.services import connector_create, connector_run_execute, connector_sync_request
from imports.models import Connector
from tests.factories import SourceFactory

TOKEN = "Bearer s3cret-token"


def people(n: int) -> list[dict]:
    return [
        {
            "uid": f"U{i:03d}",
            "profile": {
                "name": "会员" + "甲乙丙丁戊己庚辛壬癸"[i % 10] + "子丑寅卯辰巳午未申酉"[i // 10],
                "phone": f"139{i:08d}",
            },
            "updated": f"2026-01-{1 + i // 10:02d}T00:00:00",
            "tags": ["vip", "new"],
        }
        for i in range(1, n + 1)
    ]


class Api:
    """A local JSON API: page or cursor pagination, an auth header, scripted failures."""

    def __init__(self) -> None:
        self.records = people(23)
        self.fail_next: list[tuple[int, str | None]] = []
        self.requests: list[tuple[float, str]] = []
        self.sleep = 0.0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                api.requests.append((time.monotonic(), self.path))
                if api.sleep:
                    time.sleep(api.sleep)
                if self.headers.get("Authorization") != TOKEN:
                    return self._send(401, {"error": "unauthorized"})
                if api.fail_next:
                    status, retry_after = api.fail_next.pop(0)
                    return self._send(status, {"error": "busy"}, retry_after)
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                rows = [r for r in api.records if r["updated"] >= q.get("since", "")]
                if url.path == "/pages":
                    page, size = int(q.get("page", 1)), int(q.get("page_size", 10))
                    return self._send(200, {"data": {"items": rows[(page - 1) * size : page * size]}})
                if url.path == "/cursor":
                    start = int(q.get("cursor", 0))
                    chunk = rows[start : start + 7]
                    nxt = str(start + 7) if start + 7 < len(rows) else None
                    return self._send(200, {"results": chunk, "meta": {"next": nxt}})
                return self._send(404, {})

            def _send(self, status: int, body: dict, retry_after: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():  # noqa: ANN201
    server = Api()
    yield server
    server.close()


def make(api: Api, path: str = "/pages", secret: str = TOKEN, **config) -> Connector:  # noqa: ANN003
    settings = {
        "url": api.base + path,
        "records_path": "$.data.items",
        "pagination": "page",
        "page_size": 10,
        "key_columns": ["uid"],
        "cursor_field": "updated",
        "since_param": "since",
        "backoff_seconds": 0.01,
        "read_timeout": 2,
        **config,
    }
    return connector_create(
        source=SourceFactory(code="app"),
        name="app",
        kind="rest",
        config=settings,
        secret=secret,
        mapping={"profile.name": "full_name", "profile.phone": "mobile", "tags": "tags"},
    )


def sync(connector: Connector):  # noqa: ANN201
    run = connector_sync_request(connector=connector, enqueue=False)
    return connector_run_execute(run_id=run.pk)


@pytest.mark.django_db
def test_it_pulls_every_page_then_only_what_changed_since(api):
    connector = make(api)
    run = sync(connector)
    assert (run.status, run.created) == (RunStatus.COMPLETED, 23), run.message
    record = SourceRecord.objects.get(source_key="U005")
    assert record.customer.full_name == "会员己子" and record.customer.mobile == "+8613900000005"
    assert record.normalized["tags"] == ["vip", "new"]
    connector.refresh_from_db()
    assert connector.cursor == {"since": "2026-01-03T00:00:00", "resume": None}
    api.records[0]["updated"] = "2026-02-01T00:00:00"
    api.records[0]["profile"]["name"] = "新会员"
    api.requests.clear()
    second = sync(Connector.objects.get(pk=connector.pk))
    assert all("since=2026-01-03" in path for _t, path in api.requests)
    # the rows of the newest timestamp come again (unchanged); the edited one is updated
    assert (second.updated, second.created, second.unchanged) == (1, 0, 4)


@pytest.mark.django_db
def test_it_follows_a_next_cursor(api):
    connector = make(api, "/cursor", records_path="results", pagination="cursor", next_path="meta.next")
    run = sync(connector)
    assert (run.status, run.created) == (RunStatus.COMPLETED, 23)
    assert len(api.requests) == 4


@pytest.mark.django_db
def test_it_retries_429_and_503_honouring_retry_after_then_recovers(api):
    api.fail_next = [(429, "1"), (503, None), (502, None)]
    connector = make(api)
    started = time.monotonic()
    run = sync(connector)
    assert (run.status, run.created) == (RunStatus.COMPLETED, 23)
    first_two = api.requests[:2]
    assert first_two[1][0] - first_two[0][0] >= 0.9  # waited for Retry-After: 1
    assert time.monotonic() - started < 10


@pytest.mark.django_db
def test_it_gives_up_after_the_retries_and_the_failure_counts(api):
    api.fail_next = [(503, None)] * 10
    connector = make(api, max_retries=2)
    run = sync(connector)
    assert run.status == RunStatus.FAILED and "HTTP 503, 3 attempts" in run.message
    connector.refresh_from_db()
    assert connector.consecutive_failures == 1 and "HTTP 503" in connector.last_error


@pytest.mark.django_db
def test_it_stops_at_the_read_timeout(api):
    api.sleep = 3
    connector = make(api, read_timeout=0.5, max_retries=0)
    started = time.monotonic()
    run = sync(connector)
    assert run.status == RunStatus.FAILED and "did not answer within the timeout" in run.message
    assert time.monotonic() - started < 2.5


@pytest.mark.django_db
def test_it_reports_refused_credentials_and_never_shows_the_token(api):
    connector = make(api, secret="Bearer wrong")
    run = sync(connector)
    assert run.status == RunStatus.FAILED and "refused the credentials (HTTP 401)" in run.message
    assert "wrong" not in run.message
    kind = RestConnector(config=connector.config, secret=TOKEN)
    assert kind.masked_secret() == "Authorization: Bearer ***"


@pytest.mark.django_db
def test_it_resumes_at_the_page_after_the_last_one_written(api, monkeypatch):
    connector = make(api)
    real = RestConnector.fetch
    calls = {"n": 0}

    def dies_on_third(self, params):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectorError("connection lost")
        return real(self, params)

    monkeypatch.setattr(RestConnector, "fetch", dies_on_third)
    broken = sync(connector)
    assert broken.status == RunStatus.FAILED and SourceRecord.objects.count() == 20
    connector.refresh_from_db()
    assert connector.cursor["resume"] == 3
    monkeypatch.setattr(RestConnector, "fetch", real)
    api.requests.clear()
    resumed = sync(connector)
    assert resumed.created == 3 and "page=3" in api.requests[0][1]
    assert SourceRecord.objects.count() == 23


def test_it_finds_records_by_path_and_refuses_a_bad_path():
    doc = {"data": {"items": [{"a": 1}]}, "list": [[{"b": 2}]]}
    assert records_at(doc, "$.data.items") == [{"a": 1}]
    assert records_at(doc, "list[0]") == [{"b": 2}]
    with pytest.raises(ConnectorError, match="nothing at"):
        records_at(doc, "data.rows")
    with pytest.raises(ConnectorError, match="does not lead to a list"):
        records_at(doc, "data")


@pytest.mark.django_db
def test_it_fails_fast_when_nothing_listens():
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    kind = RestConnector(
        config={"url": f"http://127.0.0.1:{port}/x", "key_columns": ["id"], "max_retries": 1, "backoff_seconds": 0.01},
        secret="",
    )
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="refused"):
        kind.fetch({})
    assert time.monotonic() - started < 2
