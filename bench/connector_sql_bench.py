"""SQL connector benchmark: an incremental sync from MariaDB into crmhub on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_conn_bench CRMHUB_VAR_DIR=/tmp/connbench \
      /work/main/.venv/bin/python bench/connector_sql_bench.py --rows 100000 --compare-file

Fills ``test.bench_conn_customers`` in MariaDB (root@127.0.0.1, dropped afterwards), then measures,
from empty crmhub tables: (1) the connector alone reading every page (keyset pagination in
read-only transactions) into the pipeline's frames, (2) the first full sync through the import
pipeline (inline, the product path: connector pages -> cleaning -> upsert -> history -> change
log), (3) an incremental sync after 1 % of the rows changed (only those are read), and with
``--compare-file`` (4) a file import of the same rows (the connector's cells written to a CSV
first, not timed), from empty tables again: what a sync costs on top of the pipeline.

``--driver`` picks the MariaDB driver through the connector's URL: ``auto`` (``mysql://``: the
C driver mysqlclient when it is installed, else PyMySQL), ``mysqldb`` or ``pymysql``.
CPU seconds are given for this process (every thread), its PostgreSQL backends (its own
connection's and, with write lanes, every lane's: ``bench/lane_cpu.py``) and mariadbd (all on this
machine; on a shared machine wall time includes waiting for a core).
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

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.lane_cpu import install, lane_cpu  # noqa: E402
from bench.pg_settings import server_settings  # noqa: E402

install()

MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"  # filling and changing the table
DRIVER_URLS = {
    "auto": "mysql://root@127.0.0.1:3306/test",
    "mysqldb": "mysql+mysqldb://root@127.0.0.1:3306/test",
    "pymysql": MARIADB,
}
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
                "mobile VARCHAR(20), email VARCHAR(100), city VARCHAR(20), level VARCHAR(10), "
                "updated_at DATETIME(6) NOT NULL, "
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
    """CPU seconds (user + system) of this connection's PostgreSQL backend so far (same machine),
    and of the write lanes' backends that ended so far."""
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        pid = c.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + lane_cpu()


def mariadb_cpu() -> float:
    """CPU seconds (user + system) of the MariaDB server so far (0 when it is not on this machine)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split(" (", 1)[1].rsplit(")", 1)
        if name in ("mariadbd", "mysqld"):
            fields = rest.split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def own_cpu() -> float:
    """CPU seconds of this process, every thread (the pipeline reads ahead in a helper thread)."""
    times = os.times()
    return times.user + times.system


def measured(name: str, fn):  # noqa: ANN001, ANN201
    """Runs ``fn`` (returning the rows it handled) and the row of figures it cost."""
    started, cpu, db, maria = time.perf_counter(), own_cpu(), backend_cpu(), mariadb_cpu()
    rows = fn()
    return (
        name,
        rows,
        time.perf_counter() - started,
        own_cpu() - cpu,
        backend_cpu() - db,
        mariadb_cpu() - maria,
        os.getloadavg()[0],
    )


def export_csv(kind, page_size: int, path: Path, limit: int | None = None) -> int:  # noqa: ANN001
    """The rows as the connector hands them to the pipeline, as a CSV file."""
    import csv

    rows = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        for n, page in enumerate(kind.pages(page_size)):
            frame = page.frame()
            if n == 0:
                writer.writerow(list(frame.columns))
            writer.writerows(frame.itertuples(index=False, name=None))
            rows += len(frame)
            if limit is not None and rows >= limit:
                break
    return rows


def read_frames(kind, page_size: int) -> int:  # noqa: ANN001
    """What the connector adds to a sync: read every page and turn it into the pipeline's frame."""
    return sum(len(page.frame()) for page in kind.pages(page_size))


def file_import(path: Path, mapping: dict[str, str], source_code: str) -> int:
    """The product's file import (inline) of ``path``; the rows it handled."""
    from crmhub.services import source_get_or_create
    from imports.services import MappingPlan, file_run_from_path, import_run_execute

    source, _ = source_get_or_create(code=source_code)
    run = file_run_from_path(
        path=str(path),
        source=source,
        plan_for=lambda layout: MappingPlan(mapping=mapping, key_columns=["code"]),
        enqueue=False,
    )
    run = import_run_execute(run_id=run.pk)
    print(run.status, run.summary(), run.message, flush=True)
    return run.rows_done


def reset() -> None:
    with connection.cursor() as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        c.execute("DELETE FROM imports_connector")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=20_000)
    parser.add_argument("--driver", choices=sorted(DRIVER_URLS), default="auto")
    parser.add_argument("--compare-file", action="store_true", help="also import the same rows from a CSV file")
    parser.add_argument(
        "--file-first", action="store_true", help="with --compare-file: the file import before the syncs"
    )
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(server_settings(), flush=True)
    from crmhub.services import field_definitions_sync, source_get_or_create
    from imports.connectors.services import connector_create, connector_run_execute, connector_sync_request
    from imports.connectors.sql import SqlConnector

    field_definitions_sync()
    url = DRIVER_URLS[args.driver]
    started = time.perf_counter()
    fill(args.rows)
    print(f"filled MariaDB with {args.rows} rows in {time.perf_counter() - started:.1f}s", flush=True)
    config = {"table": TABLE, "key_columns": ["code"], "cursor_column": "updated_at", "page_size": args.page_size}
    mapping = {"name": "full_name", "mobile": "mobile", "email": "email", "city": "city"}
    kind = SqlConnector(config=config, secret=url)
    engine = kind._engine()
    driver = engine.dialect.driver
    engine.dispose()
    print(f"driver: {driver}", flush=True)
    if args.compare_file:
        # The first pipeline run of a process pays one-off costs (imports, lookup tables, the
        # backend's catalog caches): a small file import first keeps them out of both figures.
        warm = Path(os.environ.get("CRMHUB_VAR_DIR", "/tmp")) / f"{TABLE}_warm.csv"
        warm_rows = export_csv(kind, 1_000, warm, limit=1_000)
        file_import(warm, mapping, "bench-warm")
        warm.unlink()
        reset()
        print(f"warmed up with a file import of {warm_rows} rows", flush=True)
    results = [
        measured(
            "connector alone: every page read, as the pipeline's frames", lambda: read_frames(kind, args.page_size)
        )
    ]

    def compare_file() -> None:
        path = Path(os.environ.get("CRMHUB_VAR_DIR", "/tmp")) / f"{TABLE}.csv"
        exported = export_csv(SqlConnector(config=config, secret=url), args.page_size, path)
        reset()
        results.append(
            measured(
                f"file import of the same {exported:,} rows (CSV)", lambda: file_import(path, mapping, "bench-file")
            )
        )
        path.unlink()

    if args.compare_file and args.file_first:
        compare_file()
    reset()
    source, _ = source_get_or_create(code="bench-erp")
    connector = connector_create(source=source, name="bench", kind="sql", config=config, secret=url, mapping=mapping)

    def sync() -> int:
        connector.refresh_from_db()
        run = connector_run_execute(run_id=connector_sync_request(connector=connector, enqueue=False).pk)
        print(run.status, run.summary(), run.message, flush=True)
        return run.rows_done

    results.append(measured("first sync through the pipeline", sync))
    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {TABLE} SET level = 'vip', updated_at = '2027-01-01' WHERE id % 100 = 0"))
    engine.dispose()
    results.append(measured("incremental sync, 1 % changed", sync))

    if args.compare_file and not args.file_first:
        compare_file()

    print(
        f"\nrows {args.rows:,}, page size {args.page_size:,}, driver {driver}, "
        f"write lanes {settings.CRMHUB_IMPORT_WRITE_LANES}"
    )
    print("| measurement | rows | wall s | rows/s | CPU s process | CPU s PostgreSQL backend | CPU s mariadbd | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows, seconds, cpu, db, maria, load in results:
        print(
            f"| {name} | {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | {cpu:.1f} | {db:.1f} | {maria:.1f} "
            f"| {load:.1f} |"
        )
    print(f"load average at the end: {os.getloadavg()}")
    engine = create_engine(MARIADB)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


if __name__ == "__main__":
    main()
