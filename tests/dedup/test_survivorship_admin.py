"""The survivorship rules page and API: admins change rules (audited), others may not."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditEvent, AuditEventKind
from dedup.models import SurvivorshipRule
from tests.dedup.conftest import make_source


@pytest.mark.django_db
def test_it_lets_an_admin_change_a_rule_and_logs_it(client, admin_user):
    make_source("erp")
    make_source("pos")
    client.force_login(admin_user)
    page = client.get(reverse("dedup:survivorship-rules"))
    assert page.status_code == 200 and "rule:full_name:strategy" in page.content.decode()
    response = client.post(
        reverse("dedup:survivorship-rules"),
        {
            "rule:mobile:strategy": "source_trust",
            "rule:mobile:trust_order": "pos, erp",
            "rule:mobile:tie_break": "most_recent",
            "rule:mobile:override_policy": "always",
            # Unchanged rows are sent too and write nothing.
            "rule:email:strategy": "most_recent",
            "rule:email:trust_order": "",
            "rule:email:tie_break": "source_trust",
            "rule:email:override_policy": "until_newer",
        },
    )
    assert response.status_code == 302
    rule = SurvivorshipRule.objects.get(field="mobile")
    assert (rule.strategy, rule.trust_order, rule.override_policy, rule.updated_by) == (
        "source_trust",
        ["pos", "erp"],
        "always",
        admin_user,
    )
    event = AuditEvent.objects.get(object_type="survivorship_rule")
    assert (event.kind, event.object_id, event.user) == (AuditEventKind.POLICY_CHANGE, "mobile", admin_user)
    assert event.details["before"]["strategy"] == "most_recent"
    assert event.details["after"]["trust_order"] == ["pos", "erp"]


@pytest.mark.django_db
def test_it_refuses_an_unknown_source_and_saves_nothing(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("dedup:survivorship-rules"),
        {"rule:mobile:strategy": "source_trust", "rule:mobile:trust_order": "nowhere"},
        follow=True,
    )
    assert "there is no source nowhere" in response.content.decode()
    assert SurvivorshipRule.objects.get(field="mobile").strategy == "most_recent"
    assert not AuditEvent.objects.filter(object_type="survivorship_rule").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["steward", "sales", "auditor", "outsider"])
def test_only_admins_open_the_page(client, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("dedup:survivorship-rules")).status_code == 403
    assert client.post(reverse("dedup:survivorship-rules"), {"rule:mobile:strategy": "longest"}).status_code == 403
    assert SurvivorshipRule.objects.get(field="mobile").strategy == "most_recent"


@pytest.mark.django_db
def test_the_api_lists_rules_to_stewards_and_lets_admins_change_them(steward, admin_user):
    api = APIClient()
    api.force_authenticate(steward)
    rules = api.get("/api/v1/survivorship-rules/").json()
    assert {r["field"] for r in rules} >= {"full_name", "mobile", "consent_sms"}
    assert api.patch("/api/v1/survivorship-rules/city/", {"strategy": "longest"}, format="json").status_code == 403
    api.force_authenticate(admin_user)
    response = api.patch("/api/v1/survivorship-rules/city/", {"strategy": "longest"}, format="json")
    assert response.status_code == 200 and response.json()["strategy"] == "longest"
    bad = api.patch("/api/v1/survivorship-rules/city/", {"strategy": "loudest"}, format="json")
    assert bad.status_code == 400 and "loudest is not a valid strategy" in str(bad.json())
    assert api.get("/api/v1/survivorship-rules/nope/").status_code == 404


@pytest.mark.django_db
def test_the_recompute_command_applies_a_changed_rule():
    import io
    import json

    from django.core.management import call_command

    from crmhub.models import Customer, SourceRecord

    customer = Customer.objects.create(address="浦东新区世纪大道100号")
    for key, address, source in (("1", "浦东新区世纪大道100号", "crm"), ("2", "浦东", "pos")):
        SourceRecord.objects.create(
            source=make_source(source), source_key=key, customer=customer, normalized={"address": address}
        )
    SurvivorshipRule.objects.filter(field="address").update(strategy="source_trust", trust_order=["pos"])
    out = io.StringIO()
    call_command("golden_recompute", "--source", "pos", stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["changed"] == 1
    customer.refresh_from_db()
    assert customer.address == "浦东"
    assert customer.history.first().change_channel == "command"
