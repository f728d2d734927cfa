from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crmhub.choices import CustomerStatus
from tests.factories import CustomerFactory, InteractionFactory, SourceFactory, SourceRecordFactory

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_it_exchanges_a_password_for_a_token(steward):
    response = APIClient().post("/api/v1/auth/token/", {"username": steward.username, "password": "pw-sam_steward"})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["token"]
    # The key works as ``Authorization: Token KEY`` (an accounts.ApiToken, stored hashed).
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/v1/customers/").status_code == 200


def test_it_refuses_a_wrong_password_with_an_actionable_message(steward):
    response = APIClient().post("/api/v1/auth/token/", {"username": steward.username, "password": "nope"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and "details" in body


def test_it_requires_authentication():
    response = APIClient().get("/api/v1/customers/")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_it_finds_a_customer_by_a_differently_formatted_mobile(steward):
    wanted = CustomerFactory(mobile="+8613800138000", full_name="王芳")
    CustomerFactory(mobile="+8613900139000")
    for text in ["138 0013 8000", "+86-138-0013-8000", "0086 13800138000", "8613800138000"]:
        body = api_for(steward).get("/api/v1/customers/", {"q": text}).json()
        assert [c["id"] for c in body["results"]] == [wanted.pk], text


def test_it_finds_by_email_id_number_member_number_and_pinyin(steward):
    wanted = CustomerFactory(
        full_name="刘洋",
        name_pinyin="liuyang",
        email="liu.yang@example.com",
        id_number="11010519491231002X",
        member_no="M0001",
    )
    CustomerFactory(full_name="陈静", name_pinyin="chenjing")
    client = api_for(steward)
    for text in ["LIU.YANG@example.com", "11010519491231002x", "M0001", "liuyang", "Liu Yang", "刘洋"]:
        ids = [c["id"] for c in client.get("/api/v1/customers/", {"q": text}).json()["results"]]
        assert ids == [wanted.pk], text


def test_it_paginates_customer_lists(steward):
    CustomerFactory.create_batch(3)
    body = api_for(steward).get("/api/v1/customers/", {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]


def test_it_shows_a_customer_with_its_source_records_and_interactions(steward):
    customer = CustomerFactory(full_name="赵敏")
    SourceRecordFactory(customer=customer, source=SourceFactory(code="erp"), source_key="CUST-1")
    InteractionFactory(customer=customer, title="退货")
    body = api_for(steward).get(f"/api/v1/customers/{customer.pk}/").json()
    assert body["values"]["full_name"] == "赵敏"
    assert [(r["source"], r["source_key"]) for r in body["source_records"]] == [("erp", "CUST-1")]
    assert [i["title"] for i in body["interactions"]] == ["退货"]
    records = api_for(steward).get(f"/api/v1/customers/{customer.pk}/source-records/").json()
    assert records["results"][0]["source_key"] == "CUST-1"
    timeline = api_for(steward).get(f"/api/v1/customers/{customer.pk}/interactions/").json()
    assert timeline["results"][0]["title"] == "退货"


def test_it_masks_personal_data_for_support(support):
    customer = CustomerFactory(
        full_name="张伟", mobile="+8613800138000", email="zhang@example.com", id_number="11010519491231002X"
    )
    SourceRecordFactory(customer=customer)
    body = api_for(support).get(f"/api/v1/customers/{customer.pk}/").json()
    assert body["values"]["mobile"] == "138****8000"
    assert body["values"]["email"] == "z***@example.com"
    assert body["values"]["full_name"] == "张*"
    assert body["values"]["id_number"] == "110105********002X"
    assert body["source_records"][0]["normalized"]["mobile"] == "138****8000"
    assert "13800138000" not in str(body)


def test_it_answers_an_old_id_of_a_merged_customer_with_the_survivor(steward):
    survivor = CustomerFactory(full_name="孙丽")
    merged = CustomerFactory(status=CustomerStatus.MERGED, merged_into=survivor)
    body = api_for(steward).get(f"/api/v1/customers/{merged.pk}/").json()
    assert body["id"] == survivor.pk and body["merged_into"] == survivor.pk and body["requested_id"] == merged.pk
    assert merged.pk not in [c["id"] for c in api_for(steward).get("/api/v1/customers/").json()["results"]]


def test_it_answers_404_for_unknown_customers(steward):
    assert api_for(steward).get("/api/v1/customers/999999/").status_code == 404
    assert api_for(steward).get("/api/v1/customers/abc/").status_code == 404


def test_it_serves_the_schema_and_offline_docs(steward, client):
    client.force_login(steward)
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"/api/v1/customers/" in schema.content
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower() and "/static/drf_spectacular_sidecar/" in html
