"""Imports hand their new records to the matcher as they commit."""

from __future__ import annotations

import pytest
from django.test import override_settings

from crmhub.choices import CustomerStatus
from crmhub.models import Customer, SourceRecord
from dedup.models import DedupRun
from imports.models import ImportRun
from tests.imports.helpers import csv_bytes, write
from tests.imports.test_services import run_cli

HEADER = ["客户编号", "姓名", "手机号", "邮箱", "身份证号", "备注"]


@pytest.mark.django_db
def test_it_links_a_known_person_arriving_from_another_source_in_real_time(tmp_path):
    first = [["C001", "张三", "138 0013 8000", "zs@example.com", "11010519491231002X", ""]]
    run_cli(write(tmp_path, "crm.csv", csv_bytes(first, HEADER)), "--source", "crm", "--auto-map", "--inline")
    same_person = [["W9", "张三", "+86-138-0013-8000", "ZS@example.com", "11010519491231002X", ""]]
    summary = run_cli(
        write(tmp_path, "web.csv", csv_bytes(same_person, HEADER)), "--source", "web", "--auto-map", "--inline"
    )
    assert summary["created"] == 1  # a new (source, key) pair...
    records = SourceRecord.objects.order_by("pk")
    assert records[0].customer_id == records[1].customer_id  # ...linked to the existing golden record
    assert Customer.objects.filter(status=CustomerStatus.ACTIVE).count() == 1
    assert ImportRun.objects.get(pk=summary["run"]).log[-1] == {
        "matching": "real time",
        "records": 1,
        "merged": 1,
        "for_review": 0,
        "unmatched": 0,
    }


@pytest.mark.django_db
@override_settings(CRMHUB_REALTIME_MATCH_MAX_RECORDS=1)
def test_it_hands_a_large_run_to_a_batch_dedup_run(tmp_path, django_capture_on_commit_callbacks):
    rows = [["C1", "张三", "13800138000", "", "", ""], ["C2", "李四", "13900139000", "", "", ""]]
    with django_capture_on_commit_callbacks() as callbacks:
        summary = run_cli(
            write(tmp_path, "big.csv", csv_bytes(rows, HEADER)), "--source", "crm", "--auto-map", "--inline"
        )
    log = ImportRun.objects.get(pk=summary["run"]).log[-1]
    assert log["matching"] == "batch" and log["records"] == 2
    run = DedupRun.objects.get(pk=log["dedup_run"])
    assert run.source_code == "crm" and run.status == "pending"
    assert callbacks  # the batch run is enqueued once the run's transaction commits
