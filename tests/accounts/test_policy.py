from __future__ import annotations

import json
from datetime import date

import pytest

from accounts.crypto import seal_values
from accounts.models import FieldPolicy
from accounts.policy import Access, field_access, present_error_row, present_values, present_webhook_payload
from accounts.roles import Role
from crmhub.models import FieldDefinition
from tests.conftest import make_user
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_it_gives_webhooks_json_ready_values_by_role():
    customer = CustomerFactory(birth_date=date(1990, 1, 2), id_number="11010519491231002X", mobile="+8613800138000")
    payload = present_webhook_payload(Role.API_CLIENT, customer)
    json.dumps(payload)  # no dates or other non-JSON values
    assert payload["values"]["birth_date"] == "1990-01-02"
    assert payload["values"]["id_number"] == "110105********002X"
    assert "id_number" not in present_webhook_payload(Role.SALES, customer)["values"]
    # An unknown role gets the "no role" defaults: public fields only.
    assert set(present_webhook_payload("nobody", customer)["values"]) <= set(
        FieldDefinition.objects.filter(sensitivity="public").values_list("name", flat=True)
    )


def test_it_masks_error_report_rows_per_mapped_field(support, steward):
    row = {
        "手机": "+8613800138000",
        "证件": seal_values({"v": "11010519491231002X"}, {"v"})["v"],
        "备注": "VIP",
        "旧列": "x",
    }
    mapping = {"手机": "mobile", "证件": "id_number", "旧列": "no_longer_a_field"}
    shown = present_error_row(support, row, mapping)
    assert shown["手机"] == "138****8000" and shown["证件"] == "110105********002X"
    assert "备注" not in shown  # unmapped: confidential free text, support sees confidential fields masked
    assert "旧列" not in shown  # mapped to a field that no longer exists: nobody decided, so hidden
    shown = present_error_row(steward, row, mapping)
    assert shown["备注"] == "VIP" and shown["手机"] == "+8613800138000"


def test_it_lets_the_most_generous_role_win(django_user_model):
    user = make_user(django_user_model, "two_hats", Role.SALES)
    user.groups.add(user.groups.model.objects.get(name=Role.SUPPORT))
    mobile = FieldDefinition.objects.get(name="mobile")
    FieldPolicy.objects.create(role=Role.SALES, field=mobile, access=Access.HIDDEN)
    # sales' override hides mobiles, but support's default (masked) still applies.
    assert field_access(django_user_model.objects.get(pk=user.pk), "mobile") == Access.MASKED


def test_it_treats_unmapped_raw_keys_as_confidential(support, steward):
    raw = {"手机号码": "13800138000", "mobile": "+8613800138000"}
    assert present_values(support, raw) == {"mobile": "138****8000"}
    assert present_values(steward, raw) == raw


def test_it_never_shows_a_masked_value_in_clear_even_without_a_mask_style(support):
    customer = CustomerFactory(consent_sms=True)
    FieldPolicy.objects.create(
        role=Role.SUPPORT, field=FieldDefinition.objects.get(name="consent_sms"), access=Access.MASKED
    )
    from accounts.policy import present_customer

    assert present_customer(support, customer)["consent_sms"] == "****"
