from __future__ import annotations

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import AuditEvent, AuditEventKind
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def reveals():  # noqa: ANN201
    return AuditEvent.objects.filter(kind=AuditEventKind.REVEAL)


def test_it_shows_reveal_buttons_only_next_to_masked_values(client, support):
    customer = CustomerFactory(full_name="张伟", email="zhang.wei@example.com", id_number="11010519491231002X")
    client.force_login(support)
    html = client.get(customer.get_absolute_url()).content.decode()
    # email is confidential (masked for support), id_number secret (masked), gender internal (visible).
    assert 'name="field" value="email"' in html and 'name="field" value="id_number"' in html
    assert 'name="field" value="gender"' not in html
    assert "zhang.wei@example.com" not in html and "11010519491231002X" not in html
    assert "<script>" not in html  # no inline script: the reveal control is a plain form plus htmx


def test_it_reveals_one_value_with_a_reason_and_logs_it_without_the_value(support):
    customer = CustomerFactory(email="zhang.wei@example.com")
    client = Client(enforce_csrf_checks=True)
    client.force_login(support)
    page = client.get(customer.get_absolute_url())
    token = page.cookies["csrftoken"].value
    response = client.post(
        f"/accounts/customers/{customer.pk}/reveal/",
        {"field": "email", "reason": "customer called about an order", "csrfmiddlewaretoken": token},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "zhang.wei@example.com" in response.content.decode()
    event = reveals().get()
    assert (event.user, event.object_type, event.object_id, event.field) == (
        support,
        "customer",
        str(customer.pk),
        "email",
    )
    assert event.reason == "customer called about an order"
    assert "zhang.wei@example.com" not in str(event.details) and "zhang.wei" not in event.reason


def test_it_refuses_a_reveal_without_csrf_token(support):
    customer = CustomerFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(support)
    response = client.post(f"/accounts/customers/{customer.pk}/reveal/", {"field": "email", "reason": "because"})
    assert response.status_code == 403
    assert not reveals().exists()


def test_it_requires_a_reason(client, support):
    customer = CustomerFactory(email="a.b@example.com")
    client.force_login(support)
    response = client.post(f"/accounts/customers/{customer.pk}/reveal/", {"field": "email", "reason": " "})
    assert response.status_code == 400
    assert "a.b@example.com" not in response.content.decode()
    api = APIClient()
    api.force_authenticate(support)
    body = api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": ""}).json()
    assert body["error"] == "invalid" and "reason" in body["details"]
    assert not reveals().exists()


@override_settings(CRMHUB_REVEAL_LIMIT_PER_HOUR=3)
def test_it_rate_limits_reveals_per_user_per_hour(support, steward):
    customer = CustomerFactory(email="a.b@example.com", mobile="+8613800138000")
    api = APIClient()
    api.force_authenticate(support)
    for _ in range(3):
        assert (
            api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": "ticket 7"}).status_code
            == 200
        )
    response = api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": "ticket 7"})
    assert response.status_code == 429
    assert "3" in response.json()["message"] and "a.b@example.com" not in response.content.decode()
    assert reveals().count() == 3
    # The refused attempt is on record too, with why, though its transaction rolled back.
    denied = AuditEvent.objects.get(kind=AuditEventKind.REVEAL_DENIED, user=support)
    assert (denied.field, denied.reason, denied.details) == ("email", "ticket 7", {"why": "limit"})
    # The limit is per user: a colleague is not affected.
    other = APIClient()
    other.force_authenticate(steward)
    assert (
        other.post(
            f"/api/v1/customers/{customer.pk}/reveal/", {"field": "id_number", "reason": "KYC check"}
        ).status_code
        == 200
    )
    # Events older than an hour no longer count.
    from datetime import timedelta

    from django.utils import timezone

    AuditEvent.objects.filter(kind=AuditEventKind.REVEAL, user=support).values_list("pk", flat=True)
    old = timezone.now() - timedelta(hours=2)
    for pk in AuditEvent.objects.filter(kind=AuditEventKind.REVEAL, user=support).values_list("pk", flat=True):
        # Test-only backdating straight in SQL: the application cannot update audit events.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("UPDATE accounts_auditevent SET at = %s WHERE id = %s", [old, pk])
    assert (
        api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": "ticket 8"}).status_code
        == 200
    )


def test_it_refuses_reveals_to_roles_without_the_permission_and_for_hidden_fields(sales, auditor):
    from accounts.models import UserProfile

    UserProfile.objects.create(user=sales, team="east")
    customer = CustomerFactory(team="east", email="a.b@example.com", id_number="11010519491231002X")
    api = APIClient()
    api.force_authenticate(sales)
    # email is masked for sales, but sales may not reveal; id_number is hidden from sales.
    assert (
        api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": "x" * 5}).status_code == 403
    )
    assert (
        api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "id_number", "reason": "x" * 5}).status_code
        == 403
    )
    assert (
        api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "nonexistent", "reason": "x" * 5}).status_code
        == 400
    )
    assert not reveals().exists()
    # Both refusals are logged (the unknown field is a mistake, not an attempt: not logged).
    denied = AuditEvent.objects.filter(kind=AuditEventKind.REVEAL_DENIED, user=sales).order_by("id")
    assert [(e.field, e.details["why"]) for e in denied] == [("email", "permission"), ("id_number", "permission")]


def test_it_answers_404_when_revealing_on_a_customer_out_of_scope(sales):
    customer = CustomerFactory(team="west")
    api = APIClient()
    api.force_authenticate(sales)
    assert api.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": "email", "reason": "look"}).status_code == 404


@override_settings(CRMHUB_REVEAL_LIMIT_PER_HOUR=0)
def test_it_keeps_the_masked_value_in_place_when_a_reveal_is_refused(client, support):
    customer = CustomerFactory(email="zhang.wei@example.com")
    client.force_login(support)
    response = client.post(
        f"/accounts/customers/{customer.pk}/reveal/", {"field": "email", "reason": "ticket 9"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200  # htmx swaps only successful responses
    assert "z***@example.com" in html and 'role="alert"' in html and "zhang.wei@example.com" not in html
    assert not reveals().exists()
