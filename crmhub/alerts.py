"""Alerts: rules evaluated after each metrics run and periodically, notified without repeating.

``alerts_evaluate`` asks every active rule which subjects (a source, a source's field, a
webhook subscription, the review queue) currently meet its condition. A subject without an
open event gets one, and is notified once; an open event whose subject no longer meets the
condition is resolved. The partial unique constraint on (rule, subject) while open makes
the de-duplication hold even when two evaluations overlap. Messages carry figures and names
of sources and fields, never a customer's value.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from crmhub.choices import AlertKind, AlertStatus
from crmhub.models import AlertEvent, AlertRule, QualitySnapshot, Source, WebhookSubscription
from crmhub.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """A subject meeting a rule's condition now."""

    subject: str
    value: float | None
    message: str


def _latest_snapshots(metric: str, field: str, source: Source | None) -> list[QualitySnapshot]:
    latest = QualitySnapshot.objects.filter(metric=metric).aggregate(d=Max("date"))["d"]
    if latest is None:
        return []
    qs = QualitySnapshot.objects.filter(date=latest, metric=metric, field=field).select_related("source")
    if source is not None:
        qs = qs.filter(source=source)
    return list(qs)


def _metric_hits(rule: AlertRule) -> list[Hit]:
    below = rule.kind == AlertKind.METRIC_BELOW
    hits = []
    for snap in _latest_snapshots(rule.metric, rule.field, rule.source):
        if snap.value is None:
            continue
        if (snap.value < rule.threshold) if below else (snap.value > rule.threshold):
            where = snap.source.code if snap.source else _("all sources")
            subject = f"source:{snap.source.code if snap.source else '*'}|field:{rule.field}|metric:{rule.metric}"
            message = _("%(metric)s of %(field)s for %(where)s is %(value).4g (threshold %(threshold).4g)") % {
                "metric": rule.metric,
                "field": rule.field or "-",
                "where": where,
                "value": snap.value,
                "threshold": rule.threshold,
            }
            hits.append(Hit(subject, snap.value, message))
    return hits


def _no_sync_hits(rule: AlertRule) -> list[Hit]:
    """Sources without a successful import or sync (or a record seen) for ``threshold`` hours,
    computed live rather than from the day's snapshot so that a stalled source is noticed
    within minutes."""
    from imports.choices import RunStatus
    from imports.models import ImportRun

    now = timezone.now()
    sources = Source.objects.filter(is_active=True)
    if rule.source_id:
        sources = sources.filter(pk=rule.source_id)
    source_ids = list(sources.values_list("pk", "code"))
    last_run = dict(
        ImportRun.objects.filter(
            status=RunStatus.COMPLETED,
            dry_run=False,
            finished_at__isnull=False,
            source_id__in=[pk for pk, _c in source_ids],
        )
        .values_list("source_id")
        .annotate(last=Max("finished_at"))
    )
    from crmhub.models import SourceRecord

    last_seen = dict(
        SourceRecord.objects.filter(source_id__in=[pk for pk, _c in source_ids])
        .values_list("source_id")
        .annotate(last=Max("last_seen_at"))
    )
    hits = []
    for pk, code in source_ids:
        moments = [m for m in (last_run.get(pk), last_seen.get(pk)) if m is not None]
        hours = (now - max(moments)).total_seconds() / 3600 if moments else None
        if hours is None or hours > rule.threshold:
            message = (
                _("source %(code)s has never synced") % {"code": code}
                if hours is None
                else _("source %(code)s has not synced for %(hours).1f hours") % {"code": code, "hours": hours}
            )
            hits.append(Hit(f"source:{code}", hours, message))
    return hits


def _backlog_hits(rule: AlertRule) -> list[Hit]:
    from dedup.choices import CandidateStatus
    from dedup.models import MatchCandidate

    pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count()
    if pending > rule.threshold:
        message = _("%(n)d match candidates await review (threshold %(t)d)") % {"n": pending, "t": rule.threshold}
        return [Hit("review_backlog", float(pending), message)]
    return []


def _webhook_hits(rule: AlertRule) -> list[Hit]:
    return [
        Hit(f"webhook:{pk}", None, _("webhook subscription %(name)s is disabled") % {"name": name})
        for pk, name in WebhookSubscription.objects.filter(is_active=False).values_list("pk", "name")
    ]


def _connector_hits(rule: AlertRule) -> list[Hit]:
    from imports.models import Connector

    paused = Connector.objects.filter(is_enabled=False).exclude(paused_reason="")
    return [
        Hit(f"connector:{pk}", None, _("connector %(name)s is paused: %(reason)s") % {"name": name, "reason": reason})
        for pk, name, reason in paused.values_list("pk", "name", "paused_reason")
    ]


CHECKS = {
    AlertKind.METRIC_BELOW: _metric_hits,
    AlertKind.METRIC_ABOVE: _metric_hits,
    AlertKind.NO_SYNC: _no_sync_hits,
    AlertKind.BACKLOG_ABOVE: _backlog_hits,
    AlertKind.WEBHOOK_DISABLED: _webhook_hits,
    AlertKind.CONNECTOR_PAUSED: _connector_hits,
}


def alert_rule_evaluate(rule: AlertRule) -> tuple[list[AlertEvent], int]:
    """Open events for new hits of ``rule`` and resolve those that cleared; returns the
    events opened (already notified) and the number resolved."""
    hits = {h.subject: h for h in CHECKS[rule.kind](rule)}
    opened: list[AlertEvent] = []
    now = timezone.now()
    with transaction.atomic():
        open_subjects = set(
            AlertEvent.objects.filter(rule=rule, status=AlertStatus.OPEN).values_list("subject", flat=True)
        )
        resolved = AlertEvent.objects.filter(
            rule=rule, status=AlertStatus.OPEN, subject__in=open_subjects - hits.keys()
        ).update(status=AlertStatus.RESOLVED, resolved_at=now)
    for subject, hit in hits.items():
        if subject in open_subjects:
            continue  # still true: already told
        try:
            with transaction.atomic():
                event = AlertEvent.objects.create(
                    rule=rule, subject=subject[:200], value=hit.value, message=hit.message[:500], opened_at=now
                )
        except IntegrityError:
            continue  # an overlapping evaluation opened it first
        alert_event_notify(event)
        opened.append(event)
    return opened, resolved


def alerts_evaluate(*, kind: str | None = None) -> dict[str, int]:
    """Every active rule (or those of one ``kind``), each on its own: one failing rule does
    not stop the others. Parts of crmhub that change a watched state (a connector pausing)
    evaluate their kind at once instead of waiting for the schedule."""
    opened = resolved = failed = 0
    rules = AlertRule.objects.filter(is_active=True).select_related("source")
    if kind is not None:
        rules = rules.filter(kind=kind)
    for rule in rules:
        try:
            events, n = alert_rule_evaluate(rule)
        except Exception:
            logger.exception("alert rule %s could not be evaluated", rule.pk)
            failed += 1
            continue
        opened += len(events)
        resolved += n
    return {"opened": opened, "resolved": resolved, "failed": failed}


def alert_payload(event: AlertEvent) -> dict:
    rule = event.rule
    return {
        "alert_id": event.pk,
        "rule": rule.name,
        "kind": rule.kind,
        "subject": event.subject,
        "status": event.status,
        "value": event.value,
        "message": event.message,
        "opened_at": event.opened_at.isoformat(),
    }


def alert_event_notify(event: AlertEvent) -> None:
    """E-mail the rule's recipients and POST to its webhook; failures are recorded on the
    event (and logged without the URL), never raised: the alert itself stays open."""
    rule = event.rule
    errors: list[str] = []
    if rule.recipients:
        try:
            send_mail(
                subject=f"[crmhub] {rule.name}: {event.message}"[:200],
                message=f"{event.message}\n\n{rule.name} ({rule.get_kind_display()}) - {event.subject}",
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=rule.recipients,
            )
        except Exception as exc:  # noqa: BLE001 - any mail failure is recorded, not raised
            errors.append(f"email: {type(exc).__name__}")
    if rule.webhook_url:
        body = json.dumps(alert_payload(event), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp)}
        if rule.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(rule.webhook_secret, timestamp, body)
        try:
            timeout = httpx.Timeout(
                settings.CRMHUB_WEBHOOK_READ_TIMEOUT, connect=settings.CRMHUB_WEBHOOK_CONNECT_TIMEOUT
            )
            response = httpx.post(rule.webhook_url, content=body, headers=headers, timeout=timeout)
            if response.status_code >= 300:
                errors.append(f"webhook: HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            errors.append(f"webhook: {type(exc).__name__}")
    if errors:
        logger.warning("alert %s notification failed: %s", event.pk, "; ".join(errors))
    AlertEvent.objects.filter(pk=event.pk).update(notified_at=timezone.now(), notify_errors=errors)
    event.notify_errors = errors
