"""Celery tasks of the core app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="crmhub.probe", ignore_result=True)
def probe(nonce: str) -> None:
    """Record ``nonce`` on the executing worker's heartbeat row (a round-trip check)."""
    from celery import current_task

    from crmhub.services import worker_probe_record

    worker_probe_record(hostname=current_task.request.hostname or "", nonce=nonce)


@shared_task(name="crmhub.webhook_dispatch", ignore_result=True, acks_late=True)
def webhook_dispatch(subscription_id: int) -> None:
    from crmhub.webhooks import webhook_dispatch as dispatch

    dispatch(subscription_id)


@shared_task(name="crmhub.webhooks_dispatch_all", ignore_result=True)
def webhooks_dispatch_all() -> None:
    """Beat: one dispatch task per active subscription (each holds its own lease)."""
    from crmhub.models import WebhookSubscription

    for pk in WebhookSubscription.objects.filter(is_active=True).values_list("pk", flat=True):
        webhook_dispatch.delay(pk)


@shared_task(name="crmhub.quality_metrics_run", ignore_result=True, time_limit=900, soft_time_limit=840)
def quality_metrics_run() -> None:
    """Beat (daily) and the dashboard's button: today's snapshot, then the alert rules."""
    from crmhub.alerts import alerts_evaluate
    from crmhub.quality import quality_snapshot_take

    quality_snapshot_take()
    alerts_evaluate()


@shared_task(name="crmhub.alerts_evaluate", ignore_result=True, time_limit=300)
def alerts_evaluate() -> None:
    """Beat: evaluate the alert rules between metrics runs (syncs, backlog, webhooks)."""
    from crmhub.alerts import alerts_evaluate as evaluate

    evaluate()
