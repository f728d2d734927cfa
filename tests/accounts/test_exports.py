from __future__ import annotations

import csv
import io
import os
import time

import pytest
from django.test import Client, override_settings
from openpyxl import load_workbook

from accounts.exports import safe_cell
from accounts.models import AuditEvent, AuditEventKind, ExportRequest, ExportStatus
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

EVIL = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_it_quotes_cells_that_would_start_a_formula():
    for text in EVIL:
        assert safe_cell(text) == "'" + text
    assert safe_cell("张伟") == "张伟" and safe_cell("a=b") == "a=b" and safe_cell(None) == ""


def _csv(response) -> list[list[str]]:  # noqa: ANN001
    content = b"".join(response.streaming_content).decode("utf-8")
    assert content.startswith("\ufeff")
    return list(csv.reader(io.StringIO(content.lstrip("\ufeff"))))


def test_it_exports_a_masked_formula_safe_csv_of_the_current_search(client, steward):
    evil = CustomerFactory(
        full_name="=cmd|' /C calc'!A0",
        company="@SUM(1+1)",
        member_no="M1",
        id_number="11010519491231002X",
        mobile="+8613800138000",
    )
    CustomerFactory(member_no="M2")
    client.force_login(steward)
    response = client.get("/accounts/export/", {"format": "csv", "q": "M1"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200 and response.streaming
    rows = _csv(response)
    header, (row,) = rows[0], rows[1:]
    values = dict(zip(header, row, strict=False))
    assert values["id"] == str(evil.pk)
    assert values["Full name"] == "'=cmd|' /C calc'!A0"
    assert values["Company"] == "'@SUM(1+1)"
    assert values["Mobile"] == "'+8613800138000"  # steward sees mobiles; the leading + is quoted
    assert values["ID number"] == "110105********002X"  # secret: masked even for stewards
    event = AuditEvent.objects.get(kind=AuditEventKind.EXPORT)
    assert event.user == steward and event.details == {"filter": {"q": "M1"}, "rows": 1, "format": "csv"}


def test_it_exports_xlsx_with_text_cells_only(client, steward):
    CustomerFactory(full_name="=1+2", company="-5")
    client.force_login(steward)
    response = client.get("/accounts/export/", {"format": "xlsx"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    cells = [c for row in sheet.iter_rows() for c in row]
    assert all(c.data_type == "s" for c in cells if c.value is not None)  # no "f" (formula) cell
    assert "'=1+2" in [c.value for c in cells] and "'-5" in [c.value for c in cells]


def test_it_needs_the_export_permission(client, support, sales):
    CustomerFactory()
    for user in (support, sales):
        client.force_login(user)
        assert client.get("/accounts/export/", {"format": "csv"}).status_code == 403
    assert not AuditEvent.objects.filter(kind=AuditEventKind.EXPORT).exists()


@override_settings(CRMHUB_EXPORT_APPROVAL_ROWS=2)
def test_it_needs_an_admins_approval_above_the_row_limit(
    client, steward, admin_user, django_capture_on_commit_callbacks
):
    CustomerFactory.create_batch(3, company="=evil()")
    client.force_login(steward)
    response = client.get("/accounts/export/", {"format": "csv", "reason": "quarterly report"})
    assert response.status_code == 302 and response.url == "/accounts/exports/"
    export = ExportRequest.objects.get()
    assert (export.status, export.row_count, export.requested_by) == (ExportStatus.REQUESTED, 3, steward)
    assert not AuditEvent.objects.filter(kind=AuditEventKind.EXPORT).exists()
    # The requester cannot approve, nor download before approval.
    assert client.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "approve"}).status_code == 403
    export.refresh_from_db()
    assert export.status == ExportStatus.REQUESTED
    assert client.get(f"/accounts/exports/{export.pk}/download/").status_code == 302
    admin = Client()
    admin.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        admin.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "approve"})
    export.refresh_from_db()
    assert export.status == ExportStatus.APPROVED and export.decided_by == admin_user and len(callbacks) == 1
    # What the worker runs (the integration test below runs it through a real worker).
    from accounts.services import export_request_generate

    export_request_generate(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    # Only the requester may download.
    assert admin.get(f"/accounts/exports/{export.pk}/download/").status_code == 404
    response = client.get(f"/accounts/exports/{export.pk}/download/")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff"))))
    assert len(rows) == 4 and all("'=evil()" in r for r in rows[1:])
    export.refresh_from_db()
    assert export.status == ExportStatus.DOWNLOADED
    kinds = list(AuditEvent.objects.filter(object_type="export_request").order_by("id").values_list("kind", flat=True))
    assert kinds == [AuditEventKind.EXPORT_REQUESTED, AuditEventKind.EXPORT_DECIDED, AuditEventKind.EXPORT]


@override_settings(CRMHUB_EXPORT_APPROVAL_ROWS=1, CRMHUB_EXPORT_RETENTION_HOURS=72)
def test_export_files_are_removed_after_the_retention_period(client, steward, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.services import export_request_generate, exports_expire

    CustomerFactory.create_batch(2)
    client.force_login(steward)
    client.get("/accounts/export/", {"format": "csv"})
    export = ExportRequest.objects.get()
    admin = Client()
    admin.force_login(admin_user)
    admin.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "approve"})
    export_request_generate(export_id=export.pk)
    export.refresh_from_db()
    path = export.file.path
    assert export.status == ExportStatus.READY and os.path.exists(path)
    assert exports_expire() == 0  # a fresh file stays
    ExportRequest.objects.filter(pk=export.pk).update(generated_at=timezone.now() - timedelta(hours=73))
    assert exports_expire() == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED and not export.file and not os.path.exists(path)
    assert AuditEvent.objects.filter(kind=AuditEventKind.EXPORT_EXPIRED, object_id=str(export.pk)).exists()
    # The requester is told, not served a missing file.
    response = client.get(f"/accounts/exports/{export.pk}/download/", follow=True)
    assert "Expired, file removed" in response.content.decode()


@override_settings(CRMHUB_EXPORT_APPROVAL_ROWS=1)
def test_it_records_a_rejection(client, steward, admin_user):
    CustomerFactory.create_batch(2)
    client.force_login(steward)
    client.get("/accounts/export/", {"format": "xlsx"})
    export = ExportRequest.objects.get()
    admin = Client()
    admin.force_login(admin_user)
    admin.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "reject"})
    export.refresh_from_db()
    assert export.status == ExportStatus.REJECTED and not export.file
    assert client.get(f"/accounts/exports/{export.pk}/download/").status_code == 302
    # Deciding twice is refused.
    admin.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "approve"})
    export.refresh_from_db()
    assert export.status == ExportStatus.REJECTED


@pytest.mark.integration
def test_it_generates_an_approved_export_in_a_worker(live_worker, steward, admin_user, settings):
    from accounts.roles import roles_sync
    from crmhub.services import field_definitions_sync

    field_definitions_sync()  # an earlier transactional test's flush may have removed the migrations' rows
    roles_sync()
    settings.CRMHUB_EXPORT_APPROVAL_ROWS = 1
    CustomerFactory.create_batch(2)
    client = Client()
    client.force_login(steward)
    client.get("/accounts/export/", {"format": "csv"})
    export = ExportRequest.objects.get()
    admin = Client()
    admin.force_login(admin_user)
    admin.post(f"/accounts/exports/{export.pk}/decide/", {"decision": "approve"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        export.refresh_from_db()
        if export.status != ExportStatus.APPROVED:
            break
        time.sleep(0.3)
    assert export.status == ExportStatus.READY, export.message
    assert client.get(f"/accounts/exports/{export.pk}/download/").status_code == 200


@override_settings(CRMHUB_EXPORT_APPROVAL_ROWS=0)
def test_it_lists_export_requests_with_the_right_actions(client, steward, admin_user, support):
    CustomerFactory()
    client.force_login(steward)
    client.get("/accounts/export/", {"format": "csv", "q": ""})
    export = ExportRequest.objects.get()
    mine = client.get("/accounts/exports/").content.decode()
    assert f'data-export="{export.pk}"' in mine and 'value="approve"' not in mine  # no self-approval
    admin = Client()
    admin.force_login(admin_user)
    assert 'value="approve"' in admin.get("/accounts/exports/").content.decode()
    other = Client()
    other.force_login(support)
    assert f'data-export="{export.pk}"' not in other.get("/accounts/exports/").content.decode()
    # The customer list offers export links only to those who may export.
    assert "/accounts/export/?format=csv" in client.get("/customers/").content.decode()
    assert "/accounts/export/?format=csv" not in other.get("/customers/").content.decode()
