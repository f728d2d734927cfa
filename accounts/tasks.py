"""Celery tasks of access control: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accounts.export_request_generate", ignore_result=True, acks_late=True)
def export_request_generate_task(export_id: int) -> None:
    """Write the file of an approved export (idempotent: only an APPROVED request is written)."""
    from accounts.services import export_request_generate

    export_request_generate(export_id=export_id)


@shared_task(name="accounts.exports_expire", ignore_result=True)
def exports_expire_task() -> int:
    """Remove export files older than the retention period (beat, hourly)."""
    from accounts.services import exports_expire

    return exports_expire()
