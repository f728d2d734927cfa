from __future__ import annotations

import time

import pytest
from django.test import Client

from crmhub.choices import AlertKind
from crmhub.models import AlertEvent, AlertRule, QualitySnapshot
from tests.factories import SourceRecordFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_computes_the_snapshot_and_evaluates_alerts_on_a_real_worker(live_worker, steward):
    SourceRecordFactory(normalized={"mobile": "12345"}, flags={"mobile": "not a valid phone number"})
    AlertRule.objects.create(
        name="mobile validity",
        kind=AlertKind.METRIC_BELOW,
        metric="validity",
        field="mobile",
        threshold=0.95,
        email_to="ops@example.com",
    )
    client = Client()
    client.force_login(steward)
    assert client.post("/quality/run/").status_code == 302  # queued after commit, run by the worker
    deadline = time.monotonic() + 60
    while AlertEvent.objects.filter(notified_at__isnull=False).count() < 2:  # the source's and all sources'
        assert time.monotonic() < deadline, "the worker did not compute the metrics and alerts in 60 s"
        time.sleep(0.3)
    assert QualitySnapshot.objects.filter(metric="validity", field="mobile", source__isnull=True, value=0).exists()
    assert [e.notify_errors for e in AlertEvent.objects.all()] == [[], []]
