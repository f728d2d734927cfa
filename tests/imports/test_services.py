from __future__ import annotations

import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.crypto import CIPHERTEXT_PREFIX
from crmhub.models import Customer, SourceRecord
from imports.choices import RunStatus
from imports.models import ImportRun, ImportRunIssue
from imports.reports import error_report_csv
from imports.services import import_run_commit_preview, import_run_execute, import_run_rollback
from tests.imports.helpers import ROWS, csv_bytes, write


def run_cli(path, *args) -> dict:  # noqa: ANN001
    import io

    out = io.StringIO()
    try:
        call_command("import_file", str(path), *args, stdout=out, stderr=io.StringIO())
    except SystemExit:
        pass
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.django_db
def test_it_imports_a_file_and_reimporting_it_changes_nothing(tmp_path):
    path = write(tmp_path, "c.csv", csv_bytes())
    first = run_cli(path, "--source", "crm", "--auto-map", "--inline")
    assert first == {
        "run": first["run"],
        "status": "completed",
        "rows": 4,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "invalid": 2,
        "errors": 1,
    }
    assert SourceRecord.objects.count() == 3 and Customer.objects.count() == 3
    zs = SourceRecord.objects.get(source_key="C001")
    assert zs.customer.mobile == "+8613800138000" and zs.customer.family_name == "张"
    assert zs.normalized["id_number"].startswith(CIPHERTEXT_PREFIX)
    assert zs.raw["身份证号"].startswith(CIPHERTEXT_PREFIX) and zs.raw["备注"] == "vip"
    assert zs.customer.id_number == "11010519491231002X" and zs.customer.id_number_hash
    bad = SourceRecord.objects.get(source_key="C003")
    assert "mobile" in bad.flags and bad.customer.mobile == ""  # flagged values stay out of the golden record
    second = run_cli(path, "--source", "crm", "--auto-map", "--inline")
    assert (second["created"], second["updated"], second["unchanged"], second["errors"]) == (0, 0, 3, 1)
    assert SourceRecord.history.filter(source_key="C001").count() == 1


@pytest.mark.django_db
def test_it_updates_a_changed_record_attributed_to_the_run_and_rolls_the_run_back(tmp_path, steward):
    run_cli(write(tmp_path, "a.csv", csv_bytes()), "--source", "crm", "--auto-map", "--inline")
    rows = [list(r) for r in ROWS]
    rows[0][1] = "张三丰"
    rows.append(["C004", "赵六", "13600136000", "", "", ""])
    summary = run_cli(
        write(tmp_path, "b.csv", csv_bytes(rows=rows)),
        "--source",
        "crm",
        "--auto-map",
        "--inline",
        "--user",
        steward.username,
    )
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (1, 1, 2)
    record = SourceRecord.objects.get(source_key="C001")
    assert record.normalized["full_name"] == "张三丰"
    latest = record.history.order_by("-history_id").first()
    assert (latest.history_type, latest.change_channel, latest.change_ref, latest.history_user_id) == (
        "~",
        "import",
        f"import_run:{summary['run']}",
        steward.pk,
    )
    run = import_run_rollback(run_id=summary["run"], user=steward)
    assert run.status == RunStatus.ROLLED_BACK
    record.refresh_from_db()
    assert record.normalized["full_name"] == "张三" and not SourceRecord.objects.filter(source_key="C004").exists()
    assert Customer.objects.count() == 3
    assert list(record.history.order_by("history_id").values_list("history_type", flat=True)) == ["+", "~", "~"]
    deleted = SourceRecord.history.filter(source_key="C004").order_by("history_id")
    assert [h.history_type for h in deleted] == ["+", "-"]


@pytest.mark.django_db
def test_it_refuses_to_roll_back_a_run_whose_records_a_later_run_changed(tmp_path):
    from imports.services import ImportRefused

    first = run_cli(write(tmp_path, "a.csv", csv_bytes()), "--source", "crm", "--auto-map", "--inline")
    rows = [list(r) for r in ROWS]
    rows[0][1] = "张三丰"
    run_cli(write(tmp_path, "b.csv", csv_bytes(rows=rows)), "--source", "crm", "--auto-map", "--inline")
    with pytest.raises(ImportRefused, match="roll it back first"):
        import_run_rollback(run_id=first["run"])


@pytest.mark.django_db
def test_it_previews_a_dry_run_without_writing_and_commits_it(tmp_path):
    summary = run_cli(write(tmp_path, "a.csv", csv_bytes()), "--source", "crm", "--auto-map", "--inline", "--dry-run")
    assert summary["status"] == "previewed" and summary["created"] == 3 and summary["errors"] == 1
    assert SourceRecord.objects.count() == 0 and Customer.objects.count() == 0
    preview = ImportRun.objects.get(pk=summary["run"])
    assert [s["key"] for s in preview.samples["created"]] == ["C001", "C002", "C003"]
    assert preview.samples["rejected"][0]["reasons"]
    assert preview.samples["created"][0]["values"]["id_number"].startswith(CIPHERTEXT_PREFIX)
    run = import_run_commit_preview(run=preview)
    run = import_run_execute(run_id=run.pk)
    assert run.status == RunStatus.COMPLETED and run.created == 3 and run.preview_of_id == preview.pk
    assert SourceRecord.objects.count() == 3


@pytest.mark.django_db
def test_it_samples_updates_with_a_field_diff(tmp_path):
    run_cli(write(tmp_path, "a.csv", csv_bytes()), "--source", "crm", "--auto-map", "--inline")
    rows = [list(r) for r in ROWS]
    rows[1][3] = "lisi@163.com"
    summary = run_cli(
        write(tmp_path, "b.csv", csv_bytes(rows=rows)), "--source", "crm", "--auto-map", "--inline", "--dry-run"
    )
    sample = ImportRun.objects.get(pk=summary["run"]).samples["updated"][0]
    assert (
        sample["key"] == "C002"
        and sample["before"] == {"email": "ls@gmial.com"}
        and sample["after"] == {"email": "lisi@163.com"}
    )


@pytest.mark.django_db
def test_it_writes_a_formula_safe_error_report_masked_by_the_policy(tmp_path, steward, support):
    summary = run_cli(write(tmp_path, "a.csv", csv_bytes()), "--source", "crm", "--auto-map", "--inline")
    run = ImportRun.objects.get(pk=summary["run"])
    assert ImportRunIssue.objects.filter(run=run).count() == 3
    text = error_report_csv(run, steward).decode("utf-8-sig")
    assert "'=HYPERLINK(1)" in text and "ls@gmial.com" in text and "gmail.com" in text
    assert "13700137000" in text  # the steward sees the rejected row as written
    masked = error_report_csv(run, support).decode("utf-8-sig")
    assert "ls@gmial.com" not in masked and "137****7000" in masked


@pytest.mark.django_db
def test_it_uses_the_key_option_a_template_and_refuses_without_a_mapping(tmp_path):
    from crmhub.models import Source
    from imports.services import mapping_template_save

    path = write(tmp_path, "a.csv", csv_bytes(header=["编码", "姓名", "手机号", "邮箱", "身份证号", "备注"]))
    with pytest.raises(CommandError, match="--key"):
        call_command("import_file", str(path), "--source", "crm", "--auto-map", "--inline")
    with pytest.raises(CommandError, match="--auto-map"):
        call_command("import_file", str(path), "--source", "crm", "--inline")
    assert run_cli(path, "--source", "crm", "--auto-map", "--key", "编码", "--inline")["created"] == 3
    headers = ["编码", "姓名", "手机号", "邮箱", "身份证号", "备注"]
    mapping_template_save(
        source=Source.objects.get(code="crm"),
        name="crm-v1",
        headers=headers,
        mapping={"姓名": "full_name", "手机号": "mobile"},
        key_columns=["编码"],
    )
    by_headers = run_cli(path, "--source", "crm", "--inline")  # the template saved for these headers, found by itself
    assert (by_headers["updated"], by_headers["unchanged"]) == (2, 1)  # it maps fewer fields; 王五 has only those
    assert run_cli(path, "--source", "crm", "--template", "crm-v1", "--inline")["unchanged"] == 3


@pytest.mark.django_db
def test_it_refuses_a_bad_file_on_the_command_line_and_writes_nothing(tmp_path):
    with pytest.raises(CommandError, match="empty"):
        call_command("import_file", str(write(tmp_path, "e.csv", b"")), "--source", "crm", "--auto-map", "--inline")
    assert ImportRun.objects.count() == 0


@pytest.mark.django_db
def test_it_says_within_seconds_that_no_worker_is_answering(tmp_path, settings):
    settings.CRMHUB_WORKER_WAIT_SECONDS = 2
    started = time.monotonic()
    with pytest.raises(CommandError, match="No Celery worker is answering"):
        call_command("import_file", str(write(tmp_path, "a.csv", csv_bytes())), "--source", "crm", "--auto-map")
    assert time.monotonic() - started < 6
    assert ImportRun.objects.count() == 0


@pytest.mark.integration
def test_it_runs_the_import_on_a_real_worker_and_prints_the_json_last(live_worker, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT, _worker_env

    path = write(tmp_path, "a.csv", csv_bytes())
    result = subprocess.run(
        [sys.executable, "manage.py", "import_file", str(path), "--source", "crm", "--auto-map"],
        env=_worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["created"] == 3
    assert SourceRecord.objects.filter(source__code="crm").count() == 3


def _run_for(tmp_path, rows, source_code: str) -> ImportRun:  # noqa: ANN001
    from crmhub.services import source_get_or_create
    from imports.services import file_run_from_path, mapping_suggest

    path = write(tmp_path, f"{source_code}.csv", csv_bytes(rows))
    source, _ = source_get_or_create(code=source_code)
    return file_run_from_path(
        path=str(path), source=source, enqueue=False, plan_for=lambda layout: mapping_suggest(headers=layout.headers)
    )


@pytest.mark.django_db
def test_it_processes_many_small_chunks_in_order_and_stops_after_the_chunk_when_cancelled(tmp_path):
    """Chunks are read and cleaned ahead in a helper thread: row numbers, duplicate keys across
    chunks and the cancel flag must behave as if they were read one after the other."""
    from imports.choices import IssueKind
    from imports.pipeline import ImportPipeline

    rows = [[f"K{i:02d}", "张" + "一二三四五六七八九"[i], f"1380013{i:04d}", "", "", ""] for i in range(9)]
    rows[4][2] = "12345"  # an invalid mobile (spreadsheet row 6)
    rows[6][0] = "K01"  # repeats the key of row 3, two chunks earlier
    run = _run_for(tmp_path, rows, "chunks")
    assert ImportPipeline(run, chunk_rows=2).execute() is True
    run.refresh_from_db()
    assert (run.rows_done, run.created, run.invalid, run.errors) == (9, 8, 1, 1)
    issues = {i.row_number: i for i in ImportRunIssue.objects.filter(run=run)}
    assert sorted(issues) == [6, 8]
    assert (issues[6].kind, issues[6].source_key, list(issues[6].reasons)) == (IssueKind.INVALID, "K04", ["手机号"])
    assert (issues[8].kind, issues[8].source_key) == (IssueKind.ERROR, "K01") and "3" in issues[8].reasons[""]
    assert sorted(SourceRecord.objects.filter(source__code="chunks").values_list("source_key", flat=True)) == [
        f"K{i:02d}" for i in range(9) if i != 6
    ]

    cancelled = _run_for(tmp_path, rows, "cancelled")
    ImportRun.objects.filter(pk=cancelled.pk).update(cancel_requested=True)
    assert ImportPipeline(cancelled, chunk_rows=2).execute() is False
    cancelled.refresh_from_db()
    assert (cancelled.rows_done, cancelled.created) == (2, 2)
    assert SourceRecord.objects.filter(source__code="cancelled").count() == 2
