from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import FieldPolicy
from crmhub.choices import ChangeChannel
from crmhub.context import change_context
from crmhub.models import FieldDefinition
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(steward):  # noqa: ANN001, ANN201
    customer = CustomerFactory(
        full_name="张伟", mobile="+8613800138000", id_number="11010519491231002X", company="甲公司", custom={}
    )
    with change_context(channel=ChangeChannel.WEB, user=steward):
        customer.mobile = "+8613900139000"
        customer.company = "乙公司"
        customer.save()
    with change_context(channel=ChangeChannel.IMPORT, ref="import_run:7"):
        customer.id_number = "110105194912310037"  # only a field hidden from sales changes
        customer.save()
    FieldDefinition.objects.create(name="shoe_size", label_en="Shoe size", label_zh="鞋码", sensitivity="internal")
    customer.custom = {"shoe_size": "42"}
    customer.save()
    return customer


def test_it_shows_history_with_each_change_masked_per_field(client, support, customer):
    client.force_login(support)
    response = client.get(f"/customers/{customer.pk}/history/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "139****9000" in html and "138****8000" in html
    assert "13900139000" not in html and "110105194912310037" not in html
    assert "110105********0037" in html  # secret: masked for support
    assert "甲公司" in html and "乙公司" in html  # public
    assert "import_run:7" in html and "sam_steward" in html


def test_it_drops_entries_whose_only_changes_are_hidden(sales, customer):
    from accounts.models import UserProfile

    UserProfile.objects.create(user=sales, team="east")
    customer.team = "east"
    customer.save()
    api = APIClient()
    api.force_authenticate(sales)
    results = api.get(f"/api/v1/customers/{customer.pk}/history/").json()["results"]
    fields = [{c["field"] for c in e["changes"]} for e in results]
    assert all("id_number" not in f for f in fields)
    assert not any(e["ref"] == "import_run:7" for e in results)  # that entry changed id_number only
    # The custom field shows up like any other, per its policy.
    assert any(c["field"] == "shoe_size" and c["new"] == "42" for e in results for c in e["changes"])
    FieldPolicy.objects.create(role="sales", field=FieldDefinition.objects.get(name="shoe_size"), access=0)
    api = APIClient()
    api.force_authenticate(sales.__class__.objects.get(pk=sales.pk))
    results = api.get(f"/api/v1/customers/{customer.pk}/history/").json()["results"]
    assert not any(c["field"] == "shoe_size" for e in results for c in e["changes"])


def test_it_keeps_the_history_page_to_a_few_queries(client, support, customer, django_assert_max_num_queries):
    for i in range(20):
        customer.job_title = f"title {i}"
        customer.save()
    client.force_login(support)
    with django_assert_max_num_queries(14):  # fixed cost: session, user, roles, perms, nav counts
        assert client.get(f"/customers/{customer.pk}/history/").status_code == 200


def test_it_keeps_the_audit_page_to_a_few_queries(client, auditor, support, django_assert_max_num_queries):
    from accounts.models import AuditEvent

    for i in range(60):
        AuditEvent.objects.create(kind="reveal", user=support, username=support.username, object_id=str(i))
    client.force_login(auditor)
    with django_assert_max_num_queries(12):  # no query per event
        assert client.get("/accounts/audit/").status_code == 200
