"""The command-line contracts: dedup_run on a real worker and inline, the exports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from crmhub.models import Customer
from dedup.choices import CandidateStatus
from dedup.models import DedupRun, MatchCandidate
from tests.conftest import ROOT, _worker_env
from tests.dedup.conftest import PEOPLE


def _call(*args) -> dict:  # noqa: ANN002
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _survivor(customer: Customer) -> int:
    customer.refresh_from_db()
    return customer.merged_into_id or customer.pk


@pytest.mark.integration
def test_dedup_run_on_a_worker_prints_the_contract(live_worker, people):
    # A separate process, as an operator would type it, on the test database.
    result = subprocess.run(
        [sys.executable, "manage.py", "dedup_run"],
        env=_worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == {"run", "records", "candidates", "auto_merged", "for_review", "seconds"}
    assert summary["records"] == len(PEOPLE)
    assert summary["auto_merged"] == 3 and summary["for_review"] == 1
    run = DedupRun.objects.get(pk=summary["run"])
    assert run.status == "completed" and run.parts_done == run.parts_total
    assert not run.parts.exclude(payload=b"").exists()  # personal values do not linger
    assert _survivor(people["A3"]) == people["A1"].pk


@pytest.mark.django_db(transaction=True)
def test_dedup_run_inline_and_exports(people, tmp_path):
    summary = _call("dedup_run", "--inline")
    assert summary["auto_merged"] == 3
    xref = tmp_path / "xref.csv"
    assert _call("export_xref", str(xref))["rows"] == len(PEOPLE)
    rows = list(csv.DictReader(xref.open(encoding="utf-8")))
    assert list(rows[0]) == ["source", "source_key", "customer_id"]
    by_key = {r["source_key"]: int(r["customer_id"]) for r in rows}
    assert by_key["A3"] == by_key["A1"] == people["A1"].pk
    assert by_key["A2"] == people["A2"].pk  # waits for review
    assert by_key["C2"] == by_key["C1"]
    assert by_key["B1"] == people["B1"].pk

    cands = tmp_path / "candidates.csv"
    _call("export_candidates", str(cands))
    rows = list(csv.DictReader(cands.open(encoding="utf-8")))
    assert list(rows[0]) == ["left_source", "left_key", "right_source", "right_key", "score", "status"]
    linked = {(r["left_key"], r["right_key"]) for r in rows if r["status"] == CandidateStatus.AUTO_MERGED}
    assert ("A1", "A3") in linked and ("C1", "C2") in linked
    pending = {(r["left_key"], r["right_key"]) for r in rows if r["status"] == CandidateStatus.PENDING}
    assert pending == {("A1", "A2")}
    assert all(r["left_source"] == "crm" for r in rows)
    assert len(rows) == MatchCandidate.objects.count()


@pytest.mark.django_db
def test_dedup_run_says_quickly_that_no_worker_answers(people, settings):
    settings.CRMHUB_WORKER_WAIT_SECONDS = 1
    started = time.monotonic()
    with pytest.raises(CommandError, match="No Celery worker is answering"):
        call_command("dedup_run", stdout=io.StringIO())
    assert time.monotonic() - started < 5
    assert not DedupRun.objects.exists()


@pytest.mark.django_db
def test_dedup_run_refuses_unknown_rules_and_sources(people):
    with pytest.raises(CommandError, match="no match rule named 'nope'"):
        call_command("dedup_run", "--inline", "--rule", "nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no source with code 'nope'"):
        call_command("dedup_run", "--inline", "--source", "nope", stdout=io.StringIO())


@pytest.mark.django_db
def test_exports_report_unwritable_paths_and_bad_statuses(people, tmp_path):
    with pytest.raises(CommandError, match="cannot write"):
        call_command("export_xref", str(tmp_path / "missing" / "x.csv"), stdout=io.StringIO())
    with pytest.raises(CommandError, match="unknown status"):
        call_command("export_candidates", str(tmp_path / "c.csv"), "--status", "bogus", stdout=io.StringIO())
