from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from crmhub.models import SourceRecord
from imports.models import ImportRun, MappingTemplate
from imports.services import import_run_execute
from tests.imports.helpers import csv_bytes

pytestmark = pytest.mark.django_db


def test_it_uploads_maps_saves_a_template_and_reuses_it(client, steward):
    client.force_login(steward)
    response = client.post("/imports/new/", {"new_source": "shop", "file": SimpleUploadedFile("c.csv", csv_bytes())})
    assert response.status_code == 302 and "/imports/map/" in response.url
    page = client.get(response.url)
    columns = {c["header"]: c for c in page.context["columns"]}
    assert columns["手机号"]["field"] == "mobile" and columns["客户编号"]["is_key"]
    post = {f"map-{c['index']}": c["field"] for c in page.context["columns"]}
    post["map-5"] = "tags"  # the steward corrects one mapping: 备注 → tags
    post.update({"key": "0", "template_name": "shop-v1", "create": "1"})
    created = client.post(response.url, post)
    run = ImportRun.objects.get()
    assert created.status_code == 302 and created.url == run.get_absolute_url()
    assert run.mapping["备注"] == "tags" and MappingTemplate.objects.get().name == "shop-v1"
    import_run_execute(run_id=run.pk)
    assert SourceRecord.objects.get(source_key="C001").normalized["tags"] == ["vip"]
    again = client.post("/imports/new/", {"source": "shop", "file": SimpleUploadedFile("c.csv", csv_bytes())})
    second = ImportRun.objects.exclude(pk=run.pk).get()
    assert again.url == second.get_absolute_url() and second.template.name == "shop-v1"
    detail = client.get(second.get_absolute_url())
    assert b"run-progress" in detail.content
    partial = client.get(second.get_absolute_url(), HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"every 1s" in partial.content


def test_it_shows_the_refusal_reason_on_the_upload_page(client, steward):
    client.force_login(steward)
    response = client.post(
        "/imports/new/", {"new_source": "shop", "file": SimpleUploadedFile("e.csv", "C001,张三,13800138000\n".encode())}
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()


def test_it_downloads_the_error_report_and_rolls_back_after_confirmation(client, steward):
    client.force_login(steward)
    client.post("/imports/new/", {"new_source": "shop", "file": SimpleUploadedFile("c.csv", csv_bytes())})
    token_url = client.post(
        "/imports/new/", {"new_source": "shop2", "file": SimpleUploadedFile("c.csv", csv_bytes())}
    ).url
    page = client.get(token_url)
    post = {f"map-{c['index']}": c["field"] for c in page.context["columns"]}
    post.update({"key": "0", "create": "1"})
    client.post(token_url, post)
    run = ImportRun.objects.get()
    import_run_execute(run_id=run.pk)
    csv_report = client.get(f"/imports/runs/{run.pk}/errors/?format=csv")
    assert csv_report.status_code == 200 and "'=HYPERLINK(1)" in csv_report.content.decode("utf-8-sig")
    xlsx = client.get(f"/imports/runs/{run.pk}/errors/?format=xlsx")
    assert xlsx.content[:2] == b"PK"
    assert client.get(f"/imports/runs/{run.pk}/rollback/").status_code == 200
    client.post(f"/imports/runs/{run.pk}/rollback/", {"confirm": "yes"})
    run.refresh_from_db()
    assert run.options["rollback_requested"]


def test_it_keeps_the_import_pages_from_other_roles(client, sales):
    client.force_login(sales)
    assert client.get("/imports/").status_code == 403
    assert client.get("/imports/new/").status_code == 403


def test_it_links_imports_in_the_navigation(client, steward):
    client.force_login(steward)
    assert b'href="/imports/"' in client.get("/").content
