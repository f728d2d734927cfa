"""A fixture ERP schema on the machine's real MariaDB and PostgreSQL servers.

Each test gets its own tables (a unique prefix) in MariaDB's database ``test`` and in the
PostgreSQL database ``crmhub_conn_erp`` (created on first use), dropped afterwards."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

MARIADB_URL = os.environ.get("CRMHUB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_SERVER = os.environ.get("CRMHUB_TEST_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/")
PG_ERP_DB = "crmhub_conn_erp"

CUSTOMERS = """CREATE TABLE {t}_customers (
    id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, name VARCHAR(100), mobile VARCHAR(30),
    id_card VARCHAR(30), city VARCHAR(50), note VARCHAR(200), region_id INTEGER, updated_at TIMESTAMP(6) NULL
)"""
REGIONS = "CREATE TABLE {t}_regions (id INTEGER PRIMARY KEY, region_name VARCHAR(50))"
BASE = dt.datetime(2026, 1, 1, 8, 0, 0)


def erp_rows(n: int, start: int = 1, at: dt.datetime = BASE) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "id": i,
                "code": f"E{i:06d}",
                "name": f"客户{i}",
                "mobile": f"138{i:08d}",
                "id_card": "",
                "city": "上海",
                "note": f"n{i}",
                "region_id": 1 + i % 2,
                # several rows share a timestamp, so the key breaks ties in the keyset
                "updated_at": at + dt.timedelta(seconds=i // 3),
            }
        )
    return rows


class Erp:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.engine = create_engine(url)
        self.prefix = f"crmhub_t{uuid.uuid4().hex[:8]}"

    def execute(self, sql: str, params=None) -> None:  # noqa: ANN001
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(text(sql.format(t=self.prefix)), params or {})

    def scalar(self, sql: str):  # noqa: ANN201
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(sql.format(t=self.prefix))).scalar()

    def create(self) -> None:
        self.execute(CUSTOMERS)
        self.execute(REGIONS)
        self.execute("INSERT INTO {t}_regions VALUES (1, '华东'), (2, '华南')")
        self.execute(f"CREATE INDEX {self.prefix}_cursor ON {self.prefix}_customers (updated_at, code)")

    def insert(self, rows: list[dict]) -> None:
        if rows:
            self.execute(
                "INSERT INTO {t}_customers (id, code, name, mobile, id_card, city, note, region_id, updated_at) "
                "VALUES (:id, :code, :name, :mobile, :id_card, :city, :note, :region_id, :updated_at)",
                rows,
            )

    def drop(self) -> None:
        for table in ("customers", "regions"):
            self.execute(f"DROP TABLE IF EXISTS {{t}}_{table}")
        self.engine.dispose()

    @property
    def table(self) -> str:
        return f"{self.prefix}_customers"


def _reachable(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"the database server for the connector tests is not running ({type(exc).__name__}); "
            "start it as DESIGN.md says"
        )
    finally:
        engine.dispose()


def mariadb_tables() -> Erp:
    """Fresh fixture tables in MariaDB; the caller drops them (``Erp.drop``)."""
    _reachable(MARIADB_URL)
    erp = Erp(MARIADB_URL)
    erp.create()
    return erp


@pytest.fixture
def mariadb_erp():  # noqa: ANN201
    erp = mariadb_tables()
    yield erp
    erp.drop()


def _pg_erp_url() -> str:
    from sqlalchemy import create_engine, text

    _reachable(PG_SERVER + "postgres")
    admin = create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": PG_ERP_DB}).scalar():
            try:
                conn.execute(text(f'CREATE DATABASE "{PG_ERP_DB}"'))
            except Exception:  # noqa: BLE001, S110 - created meanwhile by a parallel run
                pass
    admin.dispose()
    return PG_SERVER + PG_ERP_DB


@pytest.fixture
def pg_erp():  # noqa: ANN201
    erp = Erp(_pg_erp_url())
    erp.create()
    yield erp
    erp.drop()
