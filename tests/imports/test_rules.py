"""An admin's own rules for a field (validation pattern, allowed values) apply wherever values
come in: file imports, pushes and a person's edits. A value breaking one is kept and flagged."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from crmhub.choices import ChangeChannel, FieldType
from crmhub.context import change_context
from crmhub.models import FieldDefinition, SourceRecord
from imports.cleaning.rules import apply_rules, rules_from
from imports.models import ImportRunIssue
from tests.imports.helpers import csv_bytes, write


def _column(*values):  # noqa: ANN002, ANN202
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def test_values_breaking_a_rule_are_flagged_and_the_rest_left_alone():
    rules = rules_from([("tier", "", ["gold", "silver"]), ("code", r"[A-Z]{2}\d{4}", []), ("tags", "", ["vip", "new"])])
    values = _column("gold", "bronze", "", None, "gold", "bad")
    flags = _column("", "", "", "", "", "already flagged")
    apply_rules(values, flags, rules["tier"])
    assert flags[0] == "" and flags[4] == "" and flags[2] == "" and flags[3] == ""
    assert flags[1] == "not one of the allowed values (gold, silver)"
    assert flags[5] == "already flagged"  # the type's own reason is kept
    codes = _column("AB1234", "ab1234", "AB12345")
    code_flags = _column("", "", "")
    apply_rules(codes, code_flags, rules["code"])
    assert code_flags[0] == "" and "does not match the pattern" in code_flags[1] and code_flags[2] != ""  # in full
    tags = _column(["vip", "new"], ["vip", "spam"], [])
    tag_flags = _column("", "", "")
    apply_rules(tags, tag_flags, rules["tags"])
    assert tag_flags.tolist() == ["", "not one of the allowed values (new, vip)", ""]


def test_numbers_and_booleans_are_compared_as_their_text():
    rules = rules_from([("size", r"\d{2}", [])])["size"]
    assert rules.flag(42) == "" and rules.flag(7) != ""
    assert rules_from([("ok", "", [True])])["ok"].flag(True) == ""


def test_a_pattern_that_does_not_compile_is_refused_by_the_dictionary():
    field = FieldDefinition(name="x", label_en="X", label_zh="X", validation_regex="[unclosed")
    with pytest.raises(ValidationError) as exc:
        field.clean_fields()
    assert "validation_regex" in exc.value.message_dict


@pytest.mark.django_db(transaction=True)
def test_a_file_import_flags_values_against_the_rules_and_keeps_them(tmp_path):
    from crmhub.services import source_get_or_create
    from imports.pipeline import ImportPipeline
    from imports.services import file_run_from_path, mapping_suggest

    FieldDefinition.objects.create(
        name="member_level", label_en="Level", label_zh="会员等级", synonyms=["会员等级"], choices=["金卡", "银卡"]
    )
    FieldDefinition.objects.filter(name="postcode").update(validation_regex=r"1\d{5}")  # this company: Beijing only
    source, _ = source_get_or_create(code="rules")
    rows = [["R1", "张三", "金卡", "100022"], ["R2", "李四", "铁卡", "200120"]]
    path = write(tmp_path, "r.csv", csv_bytes(rows, header=["客户编号", "姓名", "会员等级", "邮编"]))
    run = file_run_from_path(
        path=str(path), source=source, enqueue=False, plan_for=lambda layout: mapping_suggest(headers=layout.headers)
    )
    assert run.options["mapping"]["邮编"] == "postcode"
    with change_context(channel=ChangeChannel.IMPORT, ref=f"import_run:{run.pk}"):
        assert ImportPipeline(run).execute() is True
    good, bad = (SourceRecord.objects.get(source=source, source_key=k) for k in ("R1", "R2"))
    assert good.flags == {} and good.customer.custom == {"member_level": "金卡"} and good.customer.postcode == "100022"
    # Kept in the record, flagged, out of the golden record, and in the error report with the reason.
    assert bad.normalized["member_level"] == "铁卡" and set(bad.flags) == {"member_level", "postcode"}
    assert bad.customer.custom == {} and bad.customer.postcode == ""
    (issue,) = ImportRunIssue.objects.filter(run=run)
    assert issue.reasons["会员等级"] == "not one of the allowed values (金卡, 银卡)"
    assert "铁卡" not in issue.reasons["会员等级"]  # the value stays out of reasons (they are not masked)
    assert "does not match the pattern" in issue.reasons["邮编"]


@pytest.mark.django_db
def test_a_push_and_an_edit_follow_the_rules_as_soon_as_they_change(steward, django_user_model):
    from guardian.shortcuts import assign_perm

    from accounts.roles import Role
    from crmhub.editing import customer_update
    from tests.conftest import make_user
    from tests.factories import SourceFactory
    from tests.imports.connectors.test_push import api_for, post

    shop = SourceFactory(code="shop")
    bot = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", bot, shop)
    FieldDefinition.objects.create(name="tier", label_en="Tier", label_zh="等级", field_type=FieldType.CODE)
    client = api_for(bot)
    post(client, "shop", {"source_key": "P1", "tier": "platinum"})
    assert SourceRecord.objects.get(source_key="P1").flags == {}
    # Rules added later (a queryset update: no signal) apply to the next push at once.
    FieldDefinition.objects.filter(name="tier").update(choices=["GOLD", "SILVER"])
    post(client, "shop", {"source_key": "P2", "tier": "platinum"})
    assert "allowed values" in SourceRecord.objects.get(source_key="P2").flags["tier"]
    customer = SourceRecord.objects.get(source_key="P1").customer
    with pytest.raises(ValidationError) as exc:
        customer_update(
            customer_id=customer.pk, values={"tier": "iron"}, expected_version=customer.version, acting_user=steward
        )
    assert "allowed values" in exc.value.message_dict["tier"][0]
    updated = customer_update(
        customer_id=customer.pk, values={"tier": " SILVER "}, expected_version=customer.version, acting_user=steward
    )
    assert updated.custom["tier"] == "SILVER"  # the type's cleaning first (trimmed), then the rule
