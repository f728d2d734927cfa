"""Reads of connectors; each takes the acting user."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from crmhub.choices import AlertKind, AlertStatus
from crmhub.models import AlertEvent
from imports.connectors.services import user_may_manage_connectors
from imports.models import Connector


def connector_list(*, user) -> QuerySet[Connector]:  # noqa: ANN001
    qs = Connector.objects.select_related("source", "last_run", "schedule", "schedule__interval", "schedule__crontab")
    return qs if user_may_manage_connectors(user) else qs.none()


def connector_get(*, user, pk) -> Connector:  # noqa: ANN001
    try:
        pk = int(pk)
    except (TypeError, ValueError) as exc:
        raise Http404("No such connector") from exc
    connector = connector_list(user=user).filter(pk=pk).first()
    if connector is None:
        raise Http404("No such connector")
    return connector


def open_alerts(*, user) -> QuerySet[AlertEvent]:  # noqa: ANN001
    """Open "connector paused" alerts (crmhub's central alerts)."""
    qs = AlertEvent.objects.filter(status=AlertStatus.OPEN, rule__kind=AlertKind.CONNECTOR_PAUSED)
    return (qs if user_may_manage_connectors(user) else qs.none()).order_by("-opened_at")
