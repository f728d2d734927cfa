from __future__ import annotations

import json
from collections import defaultdict
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.crypto import CIPHERTEXT_PREFIX, blind_index, unseal_values
from accounts.models import UserProfile
from accounts.roles import Role
from crmhub.demo import ID_COLUMN, MOBILE_COLUMN, SOURCE_CODES, demo_counts, generate, multi_source_people
from crmhub.demo import resident_id_valid as valid_ric
from crmhub.models import Customer, Interaction, Source, SourceRecord

pytestmark = pytest.mark.django_db

PEOPLE = 60


def seed_demo(*args: str) -> tuple[dict, str]:
    out = StringIO()
    call_command("seed_demo", "--customers", str(PEOPLE), *args, stdout=out)
    text = out.getvalue()
    return json.loads(text.strip().splitlines()[-1]), text


def test_it_creates_six_sources_one_user_per_role_and_prints_one_json_line_last():
    result, text = seed_demo()

    assert set(Source.objects.values_list("code", flat=True)) >= set(SOURCE_CODES) and len(SOURCE_CODES) == 6
    assert Source.objects.get(code="erp").trust_rank == max(Source.objects.values_list("trust_rank", flat=True))
    assert Source.objects.get(code="web").kind == "push" and Source.objects.get(code="eshop").kind == "rest"
    users = get_user_model().objects
    for role in (Role.ADMIN, Role.STEWARD, Role.SALES, Role.SUPPORT, Role.AUDITOR):
        user = users.get(username=role.value)
        assert user.check_password(settings.CRMHUB_DEMO_PASSWORD)
        assert list(user.groups.values_list("name", flat=True)) == [role.value]
        assert f"{role.value}" in text
    admin = users.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert not users.get(username="sales").is_staff and not users.get(username="support").is_superuser
    assert UserProfile.objects.get(user__username="sales").team == "east"
    api = users.get(username="api")
    assert api.groups.filter(name=Role.API_CLIENT).exists()
    assert Token.objects.get(user=api).key == result["api_token"] and result["api_token"] in text

    assert result["created"] is True and result["people"] == PEOPLE
    assert {k: result[k] for k in ("sources", "customers", "source_records", "interactions")} == demo_counts()
    # One golden record per source record until the dedup engine merges them.
    assert result["customers"] == result["source_records"] == SourceRecord.objects.count() == Customer.objects.count()
    assert result["source_records"] > PEOPLE
    assert {u["username"] for u in result["users"]} == {"admin", "steward", "sales", "support", "auditor", "api"}
    assert settings.CRMHUB_DEMO_PASSWORD in text


def test_it_puts_the_same_people_in_several_sources_formatted_differently():
    seed_demo()

    by_mobile: dict[str, list[SourceRecord]] = defaultdict(list)
    for record in SourceRecord.objects.select_related("source"):
        if record.normalized.get("mobile") and "mobile" not in record.flags:
            by_mobile[record.normalized["mobile"]].append(record)
    reformatted = [
        records
        for records in by_mobile.values()
        if len({r.source.code for r in records}) > 1 and len({r.raw[MOBILE_COLUMN[r.source.code]] for r in records}) > 1
    ]
    assert len(reformatted) >= 5
    assert all(m.startswith("+") and m[1:].isdigit() for m in by_mobile)
    # Every source keys its records its own way.
    keys = dict(SourceRecord.objects.values_list("source__code", "source_key"))
    assert keys["web"].startswith("W") and len(keys["web"]) == 7
    assert keys["erp"].startswith("CUST-") and keys["eshop"].isdigit() and keys["pos_sh"].isdigit()
    # Each source names its columns its own way.
    assert "会员卡号" in SourceRecord.objects.filter(source__code="pos_sh").first().raw
    assert "CustomerCode" in SourceRecord.objects.filter(source__code="erp").first().raw


def test_it_stores_valid_resident_ids_sealed_and_blind_indexed():
    seed_demo()

    checked = 0
    for customer in Customer.objects.exclude(id_number=""):
        assert customer.id_number_hash == blind_index(customer.id_number)
        if customer.country == "CN" and len(customer.id_number) == 18:
            assert valid_ric(customer.id_number), customer.id_number
            checked += 1
    assert checked >= 5
    assert Customer.objects.filter(id_number_hash="").exclude(id_number="").count() == 0
    for record in SourceRecord.objects.select_related("source"):
        if "id_number" in record.normalized:
            assert record.normalized["id_number"].startswith(CIPHERTEXT_PREFIX)  # sealed at rest
            value = unseal_values(record.normalized)["id_number"]
            assert "id_number" in record.flags or len(value) != 18 or valid_ric(value)
        column = ID_COLUMN.get(record.source.code)
        if column and record.raw.get(column):
            assert record.raw[column].startswith(CIPHERTEXT_PREFIX)


def test_it_gives_vips_hundreds_of_interactions_with_unique_external_ids():
    seed_demo()

    busiest = Customer.objects.annotate(n=Count("interactions")).order_by("-n").first()
    assert busiest.n >= 200
    assert Interaction.objects.filter(kind="order", amount__gt=0).exists()
    assert Interaction.objects.filter(kind="ticket", source__code="callcenter").exists()
    assert Interaction.objects.filter(kind="signup", source__code="web").exists()
    assert not Interaction.objects.filter(occurred_at__isnull=True).exists()
    for interaction in Interaction.objects.all()[:50]:
        assert interaction.occurred_at.tzinfo is not None
        assert interaction.customer_id == interaction.source_record.customer_id


def test_it_changes_nothing_when_run_twice_but_resets_the_passwords():
    first, _ = seed_demo()
    counts = demo_counts()
    sales = get_user_model().objects.get(username="sales")
    sales.set_password("something else")
    sales.save()

    second, text = seed_demo("--seed", "8")

    assert demo_counts() == counts
    assert second["created"] is False and {k: second[k] for k in counts} == {k: first[k] for k in counts}
    assert Source.history.count() == len(SOURCE_CODES)
    assert get_user_model().objects.filter(username__in=[u["username"] for u in first["users"]]).count() == 6
    assert Token.objects.count() == 1 and second["api_token"] == first["api_token"]
    sales.refresh_from_db()
    assert sales.check_password(settings.CRMHUB_DEMO_PASSWORD)
    assert "already" in text


@override_settings(PRODUCTION=True)
def test_it_refuses_to_run_with_production_settings():
    with pytest.raises(CommandError, match="production"):
        call_command("seed_demo", "--customers", "5", stdout=StringIO())
    assert not SourceRecord.objects.exists()
    assert not get_user_model().objects.filter(username="admin").exists()


def test_it_generates_the_same_people_from_the_same_seed_with_the_planted_hard_cases():
    now = timezone.now()
    data = generate(customers=300, seed=7, now=now)
    again = generate(customers=300, seed=7, now=now)
    assert [(r.key, r.raw, r.normalized) for r in data.records] == [(r.key, r.raw, r.normalized) for r in again.records]
    assert [(p.full_name, p.id_number) for p in data.people] == [(p.full_name, p.id_number) for p in again.people]

    assert 0.25 <= multi_source_people(data) / len(data.people) <= 0.45
    assert 0.78 <= sum(not p.western for p in data.people) / len(data.people) <= 0.92
    assert all(valid_ric(p.id_number) for p in data.people if not p.western)
    assert all(p.mobile.startswith("+") or (len(p.mobile) == 11 and p.mobile[1] in "3456789") for p in data.people)
    by_role: dict[str, list] = defaultdict(list)
    for p in data.people:
        by_role[p.role].append(p)
    # Namesakes: same common name, same city, different people.
    namesakes = by_role["namesake"]
    assert (
        any(
            a.full_name == b.full_name and a.city == b.city and a.id_number != b.id_number and a.mobile != b.mobile
            for a, b in zip(namesakes[::2], namesakes[1::2], strict=True)
        )
        or len(namesakes) >= 2
    )
    # Twins: same birth date, family name and address, different given names and ID numbers.
    twins = by_role["twin"]
    pairs = [(a, b) for a in twins for b in twins if a.pid < b.pid and a.birth == b.birth and a.family == b.family]
    assert pairs and all(
        a.given != b.given and a.id_number != b.id_number and a.street_line == b.street_line for a, b in pairs
    )
    # Households share a landline; a parent gives a child's mobile.
    household = by_role["household"]
    assert any(p.borrowed_mobile for p in household)
    assert len({p.phone for p in household}) < len(household)
