from __future__ import annotations

import json
from unittest import mock

import pytest
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crmhub.choices import AlertKind, AlertStatus
from crmhub.models import AlertEvent
from imports.choices import RunKind, RunStatus
from imports.connectors.services import (
    ConnectorRefused,
    connector_create,
    connector_run_execute,
    connector_schedule_set,
    connector_set_enabled,
    connector_sync_request,
    connector_sync_scheduled,
)
from imports.models import Connector, ImportRun
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


def closed_port_connector(**extra) -> Connector:  # noqa: ANN003
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return connector_create(
        source=SourceFactory(code="erp"),
        name="down",
        kind="sql",
        max_failures=3,
        config={"table": "t", "key_columns": ["id"], "cursor_column": "id", "connect_timeout": 1},
        secret=f"mysql+pymysql://root:pw@127.0.0.1:{port}/test",
        mapping={"name": "full_name"},
        **extra,
    )


def test_it_retries_with_backoff_then_pauses_and_raises_an_alert(
    django_capture_on_commit_callbacks, settings, _no_real_retries
):
    settings.CRMHUB_CONNECTOR_RETRY_SECONDS = 30
    connector = closed_port_connector()
    connector = connector_schedule_set(connector=connector, every_minutes=15)
    for _attempt in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            run = connector_sync_request(connector=connector, enqueue=False)
            connector_run_execute(run_id=run.pk)
    countdowns = [c.kwargs["countdown"] for c in _no_real_retries.call_args_list]
    assert countdowns == [30, 60]  # the third failure pauses instead of retrying
    connector.refresh_from_db()
    assert connector.consecutive_failures == 3 and not connector.is_enabled
    assert "3 failed syncs" in connector.paused_reason and "cannot be reached" in connector.last_error
    assert "pw@" not in connector.last_error
    # The central alert rules raise it at once (crmhub.alerts), not on the next schedule.
    alert = AlertEvent.objects.get(rule__kind=AlertKind.CONNECTOR_PAUSED, subject=f"connector:{connector.pk}")
    assert alert.status == AlertStatus.OPEN and "3 failed syncs" in alert.message
    assert PeriodicTask.objects.get(pk=connector.schedule_id).enabled is False
    assert connector_sync_scheduled(connector_id=connector.pk) is None  # a paused connector is not synced
    with django_capture_on_commit_callbacks(execute=True):
        connector_set_enabled(connector=connector, enabled=True)
    connector.refresh_from_db()
    alert.refresh_from_db()
    assert connector.consecutive_failures == 0 and alert.status == AlertStatus.RESOLVED
    assert PeriodicTask.objects.get(pk=connector.schedule_id).enabled is True


def test_it_schedules_on_an_interval_or_cron_and_removes_the_schedule():
    connector = closed_port_connector()
    connector = connector_schedule_set(connector=connector, every_minutes=5)
    task = PeriodicTask.objects.get(pk=connector.schedule_id)
    assert (task.task, json.loads(task.args), task.interval.every) == ("imports.connector_sync", [connector.pk], 5)
    connector = connector_schedule_set(connector=connector, cron="*/10 8-18 * * 1-5")
    task.refresh_from_db()
    assert task.interval is None and task.crontab.minute == "*/10" and task.crontab.day_of_week == "1-5"
    with pytest.raises(ConnectorRefused, match="five fields"):
        connector_schedule_set(connector=connector, cron="every day")
    with pytest.raises(ConnectorRefused, match="not valid"):
        connector_schedule_set(connector=connector, cron="99 * * * *")
    connector = connector_schedule_set(connector=connector)
    assert connector.schedule is None and not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_it_refuses_a_second_sync_while_one_is_queued_but_replaces_a_stale_running_one(settings):
    connector = closed_port_connector()
    first = connector_sync_request(connector=connector, enqueue=False)
    with pytest.raises(ConnectorRefused, match=r"Run #\d+ of this connector is still"):
        connector_sync_request(connector=connector, enqueue=False)
    settings.CRMHUB_CONNECTOR_STALE_SECONDS = 0
    ImportRun.objects.filter(pk=first.pk).update(status=RunStatus.RUNNING)
    second = connector_sync_request(connector=connector, enqueue=False)
    first.refresh_from_db()
    assert first.status == RunStatus.FAILED and "worker" in first.message and second.kind == RunKind.CONNECTOR


def test_it_creates_and_syncs_connectors_over_the_api_without_showing_the_password(
    admin_user, sales, django_capture_on_commit_callbacks
):
    SourceFactory(code="erp")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    body = {
        "name": "erp",
        "source": "erp",
        "kind": "sql",
        "secret": "postgresql://erp:Hidden9@127.0.0.1:5432/erp",
        "config": {"table": "customers", "key_columns": ["code"], "cursor_column": "updated_at"},
    }
    created = client.post("/api/v1/connectors/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["credentials"] == "postgresql://erp:***@127.0.0.1:5432/erp"
    assert "Hidden9" not in created.content.decode()
    bad = client.post(
        "/api/v1/connectors/",
        {**body, "name": "x", "config": {"query": "DELETE FROM t", "key_columns": ["a"], "cursor_column": "a"}},
        format="json",
    )
    assert bad.status_code == 400 and "only SELECT" in bad.json()["message"]
    with mock.patch("imports.tasks.connector_run_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            synced = client.post(f"/api/v1/connectors/{created.json()['id']}/sync/")
    assert synced.status_code == 202 and synced.json()["status"] == "pending"
    delay.assert_called_once_with(synced.json()["id"])
    assert client.post(f"/api/v1/connectors/{created.json()['id']}/sync/").status_code == 409
    outsider = APIClient()
    outsider.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=sales).key}")
    assert outsider.get("/api/v1/connectors/").status_code == 403
    assert outsider.post("/api/v1/connectors/", body, format="json").status_code == 403
