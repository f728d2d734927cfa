"""PATCH /api/v1/customers/<id>/: a person's edit through the API, with the page's checks."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.models import ChangeEvent, Customer
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:  # noqa: ANN001
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_it_edits_cleans_and_records_the_change_as_made_through_the_api(steward):
    customer = CustomerFactory(full_name="王芳", mobile="+8613800138000")
    client = api_for(steward)
    read = client.get(f"/api/v1/customers/{customer.pk}/")
    assert read.headers["ETag"] == '"1"'
    response = client.patch(
        f"/api/v1/customers/{customer.pk}/",
        {"values": {"mobile": "139 0013 9000", "city": "杭州"}},
        format="json",
        HTTP_IF_MATCH=read.headers["ETag"],
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2 and response.headers["ETag"] == '"2"'
    assert body["values"]["mobile"] == "+8613900139000" and body["values"]["city"] == "杭州"
    customer.refresh_from_db()
    assert (customer.mobile, customer.city, customer.version) == ("+8613900139000", "杭州", 2)
    latest = customer.history.first()
    assert latest.history_user == steward and latest.change_channel == ChangeChannel.API
    event = ChangeEvent.objects.filter(customer_id=customer.pk).last()
    assert event.changed_fields == ["city", "mobile"]


def test_it_refuses_a_stale_version_and_writes_nothing(steward):
    customer = CustomerFactory(full_name="王芳", version=3)
    response = api_for(steward).patch(
        f"/api/v1/customers/{customer.pk}/", {"values": {"city": "杭州"}, "version": 2}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "stale_version" and "version 3" in response.json()["message"]
    customer.refresh_from_db()
    assert (customer.city, customer.version) == ("", 3)


def test_it_needs_the_version_read(steward):
    customer = CustomerFactory()
    client = api_for(steward)
    response = client.patch(f"/api/v1/customers/{customer.pk}/", {"values": {"city": "杭州"}}, format="json")
    assert response.status_code == 400 and "version" in response.json()["details"]
    response = client.patch(
        f"/api/v1/customers/{customer.pk}/", {"values": {"city": "杭州"}}, format="json", HTTP_IF_MATCH='"x1"'
    )
    assert response.status_code == 400 and "If-Match" in response.json()["details"]


def test_it_reports_invalid_values_per_field_and_keeps_the_record(steward):
    customer = CustomerFactory(email="a@example.com")
    client = api_for(steward)
    response = client.patch(
        f"/api/v1/customers/{customer.pk}/",
        {"values": {"email": "not an email", "birth_date": "2024-13-45"}, "version": 1},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"email", "birth_date"}
    response = client.patch(
        f"/api/v1/customers/{customer.pk}/", {"values": {"status": "merged"}, "version": 1}, format="json"
    )
    assert response.status_code == 400 and set(response.json()["details"]) == {"status"}  # not a person's edit
    customer.refresh_from_db()
    assert (customer.email, customer.version) == ("a@example.com", 1)


def test_it_refuses_fields_the_role_may_not_edit(support):
    customer = CustomerFactory(full_name="王芳")
    response = api_for(support).patch(
        f"/api/v1/customers/{customer.pk}/", {"values": {"full_name": "王芳芳"}, "version": 1}, format="json"
    )
    assert response.status_code == 403 and "full_name" in response.json()["message"]
    customer.refresh_from_db()
    assert customer.full_name == "王芳"


def test_it_refuses_to_edit_a_merged_record_and_names_the_survivor(steward):
    survivor = CustomerFactory()
    merged = CustomerFactory(status=CustomerStatus.MERGED, merged_into=survivor)
    response = api_for(steward).patch(
        f"/api/v1/customers/{merged.pk}/", {"values": {"city": "杭州"}, "version": 1}, format="json"
    )
    assert response.status_code == 409 and str(survivor.pk) in response.json()["message"]
    assert Customer.objects.get(pk=survivor.pk).city == ""


def test_it_does_not_offer_put_or_delete(steward):
    customer = CustomerFactory()
    client = api_for(steward)
    assert client.put(f"/api/v1/customers/{customer.pk}/", {}, format="json").status_code == 405
    assert client.delete(f"/api/v1/customers/{customer.pk}/").status_code == 405
