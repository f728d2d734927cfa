"""Survivorship: each strategy, steward overrides (held, then superseded by a newer source
value), recompute after re-imports and pushes, merges and batch merges under the rules."""

from __future__ import annotations

import datetime as dt

import pytest

from crmhub.choices import ChangeChannel, ChangeEventType, CustomerStatus
from crmhub.editing import customer_update
from crmhub.models import ChangeEvent, Customer, SourceRecord
from dedup import services
from dedup.models import FieldOverride, SurvivorshipRule
from dedup.survivorship import golden_record_recompute, golden_values_propose, rules_load
from tests.dedup.conftest import add_person, make_source
from tests.imports.helpers import csv_bytes, write
from tests.imports.test_services import run_cli

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rule(field: str, strategy: str, **extra) -> None:  # noqa: ANN003
    SurvivorshipRule.objects.update_or_create(field=field, defaults={"strategy": strategy, **extra})


def _record(customer: Customer, source: str, key: str, days: int = 0, **normalized) -> SourceRecord:  # noqa: ANN003
    return SourceRecord.objects.create(
        source=make_source(source),
        source_key=key,
        customer=customer,
        normalized=normalized,
        source_updated_at=T0 + dt.timedelta(days=days),
    )


@pytest.fixture
def person(db) -> Customer:  # noqa: ANN001
    return Customer.objects.create(full_name="张伟")


def _propose(customer: Customer, field: str):  # noqa: ANN202
    return golden_values_propose([customer], survivor_id=customer.pk)[field]


#
# Strategies
#


@pytest.mark.django_db
def test_it_ships_a_default_rule_for_every_chosen_field():
    rules = rules_load()
    assert SurvivorshipRule.objects.count() == len(rules) == 23
    assert rules["full_name"].strategy == "source_trust" and rules["mobile"].strategy == "most_recent"
    assert rules["address"].strategy == "longest" and rules["birth_date"].strategy == "most_frequent"


@pytest.mark.django_db
def test_source_trust_follows_the_admins_order_then_the_sources_rank(person):
    _record(person, "crm", "1", days=5, full_name="张伟")
    _record(person, "pos", "2", days=1, full_name="章伟")
    _record(person, "web", "3", days=9, full_name="张玮")
    _rule("full_name", "source_trust", trust_order=["pos", "crm"])
    proposal = _propose(person, "full_name")
    assert (proposal.value, proposal.rule, proposal.source) == ("章伟", "source_trust", "pos")
    assert "pos" in proposal.reason
    # Without an order, the sources' trust rank decides.
    _rule("full_name", "source_trust", trust_order=[])
    from crmhub.models import Source

    Source.objects.filter(code="web").update(trust_rank=90)
    assert _propose(person, "full_name").value == "张玮"


@pytest.mark.django_db
def test_most_recent_takes_the_latest_source_record_update(person):
    _record(person, "crm", "1", days=1, mobile="+8613800000001")
    _record(person, "pos", "2", days=3, mobile="+8613800000003")
    _record(person, "web", "3", days=2, mobile="+8613800000002")
    proposal = _propose(person, "mobile")
    assert (proposal.value, proposal.rule, proposal.source) == ("+8613800000003", "most_recent", "pos")


@pytest.mark.django_db
def test_most_complete_takes_the_record_with_most_fields(person):
    _record(person, "crm", "1", days=9, company="甲公司")
    _record(person, "pos", "2", days=1, company="乙公司", city="上海", email="a@b.cn")
    _rule("company", "most_complete")
    proposal = _propose(person, "company")
    assert (proposal.value, proposal.rule) == ("乙公司", "most_complete")


@pytest.mark.django_db
def test_most_frequent_takes_what_most_records_say_and_breaks_ties_by_the_rule(person):
    _record(person, "crm", "1", days=1, birth_date="1985-03-04")
    _record(person, "pos", "2", days=2, birth_date="1985-04-03")
    _record(person, "web", "3", days=3, birth_date="1985-03-04")
    proposal = _propose(person, "birth_date")
    assert (proposal.value, proposal.rule) == (dt.date(1985, 3, 4), "most_frequent")
    assert proposal.reason == "2 of 3 records have it"
    SourceRecord.objects.filter(source_key="3").delete()
    _rule("birth_date", "most_frequent", tie_break="most_recent")
    assert _propose(person, "birth_date").value == dt.date(1985, 4, 3)  # 1:1, the later one
    _rule("birth_date", "most_frequent", tie_break="oldest")
    assert _propose(person, "birth_date").value == dt.date(1985, 3, 4)  # 1:1, the first seen


@pytest.mark.django_db
def test_longest_takes_the_longest_value(person):
    _record(person, "crm", "1", days=9, address="浦东新区")
    _record(person, "pos", "2", days=1, address="浦东新区世纪大道100号")
    proposal = _propose(person, "address")
    assert (proposal.value, proposal.rule) == ("浦东新区世纪大道100号", "longest")


@pytest.mark.django_db
def test_flagged_and_blank_values_never_win_and_silent_sources_keep_the_golden_value(person):
    person.email = "kept@x.cn"
    person.save()
    SourceRecord.objects.create(
        source=make_source("crm"),
        source_key="1",
        customer=person,
        normalized={"mobile": "12345", "city": ""},
        flags={"mobile": "not a mobile number"},
        source_updated_at=T0,
    )
    proposals = golden_values_propose([person], survivor_id=person.pk)
    assert proposals["mobile"].rule == "none" and proposals["mobile"].value == ""
    assert (proposals["email"].value, proposals["email"].rule) == ("kept@x.cn", "survivor")


#
# Overrides
#


@pytest.mark.django_db
def test_a_manual_edit_holds_until_a_newer_source_value_arrives(person, steward):
    record = _record(person, "crm", "1", days=1, email="old@x.cn")
    golden_record_recompute([person.pk])
    person.refresh_from_db()
    assert person.email == "old@x.cn"
    customer_update(
        customer_id=person.pk, values={"email": "chosen@x.cn"}, expected_version=person.version, acting_user=steward
    )
    override = FieldOverride.objects.get(customer=person, field="email")
    assert (override.value, override.set_by, override.channel) == ("chosen@x.cn", steward, ChangeChannel.WEB)
    # The same source value again (a re-sync, even a later one) does not undo the person's choice.
    SourceRecord.objects.filter(pk=record.pk).update(source_updated_at=dt.datetime.now(dt.UTC))
    assert golden_record_recompute([person.pk])["changed"] == 0
    person.refresh_from_db()
    assert person.email == "chosen@x.cn"
    assert _propose(person, "email").rule == "override"
    # A new value from the source, newer than the choice, supersedes it.
    SourceRecord.objects.filter(pk=record.pk).update(
        normalized={"email": "new@x.cn"}, source_updated_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    )
    outcome = golden_record_recompute([person.pk])
    person.refresh_from_db()
    assert person.email == "new@x.cn" and outcome["overrides_superseded"] == 1
    assert not FieldOverride.objects.filter(customer=person).exists()


@pytest.mark.django_db
def test_an_always_hold_rule_keeps_the_choice_whatever_arrives(person, steward):
    _rule("email", "most_recent", override_policy="always")
    record = _record(person, "crm", "1", days=1, email="old@x.cn")
    customer_update(
        customer_id=person.pk, values={"email": "chosen@x.cn"}, expected_version=person.version, acting_user=steward
    )
    SourceRecord.objects.filter(pk=record.pk).update(
        normalized={"email": "new@x.cn"}, source_updated_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    )
    golden_record_recompute([person.pk])
    person.refresh_from_db()
    assert person.email == "chosen@x.cn"


#
# Recompute through the real import paths
#

HEADER = ["客户编号", "姓名", "手机号", "邮箱"]


@pytest.mark.django_db
def test_a_reimport_that_changes_a_linked_record_recomputes_the_golden_record(tmp_path, steward):
    run_cli(
        write(tmp_path, "crm.csv", csv_bytes([["C1", "张三", "13800138000", "zs@qq.com"]], HEADER)),
        "--source",
        "crm",
        "--auto-map",
        "--inline",
    )
    run_cli(
        write(tmp_path, "web.csv", csv_bytes([["W1", "张三", "13800138000", "zhang@web.cn"]], HEADER)),
        "--source",
        "web",
        "--auto-map",
        "--inline",
    )
    customer = Customer.objects.get(status=CustomerStatus.ACTIVE)
    assert customer.source_records.count() == 2  # matched in real time, one golden record
    version = customer.version
    summary = run_cli(
        write(tmp_path, "crm2.csv", csv_bytes([["C1", "张三", "13900139000", "zs@qq.com"]], HEADER)),
        "--source",
        "crm",
        "--auto-map",
        "--inline",
    )
    assert summary["updated"] == 1
    customer.refresh_from_db()
    # Most recent wins, by record: the crm record was just updated, so its mobile and its
    # email (the web record's email had won as the later one) are now the latest values.
    assert (customer.mobile, customer.email) == ("+8613900139000", "zs@qq.com")
    assert customer.version == version + 1
    ref = f"import_run:{summary['run']}"
    last = customer.history.first()
    assert (last.change_channel, last.change_ref, last.mobile) == (ChangeChannel.IMPORT, ref, "+8613900139000")
    event = ChangeEvent.objects.filter(customer_id=customer.pk).order_by("-id").first()
    assert (event.event_type, event.changed_fields, event.ref) == (ChangeEventType.UPDATED, ["email", "mobile"], ref)
    from imports.models import ImportRun

    entry = ImportRun.objects.get(pk=summary["run"]).log[0]
    assert entry.pop("seconds") >= 0
    assert entry == {"golden_records": "recomputed", "customers": 1, "changed": 1, "overrides_superseded": 0}
    # An unchanged re-import writes nothing.
    summary = run_cli(
        write(tmp_path, "crm3.csv", csv_bytes([["C1", "张三", "13900139000", "zs@qq.com"]], HEADER)),
        "--source",
        "crm",
        "--auto-map",
        "--inline",
    )
    customer.refresh_from_db()
    assert summary["unchanged"] == 1 and customer.version == version + 1


@pytest.mark.django_db
def test_a_push_that_changes_a_linked_record_recomputes_the_golden_record(admin_user):
    from imports.connectors.push import push_records

    source = make_source("app")
    push_records(source=source, user=admin_user, payload={"source_key": "A1", "full_name": "李娜", "city": "杭州"})
    customer = SourceRecord.objects.get(source_key="A1").customer
    assert customer.city == "杭州"
    result = push_records(
        source=source, user=admin_user, payload={"source_key": "A1", "full_name": "李娜", "city": "上海"}
    )
    assert result.body["updated"] == 1
    customer.refresh_from_db()
    assert customer.city == "上海"
    assert customer.history.first().change_channel == ChangeChannel.API


#
# Merges under the rules
#


@pytest.mark.django_db
def test_a_merge_applies_the_rules_and_remembers_the_stewards_choice(steward):
    source = make_source("crm")
    a = add_person(source, "K1", full_name="张伟", mobile="+8613800000001")
    b = add_person(source, "K2", full_name="张伟", mobile="+8613800000002")
    SourceRecord.objects.filter(source_key="K2").update(source_updated_at=dt.datetime.now(dt.UTC))
    proposals = golden_values_propose([a, b], survivor_id=a.pk)
    assert (proposals["mobile"].value, proposals["mobile"].customer_id) == ("+8613800000002", b.pk)
    merge = services.customers_merge(
        customers=[a.pk, b.pk], survivor=a.pk, values={"full_name": "张玮"}, acting_user=steward
    )
    a.refresh_from_db()
    assert (a.mobile, a.full_name) == ("+8613800000002", "张玮")
    chosen = FieldOverride.objects.get(customer=a)
    assert (chosen.field, chosen.value, chosen.ref, chosen.set_by) == (
        "full_name",
        "张玮",
        f"merge:{merge.pk}",
        steward,
    )
    # Recomputing later keeps the steward's choice.
    golden_record_recompute([a.pk])
    a.refresh_from_db()
    assert a.full_name == "张玮"


@pytest.mark.django_db
def test_a_batch_merge_honours_the_rules_and_carries_overrides(steward):
    source = make_source("crm")
    a = add_person(source, "K1", full_name="张伟", mobile="+8613800000001", address="浦东")
    b = add_person(source, "K2", full_name="张伟", mobile="+8613800000002", address="浦东新区世纪大道1号")
    c = add_person(source, "K3", full_name="李娜", mobile="+8613500000005")
    d = add_person(source, "K4", full_name="李娜", mobile="+8613500000006")
    SourceRecord.objects.filter(source_key="K2").update(source_updated_at=dt.datetime.now(dt.UTC))
    customer_update(customer_id=d.pk, values={"email": "chosen@x.cn"}, expected_version=d.version, acting_user=steward)
    merged = services.customers_merge_many(clusters=[[a.pk, b.pk], [c.pk, d.pk]])
    assert set(merged) == {a.pk, c.pk}
    a.refresh_from_db()
    c.refresh_from_db()
    assert (a.mobile, a.address) == ("+8613800000002", "浦东新区世纪大道1号")  # most recent; longest
    assert c.email == "chosen@x.cn"
    carried = FieldOverride.objects.get(customer=c)
    assert (carried.field, carried.set_by, carried.ref) == ("email", steward, f"merge:{merged[c.pk]}")


@pytest.mark.django_db
def test_erasing_a_person_removes_the_values_stewards_chose(person, steward, admin_user):
    from crmhub.privacy import privacy_erase, privacy_subject_find

    _record(person, "crm", "1", days=1, mobile="+8613800000009")
    golden_record_recompute([person.pk])
    person.refresh_from_db()
    customer_update(
        customer_id=person.pk, values={"email": "chosen@x.cn"}, expected_version=person.version, acting_user=steward
    )
    assert FieldOverride.objects.filter(customer=person).exists()
    subject = privacy_subject_find(user=admin_user, mobile="+8613800000009")
    row = privacy_erase(user=admin_user, subject=subject, mode="erase", reason="PIPL request")
    assert not FieldOverride.objects.filter(customer=person).exists()
    assert row.counts["copies"]["overrides"] == 1


#
# The batch entry point equals the one-cluster proposal
#


@pytest.mark.django_db
def test_choosing_for_many_clusters_at_once_gives_exactly_what_propose_gives(steward):
    """Random clusters under random rules (every strategy, tie-break and override policy),
    with flagged, blank, agreeing and conflicting source values and held or superseded
    overrides: ``golden_values_choose_many`` (batch merges) equals ``golden_values_propose``."""
    import random

    from dedup.models import FieldOverride
    from dedup.survivorship import (
        CHOSEN_FIELDS,
        RECORD_COLUMNS,
        SourceIndex,
        _record_from_row,
        golden_values_choose_many,
        overrides_for,
        value_fingerprint,
    )

    rng = random.Random(5)
    sources = [make_source(code) for code in ("crm", "pos", "web")]
    pools = {
        "full_name": ["张伟", "章伟", "張偉", "王芳"],
        "mobile": ["+8613800000001", "+8613800000002"],
        "email": ["a@x.cn", "b@x.cn", "longer.address@example.com"],
        "city": ["上海", "北京"],
        "address": ["浦东", "浦东新区世纪大道1号"],
        "company": ["甲公司", "乙公司"],
        "gender": ["M", "F"],
        "birth_date": ["1985-03-04", "1985-04-03"],
    }
    strategies = ["source_trust", "most_recent", "most_complete", "most_frequent", "longest"]
    for name in CHOSEN_FIELDS:
        _rule(
            name,
            rng.choice(strategies),
            trust_order=rng.sample(["crm", "pos", "web"], rng.randint(0, 3)),
            tie_break=rng.choice(["most_recent", "source_trust", "oldest"]),
            override_policy=rng.choice(["until_newer", "always"]),
        )
    clusters = []
    for k in range(120):
        members = []
        for j in range(rng.randint(2, 4)):
            own = {n: rng.choice([*pool, ""]) for n, pool in pools.items() if n != "birth_date"}
            customer = Customer.objects.create(**own, birth_date=rng.choice([None, dt.date(1985, 3, 4)]))
            for r in range(rng.randint(0, 2)):
                normalized = {n: rng.choice(pool) for n, pool in pools.items() if rng.random() < 0.6}
                flags = {n: "invalid" for n in normalized if rng.random() < 0.1}
                SourceRecord.objects.create(
                    source=rng.choice(sources),
                    source_key=f"K{k}-{j}-{r}",
                    customer=customer,
                    normalized=normalized,
                    flags=flags,
                    source_updated_at=rng.choice([None, T0 + dt.timedelta(days=rng.randint(0, 3))]),
                )
            if rng.random() < 0.3:
                name = rng.choice(list(pools))
                seen = SourceRecord.objects.filter(customer=customer).first()
                value = rng.choice(pools[name])
                FieldOverride.objects.create(
                    customer=customer,
                    field=name,
                    value=value,
                    basis={str(seen.pk): value_fingerprint(seen.normalized.get(name))} if seen else {},
                    set_by=steward,
                    set_at=T0 + dt.timedelta(days=rng.randint(0, 3), hours=rng.randint(0, 23)),
                )
            members.append(customer.pk)
        clusters.append(members)
    ids = [i for members in clusters for i in members]
    rules, index, overrides = rules_load(), SourceIndex(), overrides_for(ids)
    rows = {
        row[0]: dict(zip(["id", *CHOSEN_FIELDS], row, strict=True))
        for row in Customer.objects.filter(pk__in=ids).values_list("id", *CHOSEN_FIELDS)
    }
    owner = {i: members[0] for members in clusters for i in members}
    records: dict[int, list] = {}
    for row in SourceRecord.objects.filter(customer_id__in=ids).order_by("pk").values_list(*RECORD_COLUMNS):
        records.setdefault(owner[row[1]], []).append(_record_from_row(row))
    many = golden_values_choose_many(clusters, rows, records, overrides=overrides, rules=rules, sources=index)
    kinds = set()
    for members, (values, origins) in zip(clusters, many, strict=True):
        customers = list(Customer.objects.filter(pk__in=members))
        proposals = golden_values_propose(customers, survivor_id=members[0], rules=rules, sources=index)
        assert values == {name: p.value for name, p in proposals.items()}
        assert origins == {name: p.customer_id for name, p in proposals.items() if p.rule == "override"}
        kinds |= {p.rule for p in proposals.values()}
    # The data exercised every way a value can be chosen.
    assert kinds >= {*strategies, "override", "survivor", "fill_blank", "none"}
