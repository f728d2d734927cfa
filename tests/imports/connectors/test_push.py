from __future__ import annotations

import json
import time

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.crypto import CIPHERTEXT_PREFIX
from accounts.roles import Role
from crmhub.models import Customer, SourceRecord
from imports.api.connectors import PushThrottle
from imports.choices import RunKind, RunStatus
from imports.connectors.push import source_webhook_rotate, webhook_sign
from imports.models import ImportRun, MappingTemplate, PushRequest
from imports.services import import_run_rollback
from tests.conftest import make_user
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/sources/{}/records/"


@pytest.fixture
def shop():
    return SourceFactory(code="shop")


@pytest.fixture
def pos():
    return SourceFactory(code="pos")


@pytest.fixture
def shop_client(django_user_model, shop):  # noqa: ANN001
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, shop)
    return user


def api_for(user) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def post(client: APIClient, code: str, body, **headers):  # noqa: ANN001, ANN003, ANN201
    data = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False)
    return client.post(URL.format(code), data=data, content_type="application/json", **headers)


def test_it_stores_a_batch_through_the_pipeline_and_reports_each_record(shop_client, shop):
    body = [
        {"source_key": "S1", "full_name": "张三", "mobile": "138 0013 8000", "id_number": "11010519491231002X"},
        {"id": 2, "full_name": "李四", "mobile": "12345", "note": "vip"},
        {"full_name": "no key"},
        "not an object",
        {"source_key": "S1", "full_name": "dup"},
    ]
    response = post(api_for(shop_client), "shop", body)
    assert response.status_code == 207, response.content
    data = response.json()
    statuses = [r["status"] for r in data["records"]]
    assert statuses == ["created", "created", "rejected", "rejected", "rejected"]
    assert "mobile" in data["records"][1]["flags"]
    assert data["records"][2]["errors"] == {"": "the record has no source_key (or id)"}
    assert (data["created"], data["invalid"], data["errors"]) == (2, 1, 3)
    run = ImportRun.objects.get(pk=data["run"])
    assert (run.kind, run.status, run.created_by) == (RunKind.PUSH, RunStatus.COMPLETED, shop_client)
    record = SourceRecord.objects.get(source=shop, source_key="S1")
    assert record.customer.mobile == "+8613800138000"
    assert record.normalized["id_number"].startswith(CIPHERTEXT_PREFIX)
    assert SourceRecord.objects.get(source=shop, source_key="2").raw["note"] == "vip"
    assert run.issues.count() == 4  # three rejected, one stored with a flagged value


def test_it_updates_on_a_second_push_and_the_run_rolls_back(shop_client, shop):
    client = api_for(shop_client)
    post(client, "shop", {"source_key": "A", "full_name": "王五"})
    second = post(client, "shop", [{"source_key": "A", "full_name": "王五六"}, {"source_key": "B", "full_name": "赵"}])
    assert second.status_code == 200
    assert [r["status"] for r in second.json()["records"]] == ["updated", "created"]
    assert (
        post(client, "shop", {"source_key": "A", "full_name": "王五六"}).json()["records"][0]["status"] == "unchanged"
    )
    import_run_rollback(run_id=second.json()["run"])
    assert SourceRecord.objects.get(source=shop, source_key="A").normalized["full_name"] == "王五"
    assert not SourceRecord.objects.filter(source_key="B").exists()


def test_it_maps_other_fields_through_the_source_template(shop_client, shop):
    MappingTemplate.objects.create(
        source=shop, name="t", headers=["手机"], header_signature="x", mapping={"手机": "mobile"}, key_columns=["id"]
    )
    post(api_for(shop_client), "shop", {"id": "M1", "手机": "13900139000"})
    assert SourceRecord.objects.get(source_key="M1").normalized["mobile"] == "+8613900139000"


def test_it_answers_a_repeated_idempotency_key_without_writing_twice(shop_client, shop):
    client = api_for(shop_client)
    body = [{"source_key": "K1", "full_name": "甲"}]
    first = post(client, "shop", body, HTTP_IDEMPOTENCY_KEY="abc-1")
    again = post(client, "shop", body, HTTP_IDEMPOTENCY_KEY="abc-1")
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert ImportRun.objects.filter(kind=RunKind.PUSH).count() == 1
    assert SourceRecord.history.filter(source_key="K1").count() == 1
    other = post(client, "shop", [{"source_key": "K1", "full_name": "乙"}], HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 422 and "different request body" in other.json()["message"]
    assert PushRequest.objects.count() == 1


def test_it_refuses_malformed_json_and_an_oversized_batch(shop_client, settings):
    client = api_for(shop_client)
    bad = post(client, "shop", b'{"source_key": "x",')
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]
    settings.CRMHUB_PUSH_MAX_BATCH = 3
    big = post(client, "shop", [{"source_key": str(i)} for i in range(4)])
    assert big.status_code == 413 and "at most 3" in big.json()["message"]
    assert post(client, "shop", []).status_code == 400
    assert not SourceRecord.objects.exists() and not ImportRun.objects.exists()


def test_it_refuses_a_wrong_token_another_sources_client_and_no_token(shop_client, pos, django_user_model):
    body = {"source_key": "x"}
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert post(wrong, "shop", body).status_code == 401
    assert post(APIClient(), "shop", body).status_code in (401, 403)
    pos_bot = make_user(django_user_model, "pos_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", pos_bot, pos)
    assert post(api_for(pos_bot), "shop", body).status_code == 403
    assert post(api_for(shop_client), "pos", body).status_code == 403
    assert post(api_for(shop_client), "nosuch", body).status_code == 404
    assert post(api_for(pos_bot), "pos", body).status_code == 200
    assert not SourceRecord.objects.filter(source__code="shop").exists()


def test_it_throttles_a_client(shop_client, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(PushThrottle, "THROTTLE_RATES", {"push": "2/min"})
    client = api_for(shop_client)
    codes = [post(client, "shop", {"source_key": str(i)}).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    cache.clear()


def test_it_accepts_a_signed_webhook_and_refuses_bad_stale_and_replayed_ones(shop):
    secret = source_webhook_rotate(source=shop)
    client = APIClient()
    body = json.dumps([{"source_key": "W1", "full_name": "钱七"}]).encode()

    def send(payload: bytes, ts: str, signature: str):  # noqa: ANN202
        return client.post(
            "/api/v1/sources/shop/webhook/",
            data=payload,
            content_type="application/json",
            HTTP_X_CRMHUB_TIMESTAMP=ts,
            HTTP_X_CRMHUB_SIGNATURE=signature,
        )

    now = str(int(time.time()))
    ok = send(body, now, webhook_sign(secret, now, body))
    assert ok.status_code == 200 and ok.json()["created"] == 1
    assert send(body, now, webhook_sign(secret, now, body)).status_code == 409  # replayed
    assert send(body, now, webhook_sign("wrong", now, body)).status_code == 401
    stale = str(int(time.time()) - 3600)
    assert send(body, stale, webhook_sign(secret, stale, body)).status_code == 401
    tampered = body.replace(b"W1", b"W2")
    assert send(tampered, now, webhook_sign(secret, now, body)).status_code == 401
    assert SourceRecord.objects.filter(source=shop).count() == 1
    assert Customer.objects.count() == 1
