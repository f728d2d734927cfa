"""The permission matrix: every role × every data-dictionary field × every channel.

The expected access is written out here independently of accounts.policy (a change of the
defaults must change this table too), with FieldPolicy overrides and a custom field. The
test fails when a field has no sample value or a channel in accounts.channels has no check
below, so neither can be added without coverage.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.channels import CHANNELS, NOT_CHANNELS
from accounts.masking import mask
from accounts.models import AuditEvent, AuditEventKind, FieldPolicy, UserProfile
from accounts.policy import field_access, present_error_row, present_webhook_payload, value_as_text
from accounts.roles import Role
from crmhub.choices import MaskStyle, Sensitivity
from crmhub.models import Customer, FieldDefinition, SourceRecord

pytestmark = pytest.mark.django_db

H, M, V, E = 0, 1, 2, 3
S = Sensitivity
EXPECTED_DEFAULTS = {
    Role.ADMIN: {S.PUBLIC: E, S.INTERNAL: E, S.CONFIDENTIAL: E, S.SECRET: M},
    Role.STEWARD: {S.PUBLIC: E, S.INTERNAL: E, S.CONFIDENTIAL: E, S.SECRET: M},
    Role.SALES: {S.PUBLIC: V, S.INTERNAL: V, S.CONFIDENTIAL: M, S.SECRET: H},
    Role.SUPPORT: {S.PUBLIC: V, S.INTERNAL: V, S.CONFIDENTIAL: M, S.SECRET: M},
    Role.AUDITOR: {S.PUBLIC: V, S.INTERNAL: M, S.CONFIDENTIAL: M, S.SECRET: H},
    Role.API_CLIENT: {S.PUBLIC: V, S.INTERNAL: V, S.CONFIDENTIAL: V, S.SECRET: M},
}
# FieldPolicy rows the test configures: (role, field) -> access.
OVERRIDES = {
    (Role.SUPPORT, "mobile"): V,  # support may read mobiles in full
    (Role.SALES, "company"): H,  # and sales may not see companies at all
    (Role.SALES, "loyalty_tier"): E,  # custom field, made editable for sales
    (Role.AUDITOR, "loyalty_tier"): H,
    (Role.API_CLIENT, "id_number"): V,
    (Role.STEWARD, "birth_date"): M,
}
CUSTOM_FIELD = {
    "name": "loyalty_tier",
    "label_en": "Loyalty tier",
    "label_zh": "会员等级",
    "sensitivity": S.CONFIDENTIAL,
    "mask_style": MaskStyle.PARTIAL,
}

# One distinct, non-empty value per data-dictionary field.
SAMPLES = {
    "full_name": "欧阳娜娜",
    "family_name": "欧阳",
    "given_name": "娜娜",
    "gender": "F",
    "birth_date": date(1990, 5, 17),
    "mobile": "+8613812345678",
    "phone": "+8613987654321",
    "email": "nana.ouyang@example.com",
    "id_number": "11010519491231002X",
    "member_no": "M778899",
    "wechat_openid": "oWXopenid123456",
    "wechat_unionid": "uWXunion654321",
    "company": "Acme Widgets Ltd",
    "job_title": "Buyer",
    "province": "北京市",
    "city": "北京",
    "district": "朝阳区",
    "address": "北京市朝阳区建国路88号",
    "postcode": "100022",
    "country": "CN",
    "tags": ["vip", "gold"],
    "consent_marketing": True,
    "consent_sms": False,
    "consent_email": True,
    "loyalty_tier": "platinum-3",
}
# Search: fields found by their exact value (needs MASKED) and by a part of it (needs VISIBLE).
SEARCH_EXACT = {
    "mobile": "+8613812345678",
    "phone": "+8613987654321",
    "email": "nana.ouyang@example.com",
    "id_number": "11010519491231002X",
    "member_no": "M778899",
    "full_name": "欧阳娜娜",
}
SEARCH_PARTIAL = {"full_name": "阳娜", "company": "Widgets"}


@pytest.fixture
def world(db):  # noqa: ANN001, ANN201
    FieldDefinition.objects.create(**CUSTOM_FIELD)
    for (role, name), access in OVERRIDES.items():
        FieldPolicy.objects.create(role=role, field=FieldDefinition.objects.get(name=name), access=access)
    values = {k: v for k, v in SAMPLES.items() if k in Customer.CORE_FIELDS}
    customer = Customer.objects.create(
        **values, custom={"loyalty_tier": SAMPLES["loyalty_tier"]}, name_pinyin="ouyangnana", team="east"
    )
    # A source record holding every field too (normalized, the secret one sealed): the API
    # presents it through present_values, which must agree with the golden record's presentation.
    from accounts.crypto import seal_values
    from tests.factories import SourceFactory

    SourceRecord.objects.create(
        source=SourceFactory(code="matrix"),
        source_key="K1",
        customer=customer,
        normalized=seal_values({k: value_as_text(v) for k, v in SAMPLES.items()}, {"id_number"}),
    )
    users = {}
    from django.contrib.auth import get_user_model

    for role in Role.values:
        user = get_user_model().objects.create_user(username=f"m_{role}", password="x")
        user.groups.add(Group.objects.get(name=role))
        if role == Role.SALES:
            UserProfile.objects.create(user=user, team="east")
        users[role] = user
    return customer, users


def expected_access(role: str, field: FieldDefinition) -> int:
    return OVERRIDES.get((role, field.name), EXPECTED_DEFAULTS[role][field.sensitivity])


def expected_text(field: FieldDefinition, access: int) -> str | None:
    """None: the field must be absent. Otherwise the text the channel must show."""
    raw = value_as_text(SAMPLES[field.name])
    if access == H:
        return None
    if access == M:
        return mask(raw, field.mask_style if field.mask_style != MaskStyle.NONE else MaskStyle.FULL)
    return raw


def _unquote(text: str) -> str:
    # Export cells that would start a formula carry a leading quote.
    return text[1:] if text.startswith("'") and text[1:2] in ("=", "+", "-", "@", "\t", "\r") else text


#
# One check per channel: each returns {field name: shown text} or None when the channel
# refuses the user altogether (then ``refused`` says whether that was expected).
#


def channel_page(user, customer, fields):  # noqa: ANN001, ANN201
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    body = client.get(f"/customers/{customer.pk}/").content.decode()
    shown, levels = {}, {}
    for name, level, inner in re.findall(r'data-field="([\w-]+)" data-access="(\d)">(.*?)</dd>', body, re.S):
        value = re.search(r'<span class="value">(.*?)</span>', inner, re.S)
        shown[name] = html.unescape(value.group(1)) if value else ""
        levels[name] = int(level)
    return shown, levels


def channel_api(user, customer, fields):  # noqa: ANN001, ANN201
    client = APIClient()
    client.force_authenticate(user)
    data = client.get(f"/api/v1/customers/{customer.pk}/").json()
    values = {k: value_as_text(v) for k, v in data["values"].items()}
    (record,) = client.get(f"/api/v1/customers/{customer.pk}/source-records/").json()["results"]
    assert {k: value_as_text(v) for k, v in record["normalized"].items()} == values
    assert [{k: value_as_text(v) for k, v in r["normalized"].items()} for r in data["source_records"]] == [values]
    return values, None


def channel_history(user, customer, fields):  # noqa: ANN001, ANN201
    client = APIClient()
    client.force_authenticate(user)
    data = client.get(f"/api/v1/customers/{customer.pk}/history/").json()
    shown = {}
    for entry in reversed(data["results"]):  # oldest first, later values win
        for change in entry["changes"]:
            if change["field"] in fields:
                shown[change["field"]] = value_as_text(change["new"])
    # The same history on the customer page (its "Changes" timeline) shows exactly the same.
    from django.test import Client

    page = Client(HTTP_ACCEPT_LANGUAGE="en")
    page.force_login(user)
    body = page.get(f"/customers/{customer.pk}/").content.decode()
    section = re.search(r'<section class="card" id="history">(.*?)</section>', body, re.S).group(1)
    on_page = {
        name: html.unescape(new)
        for name, new in re.findall(r'<li data-field="([\w-]+)">.*?<span class="new">(.*?)</span>', section, re.S)
        if name in fields
    }
    assert on_page == {k: v or "—" for k, v in shown.items()}
    return shown, None


def _event_data(customer, fields) -> dict:  # noqa: ANN001
    """An event's data as writers store it: core values by name, custom ones under "custom"
    (as ``Customer.custom`` holds them), secret ones sealed."""
    from accounts.crypto import seal_values, secret_field_names

    values = {name: customer.get_value(name) for name in fields if name in Customer.CORE_FIELDS}
    values["custom"] = {name: customer.get_value(name) for name in fields if name not in Customer.CORE_FIELDS}
    values = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items()}
    return seal_values(values, secret_field_names())


def channel_webhook(role, customer, fields):  # noqa: ANN001, ANN201
    from crmhub.models import ChangeEvent, WebhookSubscription
    from crmhub.webhooks import webhook_payload

    payload = present_webhook_payload(role, customer)
    assert payload["id"] == customer.pk
    direct = {k: value_as_text(v) for k, v in payload["values"].items()}
    # What the dispatcher really sends: an event's data, masked by the subscription's role.
    event = ChangeEvent(event_type="updated", customer_id=customer.pk, position=1, data=_event_data(customer, fields))
    sent = webhook_payload(WebhookSubscription(name="m", url="http://127.0.0.1/", role=role, secret="s"), event)
    shown = {k: value_as_text(v) for k, v in sent["data"].items()}
    assert shown == direct
    return shown, None


def channel_change_feed(user, customer, fields):  # noqa: ANN001, ANN201
    from django.db import transaction

    from crmhub.outbox import change_record

    with transaction.atomic():
        change_record(
            event_type="updated",
            customer_id=customer.pk,
            changed_fields=sorted(fields),
            data=_event_data(customer, fields),
        )
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/v1/changes/", {"after": 0, "limit": 1000})
    if response.status_code == 403:
        return None, None
    (event,) = [e for e in response.json()["results"] if e["customer"] == customer.pk][-1:]
    return {k: value_as_text(v) for k, v in event["data"].items()}, None


def channel_error_report(user, customer, fields):  # noqa: ANN001, ANN201
    row = {f"col {name}": value_as_text(SAMPLES[name]) for name in fields}
    row["备注"] = "free text"
    shown = present_error_row(user, row, {f"col {name}": name for name in fields})
    return {k[len("col ") :]: value_as_text(v) for k, v in shown.items() if k.startswith("col ")}, shown.get("备注")


def channel_export(user, customer, fields):  # noqa: ANN001, ANN201
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    response = client.get("/accounts/export/", {"format": "csv"})
    if response.status_code == 403:
        return None, None
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    by_label = {f.label_en: f.name for f in fields.values()}
    header = [by_label[h] if h in by_label else h for h in rows[0]]
    (row,) = [r for r in rows[1:] if r[0] == str(customer.pk)]
    return {name: _unquote(cell) for name, cell in zip(header, row, strict=False) if name != "id"}, None


def channel_quality_records(user, customer, fields):  # noqa: ANN001, ANN201
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    response = client.get("/quality/records/", {"source": "matrix"})
    if response.status_code == 403:
        return None, None
    body = response.content.decode()
    shown = {
        name: html.unescape(value)
        for name, value in re.findall(r'<dd data-field="([\w-]+)"><span class="value">(.*?)</span></dd>', body, re.S)
    }
    return shown, None


def channel_privacy_report(user, customer, fields):  # noqa: ANN001, ANN201
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    response = client.post("/privacy/export/", {"mobile": SAMPLES["mobile"], "format": "json"})
    if response.status_code == 404:
        return None, None
    import json

    (entry,) = [c for c in json.loads(response.content)["customers"] if c["id"] == customer.pk]
    return {k: value_as_text(v) for k, v in entry["values"].items()}, None


def channel_review(user, customer, fields):  # noqa: ANN001, ANN201
    from django.test import Client

    from dedup.models import MatchCandidate

    other = Customer.objects.create(full_name="另一个人", team="east")
    candidate = MatchCandidate.objects.create(left=customer, right=other, score=0.9, rule="matrix")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    response = client.get(f"/dedup/candidates/{candidate.pk}/compare/")
    if response.status_code in (403, 404):
        return None, None
    body = response.content.decode()
    shown = {}
    for name, inner in re.findall(rf'data-field="([\w-]+)" data-customer="{customer.pk}">(.*?)</td>', body, re.S):
        value = re.search(r'<span class="value">(.*?)</span>', inner, re.S)
        shown[name] = html.unescape(value.group(1)) if value else ""
    return shown, None


ADAPTERS = {
    "review": channel_review,
    "quality_records": channel_quality_records,
    "privacy_report": channel_privacy_report,
    "page": channel_page,
    "api": channel_api,
    "history": channel_history,
    "webhook": channel_webhook,
    "change_feed": channel_change_feed,
    "error_report": channel_error_report,
    "export": channel_export,
    # "search" and "reveal" answer per field, not with a row of values: checked below.
}
PER_FIELD_CHANNELS = {"search", "reveal"}
# Channels that refuse some roles outright: the roles they serve.
REFUSING = {
    "review": {Role.ADMIN, Role.STEWARD, Role.AUDITOR},
    "quality_records": {Role.ADMIN, Role.STEWARD, Role.AUDITOR},
    "privacy_report": {Role.ADMIN},
    "export": {Role.ADMIN, Role.STEWARD},
    "change_feed": {Role.ADMIN, Role.STEWARD, Role.API_CLIENT},
}


def test_it_covers_every_channel_and_every_field(world):
    assert set(ADAPTERS) | PER_FIELD_CHANNELS == set(CHANNELS), "a channel without a matrix check"
    assert "admin" in NOT_CHANNELS and "admin" not in CHANNELS
    missing = set(FieldDefinition.objects.filter(is_active=True).values_list("name", flat=True)) - set(SAMPLES)
    assert not missing, f"fields without a sample value in the matrix test: {missing}"


@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize("channel", sorted(ADAPTERS))
def test_it_presents_each_field_as_configured(world, role, channel):
    customer, users = world
    user = users[role]
    fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}
    subject = role if CHANNELS[channel].subject == "role" else user
    shown, extra = ADAPTERS[channel](subject, customer, fields)
    if channel in REFUSING:
        assert (shown is not None) == (role in REFUSING[channel]), f"{channel}/{role}: access refused wrongly"
        if shown is None:
            return
    for name, field in fields.items():
        access = expected_access(role, field)
        want = expected_text(field, access)
        if want is None:
            assert name not in shown, f"{channel}/{role}: hidden field {name} leaked"
        else:
            assert name in shown, f"{channel}/{role}: field {name} missing"
            assert shown[name] == want, f"{channel}/{role}/{name}: {shown[name]!r} != {want!r}"
            if access == M:
                assert shown[name] != value_as_text(SAMPLES[name]), f"{channel}/{role}/{name} not masked"
        assert field_access(user, name) == access
    if channel == "page":
        assert extra == {n: expected_access(role, f) for n, f in fields.items() if expected_access(role, f) > H}
    if channel == "error_report":
        confidential_all_visible = all(
            expected_access(role, f) >= V for f in fields.values() if f.sensitivity == S.CONFIDENTIAL
        )
        assert (extra == "free text") == confidential_all_visible


@pytest.mark.parametrize("role", Role.values)
def test_it_searches_only_by_fields_the_role_may_see(world, role):
    customer, users = world
    client = APIClient()
    client.force_authenticate(users[role])
    fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}

    def found(q: str) -> bool:
        return customer.pk in [c["id"] for c in client.get("/api/v1/customers/", {"q": q}).json()["results"]]

    for name, field in fields.items():
        access = expected_access(role, field)
        if name in SEARCH_EXACT:
            assert found(SEARCH_EXACT[name]) == (access >= M), f"{role} exact search by {name}"
        if name in SEARCH_PARTIAL:
            assert found(SEARCH_PARTIAL[name]) == (access >= V), f"{role} partial search by {name}"
        if name not in SEARCH_EXACT and name not in SEARCH_PARTIAL:
            # No search path exists for the other fields, whatever the role may see; a value
            # can only match as part of a field searchable by part and visible to the role.
            text = value_as_text(SAMPLES[name])
            via_other = any(
                expected_access(role, fields[p]) >= V and len(text) >= 2 and text.lower() in SAMPLES[p].lower()
                for p in SEARCH_PARTIAL
            )
            assert found(text) == via_other, f"{role} search by unsearchable {name}"


@pytest.mark.parametrize("role", Role.values)
def test_it_sorts_only_by_fields_the_role_sees_in_full(world, role):
    from accounts.policy import SORTABLE_FIELDS

    _customer, users = world
    client = APIClient()
    client.force_authenticate(users[role])
    for field in FieldDefinition.objects.filter(is_active=True):
        response = client.get("/api/v1/customers/", {"ordering": f"-{field.name}"})
        allowed = field.name in SORTABLE_FIELDS and expected_access(role, field) >= V
        assert response.status_code == (200 if allowed else 400), (role, field.name)
        if not allowed:
            assert "ordering" in response.json()["details"]
    assert client.get("/api/v1/customers/", {"ordering": "id"}).status_code == 200


@pytest.mark.parametrize("role", Role.values)
@override_settings(CRMHUB_REVEAL_LIMIT_PER_HOUR=1000)
def test_it_reveals_only_masked_fields_to_permitted_roles(world, role):
    customer, users = world
    client = APIClient()
    client.force_authenticate(users[role])
    may_reveal = role in (Role.ADMIN, Role.STEWARD, Role.SUPPORT)
    for field in FieldDefinition.objects.filter(is_active=True):
        access = expected_access(role, field)
        before = AuditEvent.objects.filter(kind=AuditEventKind.REVEAL).count()
        response = client.post(f"/api/v1/customers/{customer.pk}/reveal/", {"field": field.name, "reason": "ticket 42"})
        logged = AuditEvent.objects.filter(kind=AuditEventKind.REVEAL).count() - before
        if access == H or (access == M and not may_reveal):
            assert response.status_code == 403, (role, field.name)
            assert logged == 0
        else:
            assert response.status_code == 200, (role, field.name, response.content)
            assert response.json()["value"] == value_as_text(SAMPLES[field.name])
            assert logged == (1 if access == M else 0), (role, field.name)


@pytest.mark.parametrize("role", Role.values)
def test_it_offers_to_edit_exactly_the_fields_the_role_may_edit(world, role):
    """The edit form on the customer page holds values in full: only for fields the role may edit."""
    from django.test import Client

    customer, users = world
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(users[role])
    body = client.get(f"/customers/{customer.pk}/").content.decode()
    inputs = dict(re.findall(r'<input type="(?:text|date)" name="f_(\w+)" value="([^"]*)"', body))
    selects = set(re.findall(r'<select name="f_(\w+)"', body))
    fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}
    editable = {n for n, f in fields.items() if expected_access(role, f) == E}  # custom fields too
    assert set(inputs) | selects == editable, role
    for name, value in inputs.items():
        assert html.unescape(value) == value_as_text(SAMPLES[name]), (role, name)


@pytest.mark.parametrize("role", Role.values)
def test_it_lets_the_api_edit_exactly_the_fields_the_role_may_edit(world, role):
    """PATCH /api/v1/customers/<id>/ takes a field only from a role that may edit it, and
    answers with the record presented as the "api" channel presents it."""
    customer, users = world
    client = APIClient()
    client.force_authenticate(users[role])
    presented = client.get(f"/api/v1/customers/{customer.pk}/").json()["values"]
    fields = {f.name: f for f in FieldDefinition.objects.filter(is_active=True)}
    for name, field in fields.items():
        value = SAMPLES[name].isoformat() if isinstance(SAMPLES[name], date) else SAMPLES[name]
        response = client.patch(
            f"/api/v1/customers/{customer.pk}/", {"values": {name: value}, "version": 1}, format="json"
        )
        if expected_access(role, field) == E:
            assert response.status_code == 200, (role, name, response.content)
            assert response.json()["values"] == presented, (role, name)
        else:
            assert response.status_code == 403, (role, name)
            assert SAMPLES[name] != "" and value_as_text(SAMPLES[name]) not in response.content.decode()
