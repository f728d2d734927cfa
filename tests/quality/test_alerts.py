from __future__ import annotations

import http.server
import json
import threading
from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from crmhub.alerts import alerts_evaluate
from crmhub.choices import AlertKind, AlertStatus
from crmhub.models import AlertEvent, AlertRule, QualitySnapshot, WebhookSubscription
from crmhub.quality import quality_snapshot_take
from crmhub.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

pytestmark = pytest.mark.django_db
SECRET = "alert-secret-1"


class Receiver:
    """A local HTTP server that records what it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():  # noqa: ANN201
    r = Receiver()
    yield r
    r.close()


def set_validity(source, value: float) -> None:  # noqa: ANN001
    QualitySnapshot.objects.update_or_create(
        date=date.today(),
        source=source,
        field="mobile",
        metric="validity",
        defaults={"value": value, "numerator": int(value * 100), "denominator": 100},
    )


def test_it_fires_once_while_true_and_again_after_resolving_and_recurring(quality_world, receiver):
    w = quality_world
    rule = AlertRule.objects.create(
        name="crm mobile validity",
        kind=AlertKind.METRIC_BELOW,
        metric="validity",
        field="mobile",
        source=w.crm,
        threshold=0.95,
        email_to="steward@example.com, ops@example.com",
        webhook_url=receiver.url,
        webhook_secret=SECRET,
    )
    set_validity(w.crm, 0.90)
    assert alerts_evaluate()["opened"] == 1
    assert alerts_evaluate()["opened"] == 0  # still true: no repeat
    assert alerts_evaluate()["opened"] == 0
    (event,) = AlertEvent.objects.filter(rule=rule)
    assert event.status == AlertStatus.OPEN and event.value == pytest.approx(0.90)
    assert len(mail.outbox) == 1 and len(receiver.requests) == 1
    assert mail.outbox[0].to == ["steward@example.com", "ops@example.com"]
    assert "crm" in mail.outbox[0].subject

    set_validity(w.crm, 0.99)
    assert alerts_evaluate() == {"opened": 0, "resolved": 1, "failed": 0}
    event.refresh_from_db()
    assert event.status == AlertStatus.RESOLVED and event.resolved_at is not None

    set_validity(w.crm, 0.50)
    assert alerts_evaluate()["opened"] == 1
    assert AlertEvent.objects.filter(rule=rule).count() == 2
    assert AlertEvent.objects.filter(rule=rule, status=AlertStatus.OPEN).count() == 1
    assert len(mail.outbox) == 2 and len(receiver.requests) == 2


def test_it_signs_the_webhook_like_change_events(quality_world, receiver):
    w = quality_world
    AlertRule.objects.create(
        name="backlog", kind=AlertKind.BACKLOG_ABOVE, threshold=0, webhook_url=receiver.url, webhook_secret=SECRET
    )
    alerts_evaluate()
    ((headers, body),) = receiver.requests
    assert headers[SIGNATURE_HEADER] == sign(SECRET, int(headers[TIMESTAMP_HEADER]), body)
    payload = json.loads(body)
    assert payload["rule"] == "backlog" and payload["subject"] == "review_backlog" and payload["value"] == 1
    assert AlertEvent.objects.get().notify_errors == []
    assert w.c1.mobile not in body.decode()


def test_it_records_a_failed_notification_and_keeps_the_alert(quality_world):
    failing = Receiver(status=500)
    try:
        AlertRule.objects.create(name="backlog", kind=AlertKind.BACKLOG_ABOVE, threshold=0, webhook_url=failing.url)
        assert alerts_evaluate()["opened"] == 1
    finally:
        failing.close()
    event = AlertEvent.objects.get()
    assert event.status == AlertStatus.OPEN and event.notify_errors == ["webhook: HTTP 500"]


def test_it_alerts_on_a_source_without_a_sync_and_on_a_disabled_webhook(quality_world):
    w = quality_world
    AlertRule.objects.create(name="stale", kind=AlertKind.NO_SYNC, threshold=5, email_to="ops@example.com")
    sub = WebhookSubscription.objects.create(name="erp", url="http://127.0.0.1:9/", secret="s")
    AlertRule.objects.create(name="hooks", kind=AlertKind.WEBHOOK_DISABLED, email_to="ops@example.com")
    alerts_evaluate()
    # crm was last seen 10 hours ago; shop synced 2 hours ago.
    assert list(AlertEvent.objects.filter(rule__name="stale").values_list("subject", flat=True)) == ["source:crm"]
    assert not AlertEvent.objects.filter(rule__name="hooks").exists()
    WebhookSubscription.objects.filter(pk=sub.pk).update(is_active=False, disabled_reason="25 failures")
    alerts_evaluate()
    hooks = AlertEvent.objects.filter(rule__name="hooks")
    assert list(hooks.values_list("subject", flat=True)) == [f"webhook:{sub.pk}"]
    w.crm.records.update(last_seen_at=timezone.now() - timedelta(hours=1))
    alerts_evaluate()
    assert AlertEvent.objects.get(rule__name="stale").status == AlertStatus.RESOLVED


def test_it_evaluates_a_rule_for_every_source_from_a_real_metrics_run(quality_world):
    w = quality_world
    AlertRule.objects.create(
        name="mobile validity", kind=AlertKind.METRIC_BELOW, metric="validity", field="mobile", threshold=0.95
    )
    quality_snapshot_take(now=w.now)
    alerts_evaluate()
    subjects = set(AlertEvent.objects.values_list("subject", flat=True))
    # crm 2/3 and all sources 4/5 are below 95 %; shop 2/2 is not.
    assert subjects == {"source:crm|field:mobile|metric:validity", "source:*|field:mobile|metric:validity"}


def test_it_refuses_a_rule_that_cannot_work(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="metric"):
        AlertRule(name="x", kind=AlertKind.METRIC_BELOW, metric="validty", email_to="a@example.com").full_clean()
    with pytest.raises(ValidationError, match="not an e-mail address"):
        AlertRule(name="x", kind=AlertKind.BACKLOG_ABOVE, email_to="a@example.com, nobody").full_clean()
    with pytest.raises(ValidationError, match="webhook URL"):
        AlertRule(name="x", kind=AlertKind.BACKLOG_ABOVE).full_clean()
    AlertRule(
        name="x",
        kind=AlertKind.METRIC_BELOW,
        metric="validity",
        field="mobile",
        threshold=0.95,
        email_to="a@example.com",
    ).full_clean()


def test_it_alerts_once_on_a_paused_connector_and_resolves_when_it_runs_again(quality_world):
    from imports.models import Connector

    w = quality_world
    AlertRule.objects.create(name="connectors", kind=AlertKind.CONNECTOR_PAUSED, email_to="ops@example.com")
    connector = Connector.objects.create(source=w.crm, name="erp", kind="sql", secret="sqlite://")
    alerts_evaluate()
    assert not AlertEvent.objects.exists()
    Connector.objects.filter(pk=connector.pk).update(is_enabled=False, paused_reason="Paused after 3 failed syncs")
    alerts_evaluate()
    alerts_evaluate()  # still paused: no second alert
    (event,) = AlertEvent.objects.filter(rule__name="connectors")
    assert event.subject == f"connector:{connector.pk}" and "Paused after 3" in event.message
    Connector.objects.filter(pk=connector.pk).update(is_enabled=True, paused_reason="")
    alerts_evaluate()
    event.refresh_from_db()
    assert event.status == AlertStatus.RESOLVED
