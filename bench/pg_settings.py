"""The PostgreSQL server settings a benchmark ran with, printed beside its figures.

The figures in BENCHMARKS.md are measured on the machine's PostgreSQL 15 with the memory and
checkpoint settings of docs/scaling.md applied (Debian's defaults — 128 MB of shared buffers, a
checkpoint every 1 GB of WAL — make every large load pay for evicting pages and for full-page
writes after each checkpoint). To apply them on a new machine (needs a restart):

    psql -U postgres -h 127.0.0.1 -f bench/pg_settings.sql
    pg_ctlcluster --skip-systemctl-redirect 15 main restart
"""

from __future__ import annotations

SHOWN = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
)


def server_settings() -> str:
    """One line: the settings above as the server reports them (empty on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", [list(SHOWN)])
        found = dict(cursor.fetchall())
    return "PostgreSQL settings: " + ", ".join(f"{name}={found.get(name, '?')}" for name in SHOWN)
