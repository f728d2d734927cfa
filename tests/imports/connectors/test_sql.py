from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest

from crmhub.models import SourceRecord
from imports.choices import ChangeAction, RunStatus
from imports.connectors.base import ConnectorChunkSource, ConnectorError
from imports.connectors.services import (
    ConnectorRefused,
    connector_create,
    connector_run_execute,
    connector_sync_request,
    connector_test,
    connector_update,
)
from imports.connectors.sql import SqlConnector, mask_url, validate_select
from imports.models import Connector, ImportRunChange
from imports.pipeline import ImportPipeline
from tests.factories import SourceFactory
from tests.imports.connectors.erp import BASE, erp_rows

MAPPING = {"name": "full_name", "mobile": "mobile", "id_card": "id_number", "city": "city"}


def make_connector(erp, *, page_size: int = 10, **config) -> Connector:  # noqa: ANN001, ANN003
    settings = {
        "table": erp.table,
        "key_columns": ["code"],
        "cursor_column": "updated_at",
        "page_size": page_size,
        **config,
    }
    return connector_create(
        source=SourceFactory(code="erp"), name="erp", kind="sql", config=settings, secret=erp.url, mapping=MAPPING
    )


def sync(connector: Connector):  # noqa: ANN201
    run = connector_sync_request(connector=connector, enqueue=False)
    return connector_run_execute(run_id=run.pk)


def assert_no_loss_or_duplicate(n: int) -> None:
    assert SourceRecord.objects.count() == n
    assert len(set(SourceRecord.objects.values_list("source_key", flat=True))) == n
    assert ImportRunChange.objects.filter(action=ChangeAction.CREATED).count() == n


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("erp_fixture", ["mariadb_erp", "pg_erp"])
def test_it_syncs_incrementally_reading_only_rows_past_the_cursor(erp_fixture, request):
    erp = request.getfixturevalue(erp_fixture)
    erp.insert(erp_rows(25))
    connector = make_connector(erp)
    first = sync(connector)
    assert (first.status, first.rows_done, first.created) == (RunStatus.COMPLETED, 25, 25), first.message
    record = SourceRecord.objects.get(source_key="E000007")
    assert record.normalized["full_name"] == "客户7" and record.customer.mobile == "+8613800000007"
    assert record.raw["note"] == "n7"
    connector.refresh_from_db()
    assert connector.cursor["after"][1] == {"t": "str", "v": "E000025"}
    assert connector.last_success_at and connector.last_rows == 25 and connector.last_run == first

    later = BASE + dt.timedelta(days=1)
    erp.insert(erp_rows(3, start=26, at=later))
    erp.execute("UPDATE {t}_customers SET name = '新名字', updated_at = :at WHERE id IN (1, 2)", {"at": later})
    second = sync(Connector.objects.get(pk=connector.pk))
    assert (second.rows_done, second.created, second.updated, second.unchanged) == (5, 3, 2, 0)
    assert SourceRecord.objects.get(source_key="E000001").normalized["full_name"] == "新名字"
    third = sync(Connector.objects.get(pk=connector.pk))
    assert (third.status, third.rows_done) == (RunStatus.COMPLETED, 0)
    assert_no_loss_or_duplicate(28)


@pytest.mark.django_db(transaction=True)
def test_it_reads_a_select_with_a_join_and_an_increasing_id_cursor(pg_erp):
    pg_erp.insert(erp_rows(12))
    query = (
        f"SELECT c.id, c.code, c.name, c.mobile, r.region_name AS province FROM {pg_erp.prefix}_customers c "
        f"JOIN {pg_erp.prefix}_regions r ON r.id = c.region_id WHERE c.city = '上海'"
    )
    connector = connector_create(
        source=SourceFactory(code="erp"),
        name="erp-q",
        kind="sql",
        secret=pg_erp.url,
        config={"query": query, "key_columns": ["code"], "cursor_column": "id", "page_size": 5},
        mapping={"name": "full_name", "mobile": "mobile"},
    )
    run = sync(connector)
    assert (run.status, run.created) == (RunStatus.COMPLETED, 12), run.message
    assert SourceRecord.objects.get(source_key="E000004").raw["province"] == "华东"
    connector.refresh_from_db()
    assert connector.cursor["after"][0] == {"t": "int", "v": 12}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("erp_fixture", ["mariadb_erp", "pg_erp"])
def test_it_resumes_after_a_sync_stopped_between_pages_without_loss_or_duplicates(erp_fixture, request, monkeypatch):
    erp = request.getfixturevalue(erp_fixture)
    erp.insert(erp_rows(47))
    connector = make_connector(erp, page_size=10)
    real_pages = SqlConnector.pages

    def dies_after_two_pages(self, page_rows):  # noqa: ANN001, ANN202
        for n, page in enumerate(real_pages(self, page_rows)):
            if n == 2:
                raise ConnectionResetError("worker lost")
            yield page

    monkeypatch.setattr(SqlConnector, "pages", dies_after_two_pages)
    broken = sync(connector)
    assert broken.status == RunStatus.FAILED and broken.rows_done == 20
    assert SourceRecord.objects.count() == 20
    connector.refresh_from_db()
    assert connector.consecutive_failures == 1 and "ConnectionResetError" in connector.last_error
    monkeypatch.setattr(SqlConnector, "pages", real_pages)
    resumed = sync(connector)
    assert (resumed.status, resumed.created, resumed.rows_done) == (RunStatus.COMPLETED, 27, 27)
    assert_no_loss_or_duplicate(47)


@pytest.mark.django_db(transaction=True)
def test_it_rolls_back_a_page_and_its_cursor_together(mariadb_erp, monkeypatch):
    """A failure after a page's rows are written but before its transaction commits leaves
    neither the rows nor the cursor move behind."""
    mariadb_erp.insert(erp_rows(30))
    connector = make_connector(mariadb_erp, page_size=10)
    real = ConnectorChunkSource.chunk_committed

    def dies_in_second_commit(self):  # noqa: ANN001, ANN202
        real(self)
        if self.pages_done == 2:
            raise RuntimeError("killed inside the transaction")

    monkeypatch.setattr(ConnectorChunkSource, "chunk_committed", dies_in_second_commit)
    assert sync(connector).status == RunStatus.FAILED
    connector.refresh_from_db()
    assert SourceRecord.objects.count() == 10 and connector.cursor["after"][1]["v"] == "E000010"
    monkeypatch.setattr(ConnectorChunkSource, "chunk_committed", real)
    assert sync(connector).created == 20
    assert_no_loss_or_duplicate(30)


@pytest.mark.django_db(transaction=True)
def test_it_saves_each_pages_own_cursor_while_the_next_page_is_read_ahead(mariadb_erp, monkeypatch):
    """The next page is read (in a helper thread) while the current one is written; the cursor
    saved with a page must still be that page's, not the one of the page read ahead."""
    mariadb_erp.insert(erp_rows(30))
    connector = make_connector(mariadb_erp, page_size=10)
    real_pages, real_committed = SqlConnector.pages, ConnectorChunkSource.chunk_committed
    yielded = {"n": 0}
    saved = []

    def counted_pages(self, page_rows):  # noqa: ANN001, ANN202
        for page in real_pages(self, page_rows):
            yielded["n"] += 1
            yield page

    def committed(self):  # noqa: ANN001, ANN202
        real_committed(self)
        saved.append(self.connector.cursor["after"][1]["v"])

    real_progress = ImportPipeline._save_progress

    def progress_once_the_next_page_was_read(self, *, final):  # noqa: ANN001, ANN202
        # Just before a page's cursor is saved, let the reader get a page ahead (it usually is).
        done = len(saved)
        deadline = time.monotonic() + 10
        while not final and yielded["n"] < min(done + 2, 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        real_progress(self, final=final)

    monkeypatch.setattr(SqlConnector, "pages", counted_pages)
    monkeypatch.setattr(ConnectorChunkSource, "chunk_committed", committed)
    monkeypatch.setattr(ImportPipeline, "_save_progress", progress_once_the_next_page_was_read)
    assert sync(connector).status == RunStatus.COMPLETED
    assert saved == ["E000010", "E000020", "E000030"]
    assert_no_loss_or_duplicate(30)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM customers",
        "UPDATE customers SET name = 'x'",
        "SELECT * FROM customers; DROP TABLE customers",
        "SELECT * FROM customers WHERE id = 1 OR 1=1; DELETE FROM customers",
        "SELECT 1 /*! ; DROP TABLE customers */",
        "SELECT * FROM customers -- ; DROP TABLE customers",
        "SELECT * INTO backup FROM customers",
        "SELECT * FROM customers FOR UPDATE",
        "SELECT * FROM customers LOCK IN SHARE MODE",
        "SELECT pg_sleep(100)",
        "SELECT SLEEP(100)",
        "SELECT load_file('/etc/passwd')",
        "SELECT pg_read_file('/etc/passwd')",
        "WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone",
        "CREATE TABLE x AS SELECT * FROM customers",
        "INSERT INTO customers SELECT * FROM customers",
        "",
    ],
)
def test_it_refuses_anything_but_one_plain_select(sql):
    for dialect in ("postgres", "mysql"):
        with pytest.raises(ConnectorError):
            validate_select(sql, dialect=dialect)


def test_it_accepts_plain_selects():
    assert validate_select("SELECT a, b FROM t WHERE note = '--x' AND n > 3;", dialect="mysql").endswith("n > 3")
    validate_select("SELECT a FROM t UNION ALL SELECT a FROM u", dialect="postgres")


@pytest.mark.django_db
def test_it_refuses_injection_through_names_and_bad_settings():
    source = SourceFactory(code="erp")
    url = "mysql+pymysql://root@127.0.0.1:3306/test"
    bad = [
        {"table": "customers; DROP TABLE x", "key_columns": ["id"], "cursor_column": "id"},
        {"table": "customers", "key_columns": ["id`; DROP TABLE x; --"], "cursor_column": "id"},
        {"table": "customers", "key_columns": ["id"], "cursor_column": "id) OR (1=1"},
        {"table": "customers", "query": "SELECT 1", "key_columns": ["id"], "cursor_column": "id"},
        {"table": "customers", "key_columns": [], "cursor_column": "id"},
    ]
    for config in bad:
        with pytest.raises(ConnectorRefused):
            connector_create(source=source, name="x", kind="sql", config=config, secret=url)
    with pytest.raises(ConnectorRefused, match="unsupported database"):
        connector_create(
            source=source,
            name="x",
            kind="sql",
            secret="sqlite:///x.db",
            config={"table": "t", "key_columns": ["id"], "cursor_column": "id"},
        )


@pytest.mark.parametrize("erp_fixture", ["mariadb_erp", "pg_erp"])
def test_it_runs_the_query_in_a_read_only_transaction(erp_fixture, request):
    erp = request.getfixturevalue(erp_fixture)
    kind = SqlConnector(config={"table": erp.table, "key_columns": ["code"], "cursor_column": "id"}, secret=erp.url)
    with pytest.raises(ConnectorError, match="read"):
        kind._read(f"INSERT INTO {erp.table} (id, code) VALUES (999, 'X')", {})  # the validator bypassed on purpose
    assert erp.scalar("SELECT COUNT(*) FROM {t}_customers") == 0


def test_it_stops_a_statement_at_the_statement_timeout(mariadb_erp):
    kind = SqlConnector(
        config={"table": mariadb_erp.table, "key_columns": ["code"], "cursor_column": "id", "statement_timeout": 1},
        secret=mariadb_erp.url,
    )
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="in time|interrupted|max_statement_time|error"):
        kind._read("SELECT SLEEP(5) FROM DUAL", {})
    assert time.monotonic() - started < 4


@pytest.mark.django_db
def test_it_reports_bad_credentials_without_the_password(mariadb_erp):
    connector = connector_create(
        source=SourceFactory(code="erp"),
        name="bad",
        kind="sql",
        config={"table": mariadb_erp.table, "key_columns": ["code"], "cursor_column": "id"},
        secret="mysql+pymysql://nosuchuser:Sup3rSecret@127.0.0.1:3306/test",
    )
    result = connector_test(connector=connector, user=None)
    assert not result.ok and "refused the credentials" in result.message
    assert "Sup3rSecret" not in result.message
    assert mask_url(connector.secret) == "mysql+pymysql://nosuchuser:***@127.0.0.1:3306/test"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM imports_connector WHERE id = %s", [connector.pk])
        stored = cursor.fetchone()[0]
    assert "Sup3rSecret" not in stored


@pytest.mark.django_db
def test_it_fails_fast_on_a_closed_port_and_within_the_timeout_on_a_silent_server():
    source = SourceFactory(code="erp")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    config = {"table": "t", "key_columns": ["id"], "cursor_column": "id", "connect_timeout": 2}
    refused = connector_create(
        source=source, name="closed", kind="sql", config=config, secret=f"mysql+pymysql://root@127.0.0.1:{port}/test"
    )
    started = time.monotonic()
    result = connector_test(connector=refused, user=None)
    assert not result.ok and "cannot be reached" in result.message and time.monotonic() - started < 3

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) but never says a word
    stop = threading.Event()
    try:
        for name, scheme in (("silent-my", "mysql+pymysql"), ("silent-pg", "postgresql+psycopg")):
            connector = connector_create(
                source=source,
                name=name,
                kind="sql",
                config=config,
                secret=f"{scheme}://root@127.0.0.1:{silent.getsockname()[1]}/test",
            )
            started = time.monotonic()
            result = connector_test(connector=connector, user=None)
            elapsed = time.monotonic() - started
            assert not result.ok and "in time" in result.message, result.message
            assert elapsed < 8
    finally:
        stop.set()
        silent.close()


@pytest.mark.django_db
def test_it_shows_columns_and_five_sample_rows_masked_by_policy(mariadb_erp, admin_user, sales):
    mariadb_erp.insert(erp_rows(8))
    connector = make_connector(mariadb_erp)
    seen = connector_test(connector=connector, user=admin_user)
    assert seen.ok and len(seen.rows) == 5
    assert {"code", "name", "mobile", "updated_at"} <= set(seen.columns)
    assert seen.rows[0]["mobile"] == "13800000001"
    masked = connector_test(connector=connector, user=sales)
    assert masked.rows[0]["mobile"] != "13800000001"
    assert masked.rows[0]["note"] == "•••"


@pytest.mark.django_db
def test_it_keeps_the_stored_credentials_when_an_edit_leaves_them_blank_and_restarts_on_a_new_table(mariadb_erp):
    connector = make_connector(mariadb_erp)
    Connector.objects.filter(pk=connector.pk).update(cursor={"columns": ["updated_at"], "after": []})
    connector = connector_update(connector=connector, secret="", config={"page_size": 50})
    assert connector.secret == mariadb_erp.url and connector.cursor is not None
    connector = connector_update(connector=connector, config={"table": "other_table"})
    assert connector.cursor is None
