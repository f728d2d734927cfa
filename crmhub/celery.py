"""The Celery application.

Jobs (imports, dedup runs, syncs) keep their state in database rows, so the broker is the
only thing Celery needs. Each worker records a heartbeat row every few seconds (from a
spawned helper process, see crmhub.heartbeat): that works with every broker, the
serverless SQLite one included, and lets the command line say "no worker is answering"
instead of waiting forever.
"""

from __future__ import annotations

import multiprocessing
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

app = Celery("crmhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class HeartbeatStep(bootsteps.StartStopStep):
    """Run crmhub.heartbeat in a spawned process for as long as this worker runs."""

    def __init__(self, worker, **kwargs) -> None:  # noqa: ANN001, ANN003
        super().__init__(worker, **kwargs)
        self._process = None

    def start(self, worker) -> None:  # noqa: ANN001
        from django.conf import settings

        from crmhub import heartbeat

        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=heartbeat.run,
            args=(worker.hostname, os.getpid(), settings.CRMHUB_WORKER_HEARTBEAT_SECONDS),
            name="crmhub-heartbeat",
            daemon=True,
        )
        self._process.start()

    def stop(self, worker) -> None:  # noqa: ANN001
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        from crmhub.services import worker_heartbeat_clear

        try:
            worker_heartbeat_clear(hostname=worker.hostname)
        except Exception:  # noqa: BLE001 - the database may already be gone at shutdown
            pass


app.steps["worker"].add(HeartbeatStep)
