"""Write lanes (imports.lanes): a chunk written by several PostgreSQL connections at once gives
the results of one connection, keeps the source's keys locked against pushes and other runs,
and rolls back as one. They run only on PostgreSQL, outside a test transaction (other
connections must see the run): CI's PostgreSQL pass runs them."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, connections

from accounts.crypto import unseal_values
from crmhub.models import ChangeEvent, Customer, SourceRecord
from crmhub.services import source_get_or_create
from imports import pipeline
from imports.choices import ChangeAction, RunStatus
from imports.lanes import WriteLanes
from imports.locks import KEY_STRIPES, key_stripe
from imports.models import ImportRun, ImportRunChange, ImportRunIssue
from imports.pipeline import ImportPipeline
from imports.services import file_run_from_path, import_run_execute, import_run_rollback, mapping_suggest
from tests.imports.helpers import csv_bytes, write

# Lanes exist only on PostgreSQL (SQLite has one writer, and its imports keep the one-connection path
# that tests/imports covers on both databases); CI's PostgreSQL pass runs every test here.
pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="write lanes are PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]


def _rows(n: int, *, start: int = 0, name: str = "张") -> list[list[str]]:
    rows = []
    for i in range(start, start + n):
        mobile = f"138{i:08d}" if i % 7 else "12345"  # every 7th invalid
        email = f"u{i}@qq.com" if i % 5 else f"u{i}@gmial.com"  # every 5th flagged
        id_number = "11010519491231002X" if i % 11 == 0 else ""
        rows.append([f"K{i:04d}", f"{name}{i}", mobile, email, id_number, f"note {i}"])
    return rows


def _run(tmp_path: Path, code: str, rows: list[list[str]], name: str = "") -> ImportRun:
    path = write(tmp_path, f"{code}{name}.csv", csv_bytes(rows))
    source, _ = source_get_or_create(code=code)
    return file_run_from_path(
        path=str(path), source=source, enqueue=False, plan_for=lambda layout: mapping_suggest(headers=layout.headers)
    )


def _execute(run: ImportRun, chunk_rows: int) -> bool:
    return ImportPipeline(ImportRun.objects.get(pk=run.pk), chunk_rows=chunk_rows).execute()


def _state(code: str) -> dict:
    """What a source holds, without ids or ciphertexts (sealing is randomised)."""
    records = {
        sr.source_key: (unseal_values(sr.normalized), sr.flags, sr.record_hash)
        for sr in SourceRecord.objects.filter(source__code=code)
    }
    return {
        "records": records,
        "customers": Customer.objects.filter(source_records__source__code=code).count(),
        "history": sorted(
            SourceRecord.history.filter(source__code=code).values_list("source_key", "history_type", "change_ref")
        ),
    }


def _run_figures(run: ImportRun) -> dict:
    run.refresh_from_db()
    samples = {kind: [(s["row"], s["key"]) for s in items] for kind, items in run.samples.items()}
    return {
        "counts": (run.rows_done, run.created, run.updated, run.unchanged, run.invalid, run.errors),
        "samples": samples,
        "issues": sorted(
            ImportRunIssue.objects.filter(run=run).values_list("row_number", "kind", "source_key", "reasons")
        ),
        "log": sorted(
            ImportRunChange.objects.filter(run=run).values_list("action", "source_record__source_key", "before")
        ),
        "events": ChangeEvent.objects.filter(ref=f"import_run:{run.pk}").count(),
    }


@pytest.fixture(autouse=True)
def small_chunks_in_lanes(monkeypatch):  # noqa: ANN001, ANN201
    """The tests' chunks are small: write them in lanes all the same."""
    monkeypatch.setattr(pipeline, "LANE_MIN_ROWS", 1)


@pytest.fixture
def chunks_in_lanes(monkeypatch):  # noqa: ANN001, ANN201
    """Counts the chunks written through lanes."""
    calls = []
    real = WriteLanes.write_chunk

    def counted(self, parts, *steps):  # noqa: ANN001, ANN002, ANN202
        calls.append(len(parts))
        return real(self, parts, *steps)

    monkeypatch.setattr(WriteLanes, "write_chunk", counted)
    return calls


def _written(classified) -> list:  # noqa: ANN001
    return [*classified.new, *(row for row, _found in classified.changed)]


def _backends(settled_at: int | None = None) -> int:
    """Backends connected to the test database; with ``settled_at``, waits a little for closed
    connections' backends to leave (a backend ends shortly after its client closed it)."""
    for _attempt in range(100):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            count = cursor.fetchone()[0]
        if settled_at is None or count <= settled_at:
            return count
        time.sleep(0.1)
    return count


def test_it_writes_in_lanes_what_one_connection_writes(tmp_path, settings, chunks_in_lanes):
    first = _rows(150)
    second = _rows(60, start=120, name="李") + _rows(20, start=100)  # 30 changed, 30 new, 20 unchanged
    second[5][0] = "K0003"  # instead of K0125: a record of the first file changed
    second.insert(70, list(second[10]))  # a key repeated within the file, in a later chunk
    backends = _backends()
    figures = {}
    for code, lanes in (("one", 1), ("three", 3)):
        settings.CRMHUB_IMPORT_WRITE_LANES = lanes
        runs = [_run(tmp_path, code, first, "a"), _run(tmp_path, code, second, "b")]
        assert all(_execute(run, chunk_rows=23) for run in runs)
        figures[code] = ([_run_figures(run) for run in runs], _state(code))
        ImportRun.objects.filter(pk__in=[r.pk for r in runs]).update(status=RunStatus.COMPLETED)
        import_run_rollback(run_id=runs[1].pk)
        figures[code] += (_state(code),)
    assert chunks_in_lanes == [3] * (math.ceil(150 / 23) + math.ceil(81 / 23))  # the 3-lane runs' chunks
    one, three = figures["one"], figures["three"]
    assert one[0][1]["counts"][:4] == (81, 30, 30, 20) and one[0][1]["counts"][5] == 1
    for a, b in zip(one[0], three[0], strict=True):
        assert {k: v for k, v in a.items() if k != "log"} == {k: v for k, v in b.items() if k != "log"}
        assert [(action, key) for action, key, _b in a["log"]] == [(action, key) for action, key, _b in b["log"]]
    # The records, their customers and history, and what the rollback of the second run left.
    assert one[1]["records"] == three[1]["records"] and one[1]["customers"] == three[1]["customers"] == 180
    assert [h[:2] for h in one[1]["history"]] == [h[:2] for h in three[1]["history"]]
    assert one[2]["records"] == three[2]["records"] and len(one[2]["records"]) == 150
    # New ids are drawn in file order, as by one connection (real-time matching takes records in id order).
    by_id = list(SourceRecord.objects.filter(source__code="three").order_by("id").values_list("source_key", flat=True))
    assert by_id == sorted(by_id)
    customers = SourceRecord.objects.filter(source__code="three").order_by("customer_id")
    assert list(customers.values_list("source_key", flat=True)) == by_id
    assert _backends(settled_at=backends) == backends  # every lane's connection was closed


def test_a_cancelled_run_in_lanes_stops_after_the_chunk(tmp_path, settings, chunks_in_lanes):
    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    run = _run(tmp_path, "cancelled", _rows(60))
    ImportRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert _execute(run, chunk_rows=20) is False
    run.refresh_from_db()
    assert (run.rows_done, run.created, len(chunks_in_lanes)) == (20, 20, 1)
    assert SourceRecord.objects.filter(source__code="cancelled").count() == 20


def test_a_small_chunk_is_written_by_the_runs_own_connection(tmp_path, settings, monkeypatch, chunks_in_lanes):
    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    monkeypatch.setattr(pipeline, "LANE_MIN_ROWS", 10)
    run = _run(tmp_path, "small", _rows(15))
    assert _execute(run, chunk_rows=10)
    run.refresh_from_db()
    assert chunks_in_lanes == [2] and (run.rows_done, run.created) == (15, 15)  # 10 rows in lanes, then 5 not
    assert SourceRecord.objects.filter(source__code="small").count() == 15


def test_a_failing_lane_rolls_the_whole_chunk_back(tmp_path, settings, monkeypatch):
    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    rows = _rows(60)
    doomed = rows[45][0]  # in the third chunk; one lane writes it, the other lane the rest
    real = ImportPipeline._write_classified

    def fails_after_writing(self, writer, classified, now):  # noqa: ANN001, ANN202
        real(self, writer, classified, now)
        if any(row.key == doomed for row in _written(classified)):
            raise DatabaseError("lane lost")

    monkeypatch.setattr(ImportPipeline, "_write_classified", fails_after_writing)
    backends = _backends()
    run = _run(tmp_path, "failing", rows)
    with pytest.raises(DatabaseError, match="lane lost"):
        _execute(run, chunk_rows=20)
    run.refresh_from_db()
    assert (run.rows_done, run.created) == (40, 40)
    keys = set(SourceRecord.objects.filter(source__code="failing").values_list("source_key", flat=True))
    assert keys == {r[0] for r in rows[:40]}  # nothing of the third chunk, from either lane
    assert ImportRunChange.objects.filter(run=run).count() == 40
    assert Customer.objects.count() == 40 and SourceRecord.history.count() == 40
    assert _backends(settled_at=backends) == backends


def test_a_push_of_a_key_waits_for_the_lane_writing_it(tmp_path, settings, monkeypatch, django_user_model):
    from imports.connectors.push import push_records

    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    rows = _rows(6)  # a few keys: most stripes stay free
    key = rows[3][0]
    written, release = threading.Event(), threading.Event()
    real = ImportPipeline._write_classified

    def pauses_after_writing(self, writer, classified, now):  # noqa: ANN001, ANN202
        real(self, writer, classified, now)
        if any(row.key == key for row in _written(classified)):
            written.set()
            release.wait(60)

    monkeypatch.setattr(ImportPipeline, "_write_classified", pauses_after_writing)
    run = _run(tmp_path, "raced", rows)
    source = run.source
    user = django_user_model.objects.create_user(username="bot", password="pw-bot-1")
    outcome = {}

    def import_in_thread() -> None:
        try:
            outcome["run"] = import_run_execute(run_id=run.pk)
        finally:
            connections.close_all()

    def push(name: str) -> dict:
        return push_records(source=source, user=user, payload={"source_key": key, "full_name": name}).body

    importer = threading.Thread(target=import_in_thread)
    importer.start()
    try:
        assert written.wait(60)
        # The lane holds the key's stripe: a push of that key waits (here: until its lock timeout) ...
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        with pytest.raises(DatabaseError, match="lock timeout"):
            push("抢先")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
        # ... while a push of a key in a stripe no lane holds goes through.
        held = {key_stripe(r[0]) for r in rows}
        free = next(f"F{i}" for i in range(1000) if key_stripe(f"F{i}") not in held)
        assert len(held) < KEY_STRIPES
        body = push_records(source=source, user=user, payload={"source_key": free, "full_name": "旁路"}).body
        assert body["created"] == 1
        # A push racing the lane on the same key, on its own connection: it waits for the lane's commit.
        raced = {}

        def racing_push() -> None:
            try:
                raced["body"] = push("后到")
            finally:
                connections.close_all()

        racer = threading.Thread(target=racing_push)
        racer.start()
        release.set()
        racer.join(60)
        importer.join(60)
    finally:
        release.set()
        importer.join(60)
    assert outcome["run"].status == RunStatus.COMPLETED and outcome["run"].created == 6
    # The push classified against what the lane committed: an update of the imported record.
    assert raced["body"]["updated"] == 1 and raced["body"]["created"] == 0
    record = SourceRecord.objects.get(source=source, source_key=key)
    assert record.normalized["full_name"] == "后到"
    assert ImportRunChange.objects.filter(source_record=record, action=ChangeAction.CREATED).count() == 1
    assert ImportRunChange.objects.filter(source_record=record, action=ChangeAction.UPDATED).count() == 1


def test_two_runs_in_lanes_and_pushes_of_one_source_at_once_finish(tmp_path, settings, django_user_model):
    """Runs of one source and single pushes of their keys, all at once: no deadlock, each key
    stored once, and every record created exactly once across them."""
    from imports.connectors.push import push_records

    settings.CRMHUB_IMPORT_WRITE_LANES = 3
    a = _run(tmp_path, "busy", _rows(300), "a")
    b = _run(tmp_path, "busy", _rows(300, start=150, name="李"), "b")
    user = django_user_model.objects.create_user(username="bot", password="pw-bot-1")
    results, errors = {}, []

    def in_thread(name: str, fn) -> threading.Thread:  # noqa: ANN001
        def target() -> None:
            try:
                results[name] = fn()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    def pushes() -> int:
        created = 0
        for i in range(140, 170):
            body = push_records(source=a.source, user=user, payload={"source_key": f"K{i:04d}", "full_name": "推"}).body
            created += body["created"]
        return created

    threads = [
        in_thread("a", lambda: _execute(a, chunk_rows=40)),
        in_thread("b", lambda: _execute(b, chunk_rows=40)),
        in_thread("push", pushes),
    ]
    for thread in threads:
        thread.join(300)
    assert not errors and results["a"] and results["b"]
    keys = list(SourceRecord.objects.filter(source=a.source).values_list("source_key", flat=True))
    assert len(keys) == len(set(keys)) == 450
    created = sum(ImportRun.objects.get(pk=r.pk).created for r in (a, b)) + results["push"]
    assert created == 450 == ImportRunChange.objects.filter(action=ChangeAction.CREATED).count()


def test_a_deadlock_through_a_finished_lane_is_detected_not_a_hang(tmp_path, settings, monkeypatch):
    """A lane that finished waits for the others as a lock wait PostgreSQL sees: a transaction
    holding a row one lane needs while waiting for a row another (finished) lane wrote is a
    deadlock the server detects and breaks, instead of three sessions waiting for ever."""
    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    first = next(f"D{i}" for i in range(100) if key_stripe(f"D{i}") % 2 == 0)  # lane 0's
    second = next(f"D{i}" for i in range(100) if key_stripe(f"D{i}") % 2 == 1)  # lane 1's
    rows = [[key, "王一", "13800138000", "", "", ""] for key in (first, second)]
    settings.CRMHUB_IMPORT_WRITE_LANES = 1
    assert _execute(_run(tmp_path, "dl", rows, "a"), chunk_rows=10)
    settings.CRMHUB_IMPORT_WRITE_LANES = 2
    changed = [[key, "王二", "13800138000", "", "", ""] for key in (first, second)]
    run = _run(tmp_path, "dl", changed, "b")
    first_written = threading.Event()
    real = ImportPipeline._write_classified

    def signals(self, writer, classified, now):  # noqa: ANN001, ANN202
        real(self, writer, classified, now)
        if any(row.key == first for row in _written(classified)):
            first_written.set()

    monkeypatch.setattr(ImportPipeline, "_write_classified", signals)
    other = connections.create_connection("default")
    outcome: dict = {}

    def import_in_thread() -> None:
        try:
            outcome["run"] = import_run_execute(run_id=run.pk)
        finally:
            connections.close_all()

    importer = threading.Thread(target=import_in_thread)
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            # A guard, far above the deadlock check's second: without it a hang would hang the test.
            cursor.execute("SET LOCAL lock_timeout = '30s'")
            cursor.execute("SELECT id FROM crmhub_sourcerecord WHERE source_key = %s FOR UPDATE", [second])
        importer.start()
        assert first_written.wait(60)
        # Lane 1 waits for this transaction's row; this transaction now waits for lane 0's row,
        # and lane 0 (finished) for lane 1.
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT id FROM crmhub_sourcerecord WHERE source_key = %s FOR UPDATE", [first])
        except DatabaseError as exc:
            outcome["other"] = str(exc)
        with other.cursor() as cursor:
            cursor.execute("ROLLBACK")
        importer.join(120)
        assert not importer.is_alive(), "the import hung"
    finally:
        other.close()
        importer.join(120)
    finished = outcome["run"]
    broken = [
        text for text in (outcome.get("other", ""), finished.message if finished.status == RunStatus.FAILED else "")
    ]
    assert any("deadlock" in text for text in broken), (outcome, finished.status, finished.message)
    # Whichever side the server chose, the chunk is whole or absent: never one lane's half.
    names = set(SourceRecord.objects.filter(source__code="dl").values_list("normalized__full_name", flat=True))
    assert names == ({"王二"} if finished.status == RunStatus.COMPLETED else {"王一"})
