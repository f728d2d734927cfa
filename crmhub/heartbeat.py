"""The worker heartbeat, written by a small process of its own.

Not a thread of the worker: the prefork pool forks children from the worker's main
process, and a fork taken while a thread holds SQLite's (or libpq's) internal locks leaves
the child deadlocked on its first query. A spawned process shares no such state.
"""

from __future__ import annotations

import os
import time


def run(hostname: str, worker_pid: int, interval: float) -> None:
    """Beat every ``interval`` seconds until the worker process goes away."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
    django.setup()
    from django.db import close_old_connections

    from crmhub.services import worker_heartbeat_beat, worker_heartbeat_clear

    try:
        while os.getppid() == worker_pid:
            try:
                worker_heartbeat_beat(hostname=hostname, pid=worker_pid)
            except Exception:  # noqa: BLE001 - a missed beat is retried on the next tick
                close_old_connections()
            time.sleep(interval)
    finally:
        try:
            worker_heartbeat_clear(hostname=hostname)
        except Exception:  # noqa: BLE001 - the database may be gone at shutdown
            pass
