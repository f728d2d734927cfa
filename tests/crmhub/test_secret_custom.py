"""A custom field marked secret is encrypted wherever it is stored, whichever path wrote it
(file import, push, a person's edit), and still presented by its policy, never as ciphertext."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.crypto import CIPHERTEXT_PREFIX
from accounts.models import FieldPolicy
from accounts.roles import Role
from crmhub.choices import ChangeChannel, ChangeEventType, MaskStyle, Sensitivity
from crmhub.context import change_context
from crmhub.editing import customer_update
from crmhub.models import ChangeEvent, Customer, FieldDefinition, SourceRecord
from crmhub.outbox import event_values
from tests.conftest import make_user
from tests.factories import SourceFactory
from tests.imports.connectors.test_push import api_for, post
from tests.imports.helpers import csv_bytes, write


def _stored(customer_id: int) -> str:
    return Customer.objects.values_list("custom", flat=True).get(pk=customer_id)["passport"]


@pytest.mark.django_db(transaction=True)
def test_a_secret_custom_value_is_sealed_at_rest_on_every_path(tmp_path, django_user_model):
    from django.contrib.auth.models import Group

    from crmhub.services import source_get_or_create
    from imports.pipeline import ImportPipeline
    from imports.services import file_run_from_path, mapping_suggest

    passport = FieldDefinition.objects.create(
        name="passport",
        label_en="Vault code",
        label_zh="保险箱编码",
        synonyms=["保险箱编码"],
        sensitivity=Sensitivity.SECRET,
        mask_style=MaskStyle.PARTIAL,
    )
    # A file import (the set-based SQL path on PostgreSQL, the per-row path elsewhere).
    source, _ = source_get_or_create(code="files")
    path = write(tmp_path, "p.csv", csv_bytes([["F1", "张三", "E12345678"]], header=["客户编号", "姓名", "保险箱编码"]))
    run = file_run_from_path(
        path=str(path), source=source, enqueue=False, plan_for=lambda layout: mapping_suggest(headers=layout.headers)
    )
    with change_context(channel=ChangeChannel.IMPORT, ref=f"import_run:{run.pk}"):
        assert ImportPipeline(run).execute() is True
    assert run.options["mapping"]["保险箱编码"] == "passport"
    imported = SourceRecord.objects.get(source=source, source_key="F1").customer
    # A push (the single-record path).
    shop = SourceFactory(code="shop")
    bot = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", bot, shop)
    assert post(api_for(bot), "shop", {"source_key": "P1", "passport": "G7654321"}).status_code in (200, 201)
    pushed = SourceRecord.objects.get(source=shop, source_key="P1").customer
    for customer, plain in ((imported, "E12345678"), (pushed, "G7654321")):
        assert _stored(customer.pk).startswith(CIPHERTEXT_PREFIX)
        assert Customer.objects.get(pk=customer.pk).get_value("passport") == plain
        (created,) = ChangeEvent.objects.filter(customer_id=customer.pk, event_type=ChangeEventType.CREATED)
        assert created.data["custom"]["passport"].startswith(CIPHERTEXT_PREFIX)
    # A person's edit (a steward allowed to edit the field).
    FieldPolicy.objects.create(role=Role.STEWARD, field=passport, access=3)
    steward = make_user(django_user_model, "st", Role.STEWARD)
    edited = customer_update(
        customer_id=pushed.pk, values={"passport": "G1111111"}, expected_version=pushed.version, acting_user=steward
    )
    assert _stored(pushed.pk).startswith(CIPHERTEXT_PREFIX) and edited.get_value("passport") == "G1111111"
    updated = ChangeEvent.objects.get(customer_id=pushed.pk, event_type=ChangeEventType.UPDATED)
    assert updated.data["custom"]["passport"].startswith(CIPHERTEXT_PREFIX)
    assert "passport" in event_values(updated)
    # Presented by policy: a support agent sees it masked, never the ciphertext or the value.
    support = make_user(django_user_model, "sup", Role.SUPPORT)
    assert Group.objects.filter(name=Role.SUPPORT, user=support).exists()
    client = APIClient()
    client.force_authenticate(support)
    shown = client.get(f"/api/v1/customers/{imported.pk}/").json()["values"]["passport"]
    assert shown and not shown.startswith(CIPHERTEXT_PREFIX) and shown != "E12345678"
    history = client.get(f"/api/v1/customers/{pushed.pk}/history/").json()["results"]
    texts = [str(c["new"]) for entry in history for c in entry["changes"] if c["field"] == "passport"]
    assert texts and all(t and CIPHERTEXT_PREFIX not in t and "G1111111" not in t for t in texts)
