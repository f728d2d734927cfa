"""SQL connector benchmark: an incremental sync from MariaDB into crmhub on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_conn_bench CRMHUB_VAR_DIR=/tmp/connbench \
      /work/main/.venv/bin/python bench/connector_sql_bench.py --rows 100000

Fills ``test.bench_conn_customers`` in MariaDB (root@127.0.0.1, dropped afterwards), then measures,
from empty crmhub tables: (1) the connector alone reading every page (keyset pagination in
read-only transactions), (2) the first full sync through the import pipeline (inline, the
product path: connector pages -> cleaning -> upsert -> history -> change log), (3) an
incremental sync after 1 % of the rows changed (only those are read).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
# Measure as deployed: DEBUG would keep every SQL statement (with its parameters) in memory.
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"
TABLE = os.environ.get("BENCH_CONN_TABLE", "bench_conn_customers")  # another name keeps parallel runs apart
TABLES = [
    "imports_importrunissue",
    "imports_importrunchange",
    "imports_importrun",
    "crmhub_historicalsourcerecord",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_interaction",
    "crmhub_customer",
]


def fill(rows: int) -> None:
    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(
            text(
                f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, code VARCHAR(20) NOT NULL, name VARCHAR(50), "
                "mobile VARCHAR(20), email VARCHAR(100), city VARCHAR(20), level VARCHAR(10), updated_at DATETIME(6) NOT NULL, "
                "KEY cursor_key (updated_at, code))"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO {TABLE} SELECT seq, CONCAT('E', LPAD(seq, 8, '0')), "
                "CONCAT(ELT(1 + seq % 8, '张', '王', '李', '赵', '陈', '刘', '杨', '黄'), "
                "ELT(1 + (seq DIV 8) % 10, '伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋')), "
                "CONCAT('13', LPAD(seq, 9, '0')), CONCAT('u', seq, '@example.com'), "
                "ELT(1 + seq % 4, '上海', '北京', '广州', '深圳'), ELT(1 + seq % 3, 'gold', 'silver', 'basic'), "
                f"TIMESTAMP('2026-01-01') + INTERVAL (seq DIV 5) SECOND FROM seq_1_to_{rows}"
            )
        )
    engine.dispose()


def backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend so far (same machine)."""
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        pid = c.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset() -> None:
    with connection.cursor() as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        c.execute("DELETE FROM imports_connector")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=20_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from crmhub.services import field_definitions_sync, source_get_or_create
    from imports.connectors.services import connector_create, connector_run_execute, connector_sync_request
    from imports.connectors.sql import SqlConnector

    field_definitions_sync()
    started = time.perf_counter()
    fill(args.rows)
    print(f"filled MariaDB with {args.rows} rows in {time.perf_counter() - started:.1f}s", flush=True)
    config = {"table": TABLE, "key_columns": ["code"], "cursor_column": "updated_at", "page_size": args.page_size}
    results = []

    kind = SqlConnector(config=config, secret=MARIADB)
    started, cpu = time.perf_counter(), time.process_time()
    read = sum(len(p.rows) for p in kind.pages(args.page_size))
    results.append(
        ("connector alone: read every page", read, time.perf_counter() - started, time.process_time() - cpu, 0)
    )

    reset()
    source, _ = source_get_or_create(code="bench-erp")
    connector = connector_create(
        source=source,
        name="bench",
        kind="sql",
        config=config,
        secret=MARIADB,
        mapping={"name": "full_name", "mobile": "mobile", "email": "email", "city": "city"},
    )
    started, cpu, db = time.perf_counter(), time.process_time(), backend_cpu()
    run = connector_run_execute(run_id=connector_sync_request(connector=connector, enqueue=False).pk)
    results.append(
        (
            "first sync through the pipeline",
            run.rows_done,
            time.perf_counter() - started,
            time.process_time() - cpu,
            backend_cpu() - db,
        )
    )
    print(run.status, run.summary(), run.message, flush=True)

    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {TABLE} SET level = 'vip', updated_at = '2027-01-01' WHERE id % 100 = 0"))
    engine.dispose()
    connector.refresh_from_db()
    started, cpu, db = time.perf_counter(), time.process_time(), backend_cpu()
    run = connector_run_execute(run_id=connector_sync_request(connector=connector, enqueue=False).pk)
    results.append(
        (
            "incremental sync, 1 % changed",
            run.rows_done,
            time.perf_counter() - started,
            time.process_time() - cpu,
            backend_cpu() - db,
        )
    )
    print(run.status, run.summary(), flush=True)

    print("\n| measurement | rows | seconds | rows/s | CPU s (process) | CPU s (PostgreSQL backend) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows, seconds, cpu, db in results:
        print(f"| {name} | {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | {cpu:.1f} | {db:.1f} |")
    print(f"load average at the end: {os.getloadavg()}")
    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


if __name__ == "__main__":
    main()
