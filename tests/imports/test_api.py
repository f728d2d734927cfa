from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from imports.models import ImportRun
from imports.services import import_run_execute
from tests.imports.helpers import csv_bytes

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, **extra):  # noqa: ANN001, ANN003, ANN201
    return client.post(
        "/api/v1/imports/",
        {"file": SimpleUploadedFile("c.csv", data, "text/csv"), "source": "crm", **extra},
        format="multipart",
    )


def test_it_starts_a_run_over_the_api_and_reports_its_progress(client, steward, django_capture_on_commit_callbacks):
    client.force_login(steward)
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(client, csv_bytes(), dry_run="true")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["dry_run"] is True and body["key_columns"] == ["客户编号"]
    assert len(callbacks) == 1  # the task is enqueued on commit
    import_run_execute(run_id=body["id"])
    detail = client.get(f"/api/v1/imports/{body['id']}/").json()
    assert detail["status"] == "previewed" and detail["progress"]["percent"] == 100
    assert (detail["created"], detail["errors"], detail["rows"]) == (3, 1, 4)
    listing = client.get("/api/v1/imports/").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == body["id"]


def test_it_refuses_a_bad_upload_with_a_message_to_act_on(client, steward):
    client.force_login(steward)
    response = upload(client, b"\r\n\r\n")
    assert response.status_code == 400
    assert response.json()["error"] == "import_refused" and "empty" in response.json()["message"]
    assert ImportRun.objects.count() == 0
    missing = client.post("/api/v1/imports/", {"source": "crm"}, format="multipart")
    assert missing.status_code == 400 and "file" in missing.json()["details"]


def test_it_lets_only_importing_roles_import(client, sales):
    client.force_login(sales)
    assert upload(client, csv_bytes()).status_code == 403
    client.logout()
    assert client.get("/api/v1/imports/").status_code in (401, 403)


def test_it_answers_404_for_an_unknown_run(client, steward):
    client.force_login(steward)
    assert client.get("/api/v1/imports/999/").status_code == 404
