"""What each part of an import's database work costs: the hand-written set-based load of
bench/import_bench.py, run again and again with one more part taken away each time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_imp_bench \
      /work/main/.venv/bin/python bench/import_floor.py /tmp/imp_1m.csv [VARIANT ...]

The first line adds what the pipeline writes and the set-based load leaves out (a "created"
change-feed event per customer, the run's rollback log); every later line takes one more thing
away: the trigram search indexes, the customers' other secondary indexes, every table's
secondary indexes, the history rows, the foreign-key constraints. Each variant runs in its own
transaction on emptied tables (TRUNCATE, then DROP INDEX / DROP CONSTRAINT as the variant says)
and is rolled back, so the schema is never changed. The figure to read is the PostgreSQL
backend's CPU seconds: it is what the two cores have to give, whatever else runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.import_bench import TABLES, bare_copy, measured, reset, set_based  # noqa: E402  (sets Django up)
from bench.pg_settings import server_settings  # noqa: E402

WRITTEN = [
    "crmhub_customer",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_historicalsourcerecord",
    "crmhub_changeevent",
    "imports_importrunchange",
]


class Discard(Exception):
    """Raised to roll a variant back."""


def secondary_indexes(c, table: str, *, gin_only: bool = False) -> list[str]:  # noqa: ANN001
    """Indexes of ``table`` that back no constraint (not the primary key, not a unique constraint)."""
    c.execute(
        """
        SELECT i.relname FROM pg_index x
          JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_am a ON a.oid = i.relam
        WHERE t.relname = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
          AND (NOT %s OR a.amname = 'gin')
        ORDER BY 1""",
        [table, gin_only],
    )
    return [r[0] for r in c.fetchall()]


def foreign_keys(c, table: str) -> list[str]:  # noqa: ANN001
    c.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'", [table])
    return [r[0] for r in c.fetchall()]


def variant(path: str, *, extras: bool, drop: str, history: bool, fks: bool) -> tuple[float, int, float, int]:
    """One rolled-back set-based load; returns wall s, rows, PostgreSQL CPU s and indexes dropped."""
    from crmhub.services import source_get_or_create
    from imports.models import ImportRun

    result = {}
    try:
        with transaction.atomic(), connection.cursor() as c:
            c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            dropped = []
            for table in WRITTEN:
                if drop == "gin" and table == "crmhub_customer":
                    dropped += secondary_indexes(c, table, gin_only=True)
                elif drop == "all" or (drop == "customer" and table == "crmhub_customer"):
                    dropped += secondary_indexes(c, table)
            for name in dropped:
                c.execute(f'DROP INDEX "{name}"')
            if not fks:
                for table in WRITTEN:
                    for name in foreign_keys(c, table):
                        c.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            run_id = None
            if extras:
                source, _ = source_get_or_create(code="setbased")
                run_id = ImportRun.objects.create(source=source).pk
            # Foreign keys are checked at commit (deferred); make them count inside the measurement.
            (seconds, rows), _, db = measured(_load_and_check, path, history, run_id)
            result.update(seconds=seconds, rows=rows, db=db, dropped=len(dropped))
            raise Discard
    except Discard:
        pass
    return result["seconds"], result["rows"], result["db"], result["dropped"]


def _load_and_check(path: str, history: bool, run_id: int | None) -> tuple[float, int]:
    started = time.perf_counter()
    _, rows = set_based(path, history=history, run_id=run_id)
    with connection.cursor() as c:
        c.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return time.perf_counter() - started, rows


VARIANTS = [
    ("+ events and rollback log (the pipeline's writes)", dict(extras=True, drop="", history=True, fks=True)),
    ("same tables and indexes (issue's yardstick)", dict(extras=False, drop="", history=True, fks=True)),
    ("  without the 3 trigram GIN indexes", dict(extras=False, drop="gin", history=True, fks=True)),
    ("  customers: primary key only", dict(extras=False, drop="customer", history=True, fks=True)),
    ("  every table: primary key + unique only", dict(extras=False, drop="all", history=True, fks=True)),
    ("  and no history rows", dict(extras=False, drop="all", history=False, fks=True)),
    ("  and no foreign-key constraints", dict(extras=False, drop="all", history=False, fks=False)),
]


def main() -> None:
    path = sys.argv[1]
    # Optional variant numbers (0-based, in the order given) to run only those, e.g. "1 0".
    chosen = [VARIANTS[int(n)] for n in sys.argv[2:]] or VARIANTS
    if connection.vendor != "postgresql":
        sys.exit("Run the benchmark on PostgreSQL: set DATABASE_URL.")
    print(server_settings(), flush=True)
    call_command("migrate", verbosity=0)
    reset()
    print(f"{'set-based load':<52} {'rows':>9} {'idx dropped':>11} {'wall s':>7} {'rows/s':>8} {'CPU db':>7}")
    for name, options in chosen:
        seconds, rows, db, dropped = variant(path, **options)
        print(f"{name:<52} {rows:>9} {dropped:>11} {seconds:>7.1f} {rows / seconds:>8.0f} {db:>7.1f}", flush=True)
    (seconds, rows), _, db = measured(bare_copy, path)
    name = "plain COPY into a bare table (floor)"
    print(f"{name:<52} {rows:>9} {'':>11} {seconds:>7.1f} {rows / seconds:>8.0f} {db:>7.1f}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
