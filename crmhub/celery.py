"""The Celery application.

Jobs (imports, dedup runs, syncs) keep their state in database rows, so the broker is the
only thing Celery needs. Each worker records a heartbeat row every few seconds: that works
with every broker, the serverless SQLite one included, and lets the command line say
"no worker is answering" instead of waiting forever.
"""
from __future__ import annotations

import os
import socket
import threading

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

app = Celery("crmhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class HeartbeatStep(bootsteps.StartStopStep):
    """Upsert this worker's WorkerHeartbeat row on a timer thread while it runs."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:  # noqa: ANN001, ANN003
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker) -> None:  # noqa: ANN001
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(worker.hostname,), daemon=True, name="heartbeat")
        self._thread.start()

    def stop(self, worker) -> None:  # noqa: ANN001
        self._stop.set()
        from crmhub.services import worker_heartbeat_clear

        try:
            worker_heartbeat_clear(hostname=worker.hostname)
        except Exception:  # noqa: BLE001 - the database may already be gone at shutdown
            pass

    def _run(self, hostname: str) -> None:
        from django.conf import settings
        from django.db import close_old_connections

        from crmhub.services import worker_heartbeat_beat

        interval = settings.CRMHUB_WORKER_HEARTBEAT_SECONDS
        while not self._stop.is_set():
            try:
                worker_heartbeat_beat(hostname=hostname, pid=os.getpid())
            except Exception:  # noqa: BLE001 - a missed beat is retried on the next tick
                pass
            finally:
                close_old_connections()
            self._stop.wait(interval)


app.steps["worker"].add(HeartbeatStep)
