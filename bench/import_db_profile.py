"""Where the import pipeline's PostgreSQL CPU goes, statement by statement.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_bench \
      /work/main/.venv/bin/python bench/import_db_profile.py /tmp/imp_100k.csv

Runs the pipeline once (as bench/import_bench.py does, from empty tables) with an execute wrapper
that reads the CPU time of this connection's backend (``/proc/<pid>/schedstat``, nanoseconds)
before and after every statement, and prints the statements by total backend CPU. With ``--explain`` it also prints the
plans (EXPLAIN ANALYZE, from auto_explain) of the first statements that took over 300 ms. COPY does not
go through the execute wrapper: what the backend spent outside the wrapped statements is shown
as "COPY and other", which is mostly the COPY streams (customers, staging rows, issues).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.import_bench import pipeline, reset  # noqa: E402


def _backend_pid() -> int:
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        return c.fetchone()[0]


def _cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


_SHAPE = re.compile(r"\s+")


def _shape(sql: str) -> str:
    """The statement's kind: its first words, whitespace folded, values left out."""
    text = _SHAPE.sub(" ", sql).strip()
    text = re.sub(r"'[^']*'|\b\d+\b", "?", text)
    return text[:150]


def main() -> None:
    path = sys.argv[1]
    if connection.vendor != "postgresql":
        sys.exit("Run on PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    reset()
    pid = _backend_pid()
    plans: list[str] = []
    if "--explain" in sys.argv:
        # The plans (with row counts and times) of statements over 300 ms, sent to this client.
        with connection.cursor() as c:
            c.execute("LOAD 'auto_explain'")
            c.execute("SET auto_explain.log_min_duration = 300")
            c.execute("SET auto_explain.log_analyze = on")
            c.execute("SET auto_explain.log_level = notice")
        connection.connection.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    def wrapper(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        before = _cpu_ns(pid)
        try:
            return execute(sql, params, many, context)
        finally:
            entry = totals[_shape(sql)]
            entry[0] += (_cpu_ns(pid) - before) / 1e9
            entry[1] += 1

    start_cpu, started = _cpu_ns(pid), time.perf_counter()
    with connection.execute_wrapper(wrapper):
        seconds, rows, summary = pipeline(path)
    total = (_cpu_ns(pid) - start_cpu) / 1e9
    if _backend_pid() != pid:
        sys.exit("The connection was replaced during the run: figures are incomplete.")
    wrapped = sum(v[0] for v in totals.values())
    print(f"pipeline: {rows} rows in {seconds:.1f} s ({time.perf_counter() - started:.1f} s); {summary}")
    print(f"backend CPU {total:.2f} s, of which wrapped statements {wrapped:.2f} s")
    print(f"{'CPU s':>7} {'calls':>6}  statement")
    for shape, (cpu, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:25]:
        print(f"{cpu:>7.2f} {calls:>6}  {shape}")
    print(f"{total - wrapped:>7.2f} {'':>6}  COPY and other (not through the execute wrapper)")
    for plan in plans[:6]:
        print(plan)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
