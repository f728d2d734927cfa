"""The SQL connector's MariaDB drivers: mysqlclient (C) for ``mysql://`` when it is installed,
PyMySQL otherwise or when named. Both must give the pipeline the very cells (and the cursor)
that the row-by-row path gave (PyMySQL's values through ``cell_text``), and keep the same
guarantees: read-only, statement timeout, connect timeout, resume without loss or duplicates."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from crmhub.models import SourceRecord
from imports.choices import RunStatus
from imports.connectors.base import ConnectorError, cell_text, column_text
from imports.connectors.sql import SqlConnector, mysql_driver
from imports.models import Connector
from tests.imports.connectors.erp import erp_rows
from tests.imports.connectors.test_sql import assert_no_loss_or_duplicate, make_connector, sync

TYPES = """CREATE TABLE {t}_types (
    id INT PRIMARY KEY, z INT(5) ZEROFILL, d DECIMAL(8,2), f DOUBLE, fl FLOAT, dt DATETIME, dt3 DATETIME(3),
    dt6 DATETIME(6), ts TIMESTAMP NULL, da DATE, ti TIME, y YEAR, b BIT(8), bl BLOB, tx TEXT, j JSON,
    e ENUM('a','b'), vb VARBINARY(10), c CHAR(3), t1 TINYINT(1), bi BIGINT UNSIGNED, name VARCHAR(20)
)"""
TYPE_ROWS = [
    "(1, 42, 12.50, 1.5, 0.1, '2026-01-02 03:04:05', '2026-01-02 03:04:05.120', '2026-01-02 03:04:05.000000',"
    " '2026-01-02 03:04:05', '2026-01-02', '-01:02:03', 2026, b'101', 0x00ff, '文', '{\"a\": 1}', 'b', 'ab', 'x', 1,"
    " 18446744073709551615, '张伟')",
    "(2, 0, -0.5, 1e20, 3.0, '0000-00-00 00:00:00', '2026-01-02 03:04:05.001', '2026-12-31 23:59:59.100000',"
    " NULL, '0000-00-00', '838:59:59', 0, b'0', '', '', 'null', 'a', '', '', 0, 0, '')",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, 'n3')",
    "(4, 7, 0.00, -2.25, 1e-3, '1999-02-28 00:00:00', '1999-02-28 00:00:00.000', '2026-01-02 03:04:05.123456',"
    " '2038-01-19 03:14:07', '1999-02-28', '00:00:00.5', 1999, b'11111111', X'', 'line\\nbreak', '[1, 2]', 'a',"
    " 0x00, 'abc', 0, 9, 'O''Brien')",
]
DRIVERS = ["mysql+pymysql", "mysql+mysqldb"]


def _needs(scheme: str) -> None:
    if scheme.endswith("mysqldb"):
        if os.environ.get("CRMHUB_REQUIRE_MYSQLCLIENT"):
            import MySQLdb  # noqa: F401 - CI installs the C driver: its tests must run there, not skip
        pytest.importorskip("MySQLdb", reason="mysqlclient is not installed (it needs libmariadb-dev to build)")


@pytest.fixture
def types_table(mariadb_erp):  # noqa: ANN001, ANN201
    from sqlalchemy import text

    mariadb_erp.execute(TYPES)
    with mariadb_erp.engine.begin() as conn:
        conn.execute(text("SET SESSION sql_mode = ''"))  # zero dates, as old schemas hold them
        conn.execute(text(f"INSERT INTO {mariadb_erp.prefix}_types VALUES {', '.join(TYPE_ROWS)}"))
    yield mariadb_erp
    mariadb_erp.execute("DROP TABLE IF EXISTS {t}_types")


def _row_by_row(url: str, table: str) -> list[list[str]]:
    """The cells as the connector made them before: PyMySQL's values, ``cell_text`` per cell."""
    import pymysql
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    conn = pymysql.connect(host=parts.host, port=parts.port or 3306, user=parts.username, database=parts.database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT * FROM `{table}` ORDER BY id")
            return [[cell_text(v) for v in row] for row in cursor.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("scheme", DRIVERS)
def test_each_driver_gives_the_cells_and_cursor_the_row_by_row_path_gave(types_table, scheme):
    _needs(scheme)
    table = f"{types_table.prefix}_types"
    url = types_table.url.replace("mysql+pymysql", scheme)
    kind = SqlConnector(config={"table": table, "key_columns": ["id"], "cursor_column": "dt6"}, secret=url)
    pages = list(kind.pages(2))  # dt6 order: ids 3 (NULL), 1, 4, 2
    assert [len(p) for p in pages] == [2, 2]
    assert pages[0].cursor["after"] == [{"t": "datetime", "v": "2026-01-02T03:04:05"}, {"t": "int", "v": 1}]
    with pytest.raises(ConnectorError, match="empty cursor"):
        list(SqlConnector(config=kind.config, secret=url).pages(1))

    kind = SqlConnector(config={"table": table, "key_columns": ["name"], "cursor_column": "id"}, secret=url)
    pages = list(kind.pages(3))
    frames = [p.frame() for p in pages]
    cells = [row for frame in frames for row in frame.to_numpy().tolist()]
    assert cells == _row_by_row(url, table)
    assert all(str(dtype) == "str" for frame in frames for dtype in frame.dtypes)
    assert pages[-1].cursor == {
        "columns": ["id", "name"],
        "after": [{"t": "int", "v": 4}, {"t": "str", "v": "O'Brien"}],
    }


def test_column_text_is_cell_text_for_every_kind_of_value():
    import datetime as dt
    import decimal

    columns = [
        ["a", None, "b"],
        [1, 2, None],
        [True, False, None],
        [dt.datetime(2026, 1, 2, 3, 4, 5, 6), None],
        [dt.date(2026, 1, 2)],
        [dt.time(1, 2, 3)],
        [decimal.Decimal("1.50"), None],
        [1.0, 2.5, None],
        [b"\x00\xff", None],
        ["x", 1, None],
        [None, None],
        [],
    ]
    for values in columns:
        assert column_text(values) == [cell_text(v) for v in values], values


def test_a_url_without_a_driver_takes_mysqlclient_when_installed_else_pymysql(monkeypatch):
    config = {"table": "t", "key_columns": ["id"], "cursor_column": "id"}
    try:
        import MySQLdb  # noqa: F401

        installed = "mysqldb"
    except ImportError:
        installed = "pymysql"
    assert mysql_driver() == installed
    for scheme in ("mysql", "mariadb"):
        engine = SqlConnector(config=config, secret=f"{scheme}://root@127.0.0.1:3306/test")._engine()
        assert engine.dialect.driver == installed
    named = SqlConnector(config=config, secret="mysql+pymysql://root@127.0.0.1:3306/test")._engine()
    assert named.dialect.driver == "pymysql"
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # as on a machine where it could not be built
    assert mysql_driver() == "pymysql"
    assert SqlConnector(config=config, secret="mysql://root@127.0.0.1/test")._engine().dialect.driver == "pymysql"


@pytest.mark.django_db(transaction=True)
def test_a_sync_over_mysqlclient_resumes_without_loss_or_duplicates(mariadb_erp, monkeypatch):
    _needs("mysql+mysqldb")
    mariadb_erp.insert(erp_rows(47))
    mariadb_erp.url = mariadb_erp.url.replace("mysql+pymysql", "mysql+mysqldb")
    connector = make_connector(mariadb_erp, page_size=10)
    real_pages = SqlConnector.pages

    def dies_after_two_pages(self, page_rows):  # noqa: ANN001, ANN202
        for n, page in enumerate(real_pages(self, page_rows)):
            if n == 2:
                raise ConnectionResetError("worker lost")
            yield page

    monkeypatch.setattr(SqlConnector, "pages", dies_after_two_pages)
    broken = sync(connector)
    assert broken.status == RunStatus.FAILED and broken.rows_done == 20
    monkeypatch.setattr(SqlConnector, "pages", real_pages)
    resumed = sync(Connector.objects.get(pk=connector.pk))
    assert (resumed.status, resumed.created, resumed.rows_done) == (RunStatus.COMPLETED, 27, 27), resumed.message
    record = SourceRecord.objects.get(source_key="E000007")
    assert record.normalized["full_name"] == "客户7" and record.raw["updated_at"] == "2026-01-01T08:00:02"
    assert_no_loss_or_duplicate(47)


def test_mysqlclient_reads_read_only_and_stops_at_the_statement_timeout(mariadb_erp):
    _needs("mysql+mysqldb")
    url = mariadb_erp.url.replace("mysql+pymysql", "mysql+mysqldb")
    kind = SqlConnector(
        config={"table": mariadb_erp.table, "key_columns": ["code"], "cursor_column": "id", "statement_timeout": 1},
        secret=url,
    )
    with pytest.raises(Exception, match="tried to write"):
        kind._read(f"INSERT INTO {mariadb_erp.table} (id, code) VALUES (999, 'X')", {})
    assert mariadb_erp.scalar("SELECT COUNT(*) FROM {t}_customers") == 0
    started = time.monotonic()
    with pytest.raises(Exception, match="in time"):
        kind._read("SELECT SLEEP(5) FROM DUAL", {})
    assert time.monotonic() - started < 4


def test_mysqlclient_fails_fast_on_a_closed_port_and_within_the_timeout_on_a_silent_server():
    _needs("mysql+mysqldb")
    config = {"table": "t", "key_columns": ["id"], "cursor_column": "id", "connect_timeout": 2}
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    started = time.monotonic()
    with pytest.raises(Exception, match="cannot be reached"):
        SqlConnector(config=config, secret=f"mysql+mysqldb://root@127.0.0.1:{port}/test").preview(1)
    assert time.monotonic() - started < 3
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) but never says a word
    try:
        started = time.monotonic()
        url = f"mysql+mysqldb://root:Sup3rSecret@127.0.0.1:{silent.getsockname()[1]}/test"
        with pytest.raises(Exception, match="in time") as refused:
            SqlConnector(config=config, secret=url).preview(1)
        assert time.monotonic() - started < 8 and "Sup3rSecret" not in str(refused.value)
    finally:
        silent.close()
