"""The light single-record push path (imports/single.py) against the batch pipeline, its
dictionary cache, its permissions in one query, and its behaviour under concurrency."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from accounts.crypto import CIPHERTEXT_PREFIX, unseal_values
from accounts.roles import Role
from accounts.services import api_token_create
from crmhub.choices import ChangeChannel, Sensitivity
from crmhub.models import ChangeEvent, Customer, FieldDefinition, SourceRecord
from imports.choices import ChangeAction, IssueKind, RunKind
from imports.connectors import push
from imports.locks import STRIPE_LOCK_CLASS, key_stripe
from imports.models import ImportRun, ImportRunChange, ImportRunIssue, MappingTemplate, PushRequest
from imports.services import import_run_rollback
from tests.conftest import make_user
from tests.factories import SourceFactory
from tests.imports.connectors.test_push import api_for, post

RECORD = {
    "source_key": "R1",
    "full_name": "张三",
    "mobile": "138 0013 8000",
    "email": "Zhang.San@Example.com ",
    "id_number": "11010519491231002X",
    "birth_date": "1949-12-31",
    "address": "北京市朝阳区建国路88号",
    "gender": "女",
    "note": "vip",
    "phone": "12345",  # flagged: stored raw, reported
}


@pytest.fixture
def shop():
    return SourceFactory(code="shop")


@pytest.fixture
def bot(django_user_model, shop):  # noqa: ANN001
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, shop)
    return user


def _snapshot(source, run_id: int) -> dict:  # noqa: ANN001
    """What a push stored, without ids, timestamps and ciphertexts (which differ by design)."""
    record = SourceRecord.objects.get(source=source, source_key="R1")
    customer = Customer.objects.get(pk=record.customer_id)
    ref = f"import_run:{run_id}"
    skip = {"id", "created_at", "updated_at", "version"}
    customer_values = {
        f.attname: getattr(customer, f.attname) for f in Customer._meta.concrete_fields if f.attname not in skip
    }
    history = [
        (h.history_type, h.change_channel, h.change_ref == ref, h.history_user_id, h.id_number, h.mobile, h.full_name)
        for h in Customer.history.filter(id=customer.pk)
    ]
    record_history = [
        (h.history_type, h.change_channel, h.change_ref == ref, h.history_user_id)
        + (unseal_values(h.normalized), unseal_values(h.raw))
        for h in SourceRecord.history.filter(id=record.pk)
    ]
    events = [
        (e.event_type, e.changed_fields, unseal_values(e.data), e.channel, e.ref == ref, e.user_id)
        for e in ChangeEvent.objects.filter(customer_id=customer.pk)
    ]
    changes = [
        (c.action, c.customer_id == customer.pk, c.source_record_id == record.pk, c.before)
        for c in ImportRunChange.objects.filter(run_id=run_id)
    ]
    issues = [
        (i.kind, i.row_number, i.source_key, unseal_values(i.raw), i.reasons)
        for i in ImportRunIssue.objects.filter(run_id=run_id)
    ]
    run = ImportRun.objects.get(pk=run_id)
    return {
        "record": (
            unseal_values(record.raw),
            unseal_values(record.normalized),
            record.flags,
            record.record_hash,
            record.normalized.get("id_number", "").startswith(CIPHERTEXT_PREFIX),
        ),
        "customer": customer_values,
        "customer_history": history,
        "record_history": record_history,
        "events": events,
        "changes": changes,
        "issues": issues,
        "run": (run.kind, run.status, run.created_by_id, run.rows_total, run.rows_done, run.options),
        "counts": (run.created, run.updated, run.unchanged, run.invalid, run.errors),
    }


def _through(path: str, source, user, record: dict) -> dict:  # noqa: ANN001
    """Store ``record`` through one path and return what it stored; everything is rolled back."""
    with transaction.atomic():
        context = push.push_context(code=source.code, user=user)
        if path == "single":
            result = push.push_records(user=user, payload=record, context=context)
            body = result.body
        else:
            _status, body, _run = push._process(context=context, user=user, records=[record], channel_ref="push")
        snap = _snapshot(source, body["run"])
        snap["answer"] = {k: v for k, v in body.items() if k != "run"}
        transaction.set_rollback(True)
    return snap


def test_it_stores_one_record_exactly_as_the_batch_pipeline_does(bot, shop):
    # A new record, then a change to it, then the same again: each step through both paths.
    single, batch = _through("single", shop, bot, RECORD), _through("batch", shop, bot, RECORD)
    assert single == batch
    assert single["answer"]["records"] == [
        {"index": 0, "source_key": "R1", "status": "created", "flags": {"phone": single["issues"][0][4]["phone"]}}
    ]
    assert single["record"][4] is True  # the ID number is sealed in the source record
    assert single["customer"]["mobile"] == "+8613800138000" and single["customer"]["city"]
    assert single["events"][0][0] == "created" and single["events"][0][3] == ChangeChannel.API
    assert single["issues"][0][0] == IssueKind.INVALID

    push.push_records(user=bot, payload=RECORD, context=push.push_context(code="shop", user=bot))
    changed = {**RECORD, "full_name": "张三丰", "note": "vvip"}
    single, batch = _through("single", shop, bot, changed), _through("batch", shop, bot, changed)
    assert single == batch
    assert single["answer"]["updated"] == 1 and single["changes"][0][0] == ChangeAction.UPDATED
    assert unseal_values(single["changes"][0][3]["normalized"])["full_name"] == "张三"  # before, for rollback
    single, batch = _through("single", shop, bot, RECORD), _through("batch", shop, bot, RECORD)
    assert single == batch and single["answer"]["unchanged"] == 1


def test_a_single_push_creates_updates_and_rolls_back(bot, shop):
    client = api_for(bot)
    first = post(client, "shop", {"source_key": "A", "full_name": "王五", "mobile": "13900139000"})
    assert first.status_code == 200 and first.json()["created"] == 1
    second = post(client, "shop", {"source_key": "A", "full_name": "王五六", "mobile": "13900139000"})
    assert second.json()["records"][0]["status"] == "updated"
    import_run_rollback(run_id=second.json()["run"])
    assert SourceRecord.objects.get(source=shop, source_key="A").normalized["full_name"] == "王五"
    import_run_rollback(run_id=first.json()["run"])
    assert not SourceRecord.objects.filter(source_key="A").exists() and not Customer.objects.exists()


def test_a_single_push_matches_in_real_time(bot, shop):
    crm = SourceFactory(code="crm")
    earlier = push.push_records(
        user=bot,
        payload=[{"source_key": "C1", "full_name": "张伟", "mobile": "13800000001", "birth_date": "1985-03-04"}],
        context=push.push_context(code=crm.code, user=bot),
    )
    assert earlier.status == 200
    existing = SourceRecord.objects.get(source=crm).customer_id
    answer = post(
        api_for(bot),
        "shop",
        {"source_key": "S1", "full_name": "张伟", "mobile": "138-0000-0001", "birth_date": "1985-03-04"},
    )
    assert answer.status_code == 200
    record = SourceRecord.objects.get(source=shop, source_key="S1")
    assert record.customer_id == existing  # merged into the customer the CRM record has
    assert ImportRun.objects.get(pk=answer.json()["run"]).log[0]["merged"] == 1


def test_a_pushed_batch_is_matched_by_a_worker_after_it_commits(bot, shop, django_capture_on_commit_callbacks):
    from imports.tasks import import_run_match_task

    crm = SourceFactory(code="crm")
    push.push_records(
        user=bot,
        payload={"source_key": "C1", "full_name": "张伟", "mobile": "13800000001", "birth_date": "1985-03-04"},
        context=push.push_context(code=crm.code, user=bot),
    )
    existing = SourceRecord.objects.get(source=crm).customer_id
    batch = [
        {"source_key": "S1", "full_name": "张伟", "mobile": "13800000001", "birth_date": "1985-03-04"},
        {"source_key": "S2", "full_name": "李娜", "mobile": "13900000002"},
    ]
    with django_capture_on_commit_callbacks() as callbacks:
        answer = post(api_for(bot), "shop", batch)
    assert answer.status_code == 200 and len(callbacks) == 1
    assert SourceRecord.objects.get(source=shop, source_key="S1").customer_id != existing  # not yet
    import_run_match_task(answer.json()["run"])  # what the worker runs
    assert SourceRecord.objects.get(source=shop, source_key="S1").customer_id == existing
    log = ImportRun.objects.get(pk=answer.json()["run"]).log
    assert log[0]["matching"] == "real time" and log[0]["merged"] == 1
    import_run_match_task(answer.json()["run"])  # a redelivered message does nothing more
    assert ImportRun.objects.get(pk=answer.json()["run"]).log == log


def test_the_dictionary_cache_follows_an_admins_changes(bot, shop):
    client = api_for(bot)
    FieldDefinition.objects.filter(name="company").update(sensitivity=Sensitivity.INTERNAL)
    post(client, "shop", {"source_key": "D1", "company": "甲公司"})
    assert SourceRecord.objects.get(source_key="D1").normalized["company"] == "甲公司"
    # Made secret with a queryset update (no save, no signal): the next push seals it.
    FieldDefinition.objects.filter(name="company").update(sensitivity=Sensitivity.SECRET)
    post(client, "shop", {"source_key": "D2", "company": "乙公司"})
    assert SourceRecord.objects.get(source_key="D2").normalized["company"].startswith(CIPHERTEXT_PREFIX)
    # Deactivated: no longer mapped (kept raw only); a new field is mapped at once.
    FieldDefinition.objects.filter(name="company").update(is_active=False)
    FieldDefinition.objects.create(name="loyalty_tier", label_en="Tier", label_zh="等级")
    post(client, "shop", {"source_key": "D3", "company": "丙公司", "loyalty_tier": "gold"})
    stored = SourceRecord.objects.get(source_key="D3")
    assert "company" not in stored.normalized and stored.raw["company"] == "丙公司"
    assert stored.normalized["loyalty_tier"] == "gold"
    # A template saved later maps its columns for the next push.
    MappingTemplate.objects.create(
        source=shop, name="t", headers=["手机"], header_signature="x", mapping={"手机": "mobile"}, key_columns=["id"]
    )
    post(client, "shop", {"id": "D4", "手机": "13900139000"})
    assert SourceRecord.objects.get(source_key="D4").normalized["mobile"] == "+8613900139000"


def test_a_single_push_makes_few_queries(bot, shop, django_assert_max_num_queries):
    client = api_for(bot)
    post(client, "shop", {"source_key": "warm", "full_name": "预热"})
    # token (and its throttled use log), the context query, the lock/look-up, the writes,
    # real-time matching (dedup.services.records_match, its own queries), the transaction.
    # PostgreSQL writes every row in one statement; SQLite one statement a row.
    with django_assert_max_num_queries(13 if connection.vendor == "postgresql" else 20):
        answer = post(client, "shop", {"source_key": "Q1", "full_name": "钱一"}, HTTP_IDEMPOTENCY_KEY="q-1")
    assert answer.status_code == 200
    with django_assert_max_num_queries(3):
        again = post(client, "shop", {"source_key": "Q1", "full_name": "钱一"}, HTTP_IDEMPOTENCY_KEY="q-1")
    assert again["Idempotent-Replayed"] == "true" and again.json() == answer.json()


def test_permissions_in_one_query_hold_as_before(bot, shop, django_user_model):
    pos = SourceFactory(code="pos")
    body = {"source_key": "x"}
    # Through a group's object permission.
    grouped = make_user(django_user_model, "grouped_bot", Role.API_CLIENT)
    team = Group.objects.create(name="pos-pushers")
    grouped.groups.add(team)
    assign_perm("crmhub.push_to_source", team, pos)
    assert post(api_for(grouped), "pos", body).status_code == 200
    assert post(api_for(grouped), "shop", body).status_code == 403
    # A superuser may, without object permissions.
    boss = make_user(django_user_model, "boss", Role.ADMIN, is_superuser=True)
    assert post(api_for(boss), "pos", body).status_code == 200
    # Scoped tokens: the push scope is needed, and a token limited to sources keeps to them.
    _t, write_only = api_token_create(user=bot, name="w", scopes=["write"])
    _t, shop_only = api_token_create(user=bot, name="p", scopes=["push"], sources=[shop])
    _t, pos_only = api_token_create(user=bot, name="q", scopes=["push"], sources=[pos])
    from rest_framework.test import APIClient

    def with_key(key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    assert post(with_key(write_only), "shop", body).status_code == 403
    assert post(with_key(shop_only), "shop", body).status_code == 200
    assert post(with_key(pos_only), "shop", body).status_code == 403  # the token may not use shop
    assert post(with_key(pos_only), "pos", body).status_code == 403  # the user may not push to pos
    assert post(with_key(shop_only), "nosuch", body).status_code == 404


def test_a_single_record_rejected_early_is_reported_as_before(bot, shop):
    answer = post(api_for(bot), "shop", {"full_name": "no key", "nested": {"a": 1}})
    assert answer.status_code == 422
    assert answer.json()["records"][0]["status"] == "rejected"
    assert ImportRun.objects.get(pk=answer.json()["run"]).issues.count() == 1


#
# PostgreSQL: concurrency (real connections, real locks)
#


def _in_threads(n: int, fn) -> list:  # noqa: ANN001
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# Concurrency of pushes needs row locks and advisory locks, which only PostgreSQL has (SQLite takes one
# writer at a time, so nothing can race there). CI's second pass runs these against the real PostgreSQL.
postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks and advisory locks")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_idempotency_key_write_once(django_user_model):
    shop = SourceFactory(code="shop")
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, shop)
    body = {"source_key": "C1", "full_name": "并发", "mobile": "13700137000"}

    def send(_i: int):  # noqa: ANN202
        return post(api_for(user), "shop", body, HTTP_IDEMPOTENCY_KEY="same-key")

    answers = _in_threads(4, send)
    assert all(a.status_code == 200 for a in answers), answers
    assert len({a.json()["run"] for a in answers}) == 1
    assert sum(a.get("Idempotent-Replayed") == "true" for a in answers) == 3
    assert SourceRecord.objects.count() == 1 and Customer.objects.count() == 1
    assert ImportRun.objects.filter(kind=RunKind.PUSH).count() == 1 and PushRequest.objects.count() == 1
    assert ChangeEvent.objects.count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_pushes_of_one_key_store_one_record(django_user_model):
    shop = SourceFactory(code="shop")
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, shop)

    def send(i: int):  # noqa: ANN202
        return post(api_for(user), "shop", {"source_key": "K", "full_name": f"名{i % 2}"})

    answers = _in_threads(6, send)
    assert all(a.status_code == 200 for a in answers), answers
    statuses = sorted(a.json()["records"][0]["status"] for a in answers)
    assert statuses.count("created") == 1, statuses
    assert SourceRecord.objects.count() == 1 and Customer.objects.count() == 1
    assert ImportRunChange.objects.filter(action=ChangeAction.CREATED).count() == 1
    # Every update was logged with the values it replaced, in order: rollback stays exact.
    assert ImportRunChange.objects.filter(action=ChangeAction.UPDATED).count() == statuses.count("updated")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_single_pushes_share_the_source_lock_and_wait_for_a_batch(django_user_model):
    shop = SourceFactory(code="shop")
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, shop)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT pg_advisory_xact_lock_shared(%s, %s)", [STRIPE_LOCK_CLASS + key_stripe("S1"), shop.pk]
            )
        # Another single push in flight holds the lock shared: this one does not wait for it.
        assert post(api_for(user), "shop", {"source_key": "S1"}).status_code == 200
        with other.cursor() as cursor:
            cursor.execute("COMMIT")
    finally:
        other.close()
    # A batch holds it exclusively while it classifies and writes a chunk (the batch writer's
    # own lock_source, in another thread's connection): the single push waits for it.
    from imports.writers import writer_for_connection

    locked, release = threading.Event(), threading.Event()

    def batch_chunk() -> None:
        try:
            with transaction.atomic():
                writer_for_connection().lock_source(shop.pk, {key_stripe("S2")})
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    batch = threading.Thread(target=batch_chunk)
    batch.start()
    try:
        assert locked.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        try:
            answer = post(api_for(user), "shop", {"source_key": "S2"})
        except Exception as exc:  # noqa: BLE001
            assert "lock timeout" in str(exc)
        else:
            pytest.fail(f"the push did not wait for the batch's lock: {answer.status_code}")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    finally:
        release.set()
        batch.join()
    assert post(api_for(user), "shop", {"source_key": "S2"}).status_code == 200
    assert SourceRecord.objects.count() == 2


@postgres_only
def test_the_query_log_shows_one_write_statement(bot, shop):
    client = api_for(bot)
    post(client, "shop", {"source_key": "warm"})
    with CaptureQueriesContext(connection) as queries:
        post(client, "shop", {"source_key": "W1", "full_name": "吴一", "phone": "123"})
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "WITH", "COPY"))]
    assert len(writes) == 1 and writes[0].startswith("WITH"), writes
