"""Celery tasks of the imports app: thin, they receive ids and call services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="imports.run", ignore_result=True, acks_late=True)
def import_run_task(run_id: int) -> None:
    from imports.services import import_run_execute

    import_run_execute(run_id=run_id)


@shared_task(name="imports.rollback", ignore_result=True)
def import_run_rollback_task(run_id: int) -> None:
    from imports.services import import_run_rollback_execute

    import_run_rollback_execute(run_id=run_id)


@shared_task(name="imports.connector_run", ignore_result=True, acks_late=True)
def connector_run_task(run_id: int) -> None:
    from imports.connectors.services import connector_run_execute

    connector_run_execute(run_id=run_id)


@shared_task(name="imports.connector_sync", ignore_result=True)
def connector_sync_task(connector_id: int) -> None:
    """Scheduled by django-celery-beat (and by the retry after a failure): request a sync and run it."""
    from imports.connectors.services import connector_sync_scheduled

    connector_sync_scheduled(connector_id=connector_id)


@shared_task(name="imports.run_match", ignore_result=True, acks_late=True)
def import_run_match_task(run_id: int) -> None:
    """Real-time matching of a pushed batch's new records, off the request (see imports.connectors.push)."""
    from imports.models import ImportRun
    from imports.services import import_run_match

    run = ImportRun.objects.filter(pk=run_id).select_related("source", "created_by").first()
    if run is not None and not run.log:  # matched once; a redelivered message does nothing
        import_run_match(run=run)
