"""Celery tasks of the core app: thin wrappers around services."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="crmhub.probe", ignore_result=True)
def probe(nonce: str) -> None:
    """Record ``nonce`` on the executing worker's heartbeat row (a round-trip check)."""
    from celery import current_task

    from crmhub.services import worker_probe_record

    worker_probe_record(hostname=current_task.request.hostname or "", nonce=nonce)
