from __future__ import annotations

import io
import json

import pytest
from django.test import Client

from accounts.models import AuditEvent
from crmhub.choices import AlertKind, CustomerStatus
from crmhub.models import AlertEvent, AlertRule, Customer, PrivacyRequest
from crmhub.quality import quality_snapshot_take

pytestmark = pytest.mark.django_db

QUALITY_PAGES = [
    ("get", "/quality/", {}),
    ("get", "/quality/data.json", {}),
    ("post", "/quality/run/", {}),
    ("get", "/quality/records/", {}),
    ("get", "/quality/export.xlsx", {}),
    ("get", "/quality/alerts/", {}),
]
PRIVACY_PAGES = [
    ("get", "/privacy/", {}),
    ("post", "/privacy/", {"mobile": "+8613800000001"}),
    ("post", "/privacy/export/", {"mobile": "+8613800000001", "format": "json"}),
    ("post", "/privacy/erase/", {"mobile": "+8613800000001", "mode": "erase", "reason": "x", "confirm": "on"}),
]


def client_for(user) -> Client:  # noqa: ANN001
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.mark.parametrize("persona", ["sales", "support", "outsider"])
def test_it_refuses_every_new_page_to_other_roles(quality_world, request, persona):
    client = client_for(request.getfixturevalue(persona))
    for method, url, data in QUALITY_PAGES:
        assert getattr(client, method)(url, data).status_code == 403, url
    for method, url, data in PRIVACY_PAGES:
        assert getattr(client, method)(url, data).status_code == 404, url
    assert Customer.objects.get(pk=quality_world.c1.pk).status == CustomerStatus.ACTIVE
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize("persona", ["steward", "auditor"])
def test_it_keeps_data_subject_requests_from_stewards_and_auditors(quality_world, request, persona):
    client = client_for(request.getfixturevalue(persona))
    assert client.get("/quality/").status_code == 200
    for method, url, data in PRIVACY_PAGES:
        assert getattr(client, method)(url, data).status_code == 404, url


def test_it_sends_anonymous_visitors_to_log_in(quality_world):
    assert Client().get("/quality/").status_code == 302
    assert Client().get("/privacy/").status_code == 302


def test_it_shows_the_dashboard_with_drill_down_links(quality_world, steward, django_capture_on_commit_callbacks):
    quality_snapshot_take(now=quality_world.now)
    client = client_for(steward)
    body = client.get("/quality/").content.decode()
    assert "/quality/records/?source=crm&amp;field=mobile&amp;state=flagged" in body
    assert "66.7 %" in body  # crm's mobile validity, 2 of 3
    data = client.get("/quality/data.json").json()
    assert data["sources"]["crm"]["validity"] == pytest.approx(2 / 3)
    with django_capture_on_commit_callbacks() as callbacks:
        assert client.post("/quality/run/").status_code == 302
    assert len(callbacks) == 1


def test_it_lists_the_records_behind_a_figure_masked(quality_world, auditor):
    body = client_for(auditor).get("/quality/records/", {"source": "crm", "field": "mobile", "state": "flagged"})
    text = body.content.decode()
    # The rows shown (a page-wide substring test also hit the random CSRF token, e.g. "…0r1WE…").
    assert [r["record"].source_key for r in body.context["rows"]] == ["r2"]
    assert "12345" not in text  # auditors see mobiles masked
    missing = client_for(auditor).get("/quality/records/", {"source": "crm", "field": "email", "state": "missing"})
    assert [r["record"].source_key for r in missing.context["rows"]] == ["r1", "r2", "r3"]
    present = client_for(auditor).get("/quality/records/", {"field": "email", "state": "present"})
    assert [r["record"].source_key for r in present.context["rows"]] == ["r4"]
    assert client_for(auditor).get("/quality/records/", {"field": "nope"}).status_code == 400
    assert client_for(auditor).get("/quality/records/", {"state": "nope"}).status_code == 400


def test_it_exports_the_report_to_excel(quality_world, admin_user):
    from openpyxl import load_workbook

    quality_snapshot_take(now=quality_world.now)
    response = client_for(admin_user).get("/quality/export.xlsx")
    rows = list(load_workbook(io.BytesIO(response.content))["quality"].iter_rows(values_only=True))
    assert rows[0] == ("date", "source", "field", "metric", "value", "numerator", "denominator")
    assert any(r[1] == "crm" and r[2] == "mobile" and r[3] == "validity" and (r[5], r[6]) == (2, 3) for r in rows)


def test_it_lists_alerts(quality_world, auditor):
    from crmhub.alerts import alerts_evaluate

    AlertRule.objects.create(name="backlog over zero", kind=AlertKind.BACKLOG_ABOVE, threshold=0)
    alerts_evaluate()
    assert AlertEvent.objects.count() == 1
    body = client_for(auditor).get("/quality/alerts/").content.decode()
    assert "backlog over zero" in body and "review_backlog" in body


def test_it_runs_a_data_subject_request_from_the_browser(quality_world, admin_user):
    client = client_for(admin_user)
    body = client.post("/privacy/", {"mobile": "138 0000 0001"}).content.decode()
    assert 'id="privacy-report"' in body
    bad = client.post("/privacy/", {"mobile": "12345"}).content.decode()
    assert "not a valid phone number" in bad
    response = client.post("/privacy/export/", {"mobile": "138 0000 0001", "format": "json"})
    report = json.loads(response.content)
    assert {c["id"] for c in report["customers"]} >= {quality_world.c1.pk, quality_world.c3.pk}
    # Not confirmed: nothing happens.
    client.post("/privacy/erase/", {"mobile": "138 0000 0001", "mode": "erase", "reason": "T-1"})
    assert Customer.objects.get(pk=quality_world.c1.pk).status == CustomerStatus.ACTIVE
    response = client.post(
        "/privacy/erase/", {"mobile": "138 0000 0001", "mode": "erase", "reason": "T-1", "confirm": "on"}
    )
    assert response.status_code == 302
    assert Customer.objects.get(pk=quality_world.c1.pk).status == CustomerStatus.ERASED
    assert Customer.objects.get(pk=quality_world.c2.pk).status == CustomerStatus.ACTIVE
    kinds = set(PrivacyRequest.objects.values_list("kind", flat=True))
    assert kinds == {"search", "export", "erase"}
    assert AuditEvent.objects.filter(kind="privacy_erase_done").exists()
