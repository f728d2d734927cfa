"""Webhooks: change events pushed to downstream systems.

Delivery is at least once and in order per customer. Each subscription has a cursor into
the change feed; ``webhooks_fan_out`` turns new events into ``WebhookDelivery`` rows and
``webhook_dispatch`` sends them. A dispatcher holds a short lease on its subscription, so
two workers never send the same subscription's events at once; a worker killed mid-send
leaves its deliveries unconfirmed and they are sent again (receivers dedupe by event id).
A customer's later event waits while an earlier one for the same customer is not
delivered, so a receiver never sees them out of order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Min
from django.utils import timezone

from accounts.policy import Policy, policy_for_role
from crmhub.choices import DeliveryStatus
from crmhub.models import ChangeEvent, WebhookDelivery, WebhookSubscription
from crmhub.outbox import event_changed_fields, event_values, outbox_sequence, related_ids

SIGNATURE_HEADER = "X-Crmhub-Signature"
TIMESTAMP_HEADER = "X-Crmhub-Timestamp"
EVENT_ID_HEADER = "X-Crmhub-Event-Id"
DELIVERY_HEADER = "X-Crmhub-Delivery"
UNDELIVERED = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``"<timestamp>." + body`` (see docs/webhooks.md)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_payload(subscription: WebhookSubscription, event: ChangeEvent, policy: Policy | None = None) -> dict:
    """The event as this subscription may receive it: fields chosen, masked by its role."""
    from accounts.crypto import unseal_values

    policy = policy or policy_for_role(subscription.role)
    data = unseal_values(event_values(event))
    wanted = set(subscription.fields) if subscription.fields else None
    values = {}
    for name, value in data.items():
        if name in policy.fields and policy(name) > 0 and (wanted is None or name in wanted):
            values[name] = policy.present(name, value)
    changed = [n for n in event_changed_fields(event) if n in values or (n in policy.fields and policy(n) > 0)]
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "cursor": event.position,
        "customer": event.customer_id,
        "changed_fields": changed if wanted is None else [n for n in changed if n in wanted],
        "data": values,
        "related": related_ids(event),
        "occurred_at": event.occurred_at,
    }


def webhooks_fan_out(subscription: WebhookSubscription, *, batch: int = 5000) -> int:
    """Create deliveries for feed events past the subscription's cursor; returns how many."""
    outbox_sequence()
    with transaction.atomic():
        sub = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        events = list(
            ChangeEvent.objects.filter(position__gt=sub.cursor)
            .order_by("position")
            .values_list("id", "position", "customer_id", "event_type")[:batch]
        )
        if not events:
            return 0
        wanted = set(sub.event_types)
        deliveries = [
            WebhookDelivery(subscription=sub, event_id=pk, position=pos, customer_id=customer_id)
            for pk, pos, customer_id, event_type in events
            if not wanted or event_type in wanted
        ]
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=2000)
        WebhookSubscription.objects.filter(pk=sub.pk).update(cursor=events[-1][1])
        subscription.cursor = events[-1][1]
        return len(deliveries)


def _claim(subscription_id: int, lease_seconds: int) -> WebhookSubscription | None:
    now = timezone.now()
    claimed = (
        WebhookSubscription.objects.filter(pk=subscription_id, is_active=True)
        .exclude(dispatch_lease_until__gt=now)
        .update(dispatch_lease_until=now + timedelta(seconds=lease_seconds))
    )
    return WebhookSubscription.objects.get(pk=subscription_id) if claimed else None


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: ~base·2^(n-1), capped, times a random 0.5–1.0."""
    base = settings.CRMHUB_WEBHOOK_BACKOFF_BASE_SECONDS
    cap = settings.CRMHUB_WEBHOOK_BACKOFF_MAX_SECONDS
    return min(cap, base * 2 ** max(attempts - 1, 0)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


def webhook_dispatch(subscription_id: int, *, time_budget: float = 20.0, batch: int = 500) -> dict[str, int]:
    """Send due deliveries of one subscription for up to ``time_budget`` seconds."""
    lease = int(time_budget + settings.CRMHUB_WEBHOOK_READ_TIMEOUT + 10)
    subscription = _claim(subscription_id, lease)
    if subscription is None:
        return {"sent": 0, "failed": 0}  # another worker is dispatching it, or it is disabled
    sent = failed = 0
    started = time.monotonic()
    policy = policy_for_role(subscription.role)
    timeout = httpx.Timeout(settings.CRMHUB_WEBHOOK_READ_TIMEOUT, connect=settings.CRMHUB_WEBHOOK_CONNECT_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            while time.monotonic() - started < time_budget and subscription.is_active:
                webhooks_fan_out(subscription)
                due = list(
                    WebhookDelivery.objects.filter(
                        subscription=subscription, status__in=UNDELIVERED, next_attempt_at__lte=timezone.now()
                    )
                    .select_related("event")
                    .order_by("position")[:batch]
                )
                if not due:
                    break
                first_open = dict(
                    WebhookDelivery.objects.filter(
                        subscription=subscription,
                        status__in=UNDELIVERED,
                        customer_id__in={d.customer_id for d in due},
                    )
                    .values_list("customer_id")
                    .annotate(first=Min("position"))
                )
                blocked: set[int] = set()
                delivered: list[WebhookDelivery] = []
                try:
                    for delivery in due:
                        # In order per customer: only the customer's earliest open delivery may go.
                        if delivery.customer_id in blocked or first_open.get(delivery.customer_id) != delivery.position:
                            continue
                        if _send(client, subscription, delivery, policy):
                            delivered.append(delivery)
                            first_open.pop(delivery.customer_id, None)
                        else:
                            failed += 1
                            blocked.add(delivery.customer_id)
                            if not subscription.is_active:
                                break
                        if time.monotonic() - started >= time_budget:
                            break
                finally:
                    # Successes are recorded per batch (one transaction, not one commit per event);
                    # if the worker dies first they are sent again, which at-least-once allows.
                    _record_delivered(subscription, delivered)
                sent += len(delivered)
                if not delivered:
                    break
    finally:
        WebhookSubscription.objects.filter(pk=subscription.pk).update(dispatch_lease_until=None)
    return {"sent": sent, "failed": failed}


def _send(client: httpx.Client, subscription: WebhookSubscription, delivery: WebhookDelivery, policy: Policy) -> bool:
    body = json.dumps(
        webhook_payload(subscription, delivery.event, policy), cls=DjangoJSONEncoder, ensure_ascii=False
    ).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "crmhub-webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(subscription.secret, timestamp, body),
        EVENT_ID_HEADER: str(delivery.event.event_id),
        DELIVERY_HEADER: str(delivery.pk),
    }
    started = time.monotonic()
    code: int | None = None
    error = ""
    try:
        response = client.post(subscription.url, content=body, headers=headers)
        code = response.status_code
        ok = 200 <= code < 300
        if not ok:
            error = f"HTTP {code}"
    except httpx.TimeoutException:
        ok, error = False, "timed out"
    except httpx.HTTPError as exc:
        ok, error = False, f"{exc.__class__.__name__}: connection failed"
    duration = int(1000 * (time.monotonic() - started))
    now = timezone.now()
    attempts = delivery.attempts + 1
    if ok:
        delivery.last_status_code, delivery.last_duration_ms = code, duration
        subscription.consecutive_failures = 0  # written with the batch's successes
        return True
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED,
        attempts=attempts,
        last_status_code=code,
        last_error=error[:300],
        last_duration_ms=duration,
        next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)),
    )
    subscription.consecutive_failures += 1
    updates: dict[str, Any] = {"consecutive_failures": subscription.consecutive_failures}
    if subscription.consecutive_failures >= settings.CRMHUB_WEBHOOK_DISABLE_AFTER_FAILURES:
        # Stop hammering a receiver that is down; nothing is lost, deliveries wait for re-enabling.
        subscription.is_active = False
        updates.update(
            is_active=False,
            disabled_reason=f"disabled after {subscription.consecutive_failures} failed attempts in a row "
            f"(last: {error})"[:300],
        )
    WebhookSubscription.objects.filter(pk=subscription.pk).update(**updates)
    return False


def _record_delivered(subscription: WebhookSubscription, delivered: list[WebhookDelivery]) -> None:
    """Mark a batch's successes in a few set-based updates (one per HTTP status code)."""
    if not delivered:
        return
    by_code: dict[int | None, list[WebhookDelivery]] = {}
    for delivery in delivered:
        by_code.setdefault(delivery.last_status_code, []).append(delivery)
    with transaction.atomic():
        for code, group in by_code.items():
            durations = sorted(d.last_duration_ms or 0 for d in group)
            WebhookDelivery.objects.filter(pk__in=[d.pk for d in group]).update(
                status=DeliveryStatus.DELIVERED,
                attempts=F("attempts") + 1,
                last_status_code=code,
                last_error="",
                last_duration_ms=durations[len(durations) // 2],
                delivered_at=timezone.now(),
            )
        WebhookSubscription.objects.filter(pk=subscription.pk).update(
            consecutive_failures=subscription.consecutive_failures
        )


def webhook_subscription_enable(*, subscription: WebhookSubscription) -> None:
    """Switch a subscription back on; its waiting deliveries are sent from where they stopped."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        is_active=True, consecutive_failures=0, disabled_reason=""
    )
    WebhookDelivery.objects.filter(subscription=subscription, status__in=UNDELIVERED).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
    )


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> None:
    """Send a delivery again, even one already delivered (manual redelivery)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now())
