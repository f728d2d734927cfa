"""The round trip through the broker to a real Celery worker and back into the database."""

from __future__ import annotations

import time

import pytest

from crmhub.health import check_worker_roundtrip
from crmhub.jobs import NoWorkerError, wait_for_worker
from crmhub.models import WorkerHeartbeat


@pytest.mark.integration
def test_it_runs_a_task_on_a_real_worker_and_sees_its_write(live_worker):
    result = check_worker_roundtrip(timeout=30)
    assert result["ok"], result
    assert result["worker"].startswith("test-worker-")
    assert WorkerHeartbeat.objects.filter(hostname=result["worker"], pid__gt=0).exists()


@pytest.mark.integration
def test_it_reports_the_worker_round_trip_in_the_deep_health_check(live_worker, client):
    body = client.get("/healthz", {"deep": "1"}).json()
    assert body["workers"], body
    assert body["worker_roundtrip"]["ok"], body


@pytest.mark.django_db
def test_it_says_within_seconds_that_no_worker_is_answering():
    started = time.monotonic()
    with pytest.raises(NoWorkerError, match="No Celery worker is answering"):
        wait_for_worker(timeout=1.5)
    assert time.monotonic() - started < 5
