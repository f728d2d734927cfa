"""Waiting for Celery work from the command line.

Commands enqueue a job and poll its database row. If no worker has checked in (see
``WorkerHeartbeat``) they say so within seconds instead of hanging.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from crmhub.selectors import workers_alive

T = TypeVar("T")


class NoWorkerError(RuntimeError):
    """No Celery worker is answering."""

    def __init__(self, waited: float) -> None:
        super().__init__(
            f"No Celery worker is answering (waited {waited:.0f} s for a heartbeat). Start one with "
            f"`make worker` (or `celery -A crmhub worker`), or run the work in this process with --inline."
        )


def wait_for_worker(timeout: float | None = None) -> None:
    """Return once a worker is alive; raise NoWorkerError after ``timeout`` seconds."""
    timeout = settings.CRMHUB_WORKER_WAIT_SECONDS if timeout is None else timeout
    started = time.monotonic()
    while not workers_alive():
        if time.monotonic() - started >= timeout:
            raise NoWorkerError(time.monotonic() - started)
        time.sleep(0.5)


def wait_until(
    load: Callable[[], T],
    done: Callable[[T], bool],
    *,
    poll: float = 0.5,
    on_progress: Callable[[T], None] | None = None,
) -> T:
    """Poll ``load()`` until ``done``; if every worker disappears meanwhile, raise NoWorkerError."""
    last_worker_seen = time.monotonic()
    while True:
        obj = load()
        if done(obj):
            return obj
        if on_progress is not None:
            on_progress(obj)
        if workers_alive():
            last_worker_seen = time.monotonic()
        elif time.monotonic() - last_worker_seen > settings.CRMHUB_WORKER_WAIT_SECONDS:
            raise NoWorkerError(time.monotonic() - last_worker_seen)
        time.sleep(poll)
