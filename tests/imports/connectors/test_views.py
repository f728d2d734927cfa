from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from crmhub.models import AlertEvent, AlertRule
from imports.models import Connector, SourceWebhook
from tests.factories import SourceFactory
from tests.imports.connectors.erp import erp_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def erp_source():
    return SourceFactory(code="erp")


def create(client, erp, **extra):  # noqa: ANN001, ANN003, ANN201
    data = {
        "name": "erp",
        "source": "erp",
        "kind": "sql",
        "secret": erp.url,
        "key_columns": "code",
        "table": erp.table,
        "cursor_column": "updated_at",
        "max_failures": 3,
        "mapping": "name = full_name\nmobile = mobile",
        **extra,
    }
    return client.post(reverse("imports:connector-create"), data)


def test_it_creates_tests_runs_pauses_and_schedules_a_connector_in_the_browser(
    client, steward, erp_source, mariadb_erp, django_capture_on_commit_callbacks
):
    mariadb_erp.insert(erp_rows(6))
    client.force_login(steward)
    response = create(client, mariadb_erp)
    connector = Connector.objects.get(name="erp")
    assert response.status_code == 302 and response["Location"] == connector.get_absolute_url()
    assert connector.mapping == {"name": "full_name", "mobile": "mobile"}
    page = client.get(connector.get_absolute_url()).content.decode()
    assert "mysql+pymysql://root@127.0.0.1:3306/test" in page
    test = client.get(reverse("imports:connector-test", args=[connector.pk]), HTTP_HX_REQUEST="true")
    body = test.content.decode()
    assert test.status_code == 200 and "<html" not in body and "E000001" in body and "updated_at" in body
    with mock.patch("imports.tasks.connector_run_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            queued = client.post(reverse("imports:connector-sync", args=[connector.pk]))
    run_id = delay.call_args.args[0]
    assert queued["Location"] == reverse("imports:run-detail", args=[run_id])
    assert client.get(queued["Location"]).status_code == 200
    Connector.objects.filter(pk=connector.pk).update(cursor={"columns": ["updated_at", "code"], "after": []})
    client.post(reverse("imports:connector-reset", args=[connector.pk]))
    assert Connector.objects.get(pk=connector.pk).cursor is None
    client.post(reverse("imports:connector-toggle", args=[connector.pk]))
    assert not Connector.objects.get(pk=connector.pk).is_enabled
    client.post(reverse("imports:connector-schedule", args=[connector.pk]), {"every_minutes": "30", "cron": ""})
    assert Connector.objects.get(pk=connector.pk).schedule.interval.every == 30
    listing = client.get(reverse("imports:connector-list")).content.decode()
    assert connector.get_absolute_url() in listing and f"#{run_id}" not in listing  # the run has not ended yet


def test_it_shows_a_refused_query_on_the_form_and_keeps_the_password_out_of_pages(
    client, admin_user, erp_source, mariadb_erp
):
    client.force_login(admin_user)
    response = create(client, mariadb_erp, table="", query="SELECT * FROM t; DROP TABLE t")
    assert response.status_code == 200 and "only one statement" in response.content.decode()
    create(client, mariadb_erp, secret="mysql+pymysql://root:TopSecret1@127.0.0.1:3306/test")
    connector = Connector.objects.get(name="erp")
    for url in (
        reverse("imports:connector-list"),
        connector.get_absolute_url(),
        reverse("imports:connector-edit", args=[connector.pk]),
    ):
        assert "TopSecret1" not in client.get(url).content.decode()


def test_it_lists_open_alerts_and_issues_a_webhook_secret(client, admin_user, erp_source, mariadb_erp):
    client.force_login(admin_user)
    create(client, mariadb_erp)
    connector = Connector.objects.get(name="erp")
    rule = AlertRule.objects.get(kind="connector_paused")  # shipped by a data migration
    AlertEvent.objects.create(rule=rule, subject=f"connector:{connector.pk}", message="Connector erp was paused")
    assert "Connector erp was paused" in client.get(reverse("imports:connector-list")).content.decode()
    shown = client.post(reverse("imports:webhook-secret"), {"source": "erp"}).content.decode()
    assert SourceWebhook.objects.get(source=erp_source).secret in shown


def test_it_refuses_connector_pages_to_other_roles(client, sales, erp_source):
    client.force_login(sales)
    assert client.get(reverse("imports:connector-list")).status_code == 403
    assert client.get(reverse("imports:connector-create")).status_code == 403
    client.logout()
    assert client.get(reverse("imports:connector-list")).status_code == 302


def test_test_connection_shows_columns_and_samples_and_never_the_password(client, admin_user, erp_source, pg_erp):
    pg_erp.insert(erp_rows(7))
    client.force_login(admin_user)
    with_password = pg_erp.url.replace("postgres@", "postgres:TopSecret1@")  # trust auth: any password works
    assert "TopSecret1" in with_password
    create(client, pg_erp, secret=with_password)
    connector = Connector.objects.get(name="erp")
    test = client.get(reverse("imports:connector-test", args=[connector.pk])).content.decode()
    assert "updated_at" in test and "E000005" in test and "E000006" not in test  # five sample rows
    # A failing connection names the cause, without the password, on the page and in the sync's run.
    Connector.objects.filter(pk=connector.pk).update(secret=with_password.rsplit("/", 1)[0] + "/no_such_db")
    failed = client.get(reverse("imports:connector-test", args=[connector.pk])).content.decode()
    assert "no_such_db" in failed or "refused" in failed.lower() or "not exist" in failed
    from imports.connectors.services import connector_run_execute, connector_sync_request

    run = connector_run_execute(run_id=connector_sync_request(connector=connector, enqueue=False).pk)
    pages = [
        test,
        failed,
        run.message,
        Connector.objects.get(pk=connector.pk).last_error,
        client.get(connector.get_absolute_url()).content.decode(),
        client.get(reverse("imports:connector-list")).content.decode(),
        client.get(reverse("imports:connector-edit", args=[connector.pk])).content.decode(),
        client.get(f"/api/v1/connectors/{connector.pk}/").content.decode(),
    ]
    assert run.status == "failed" and all("TopSecret1" not in page for page in pages)
    assert "postgres:***@" in pages[-1]  # the API shows the URL with the password masked
