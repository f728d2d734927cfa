"""Merge keeps everything, and undo gives it back exactly — or, after later changes, leaves
them where they belong and says so."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.editing import customer_update
from crmhub.models import Customer, Interaction, SourceRecord
from dedup import services
from dedup.choices import CandidateStatus
from dedup.models import FieldOverride, MatchCandidate
from dedup.survivorship import golden_record_recompute
from tests.dedup.conftest import add_person, make_source


def _rows(qs, exclude=()) -> dict:  # noqa: ANN001
    model = qs.model
    return {
        obj.pk: {f.attname: f.value_from_object(obj) for f in model._meta.concrete_fields if f.name not in exclude}
        for obj in qs
    }


def snapshot() -> dict:
    """Everything a merge can touch, versions aside."""
    return {
        "customers": _rows(Customer.objects.all(), exclude=("version", "updated_at")),
        "source_records": _rows(SourceRecord.objects.all()),
        "interactions": _rows(Interaction.objects.all()),
        # Overrides are compared by content: an undo may recreate a row (new id).
        "overrides": sorted(
            (o.customer_id, o.field, str(o.value), str(o.basis), o.set_at, o.set_by_id, o.channel, o.ref)
            for o in FieldOverride.objects.all()
        ),
    }


@pytest.fixture
def trio(db, steward):  # noqa: ANN001, ANN201
    crm, pos = make_source("crm"), make_source("pos")
    a = add_person(
        crm,
        "K1",
        full_name="张伟",
        mobile="+8613800000001",
        birth_date="1985-03-04",
        id_number="11010519491231002X",
        tags=["vip"],
        custom={"level": "gold"},
        city="北京",
    )
    b = add_person(
        crm,
        "K2",
        full_name="章伟",
        mobile="+8613800000002",
        email="zw@qq.com",
        city="上海",
        tags=["new", "vip"],
        custom={"shoe_size": 42, "level": "silver"},
        consent_sms=True,
    )
    c = add_person(pos, "P1", full_name="张伟", mobile="+8613800000001", address="浦东新区世纪大道100号")
    SourceRecord.objects.create(source=pos, source_key="P9", customer=b, normalized={"company": "甲公司"})
    for i, who in enumerate([a, b, b, c]):
        Interaction.objects.create(
            customer=who,
            source=crm,
            kind="order",
            external_id=f"O-{i}",
            occurred_at=dt.datetime(2026, 1, 1 + i, tzinfo=dt.UTC),
            title=f"order {i}",
            amount="12.50",
            details={"sku": i},
        )
    customer_update(customer_id=b.pk, values={"job_title": "经理"}, expected_version=b.version, acting_user=steward)
    customer_update(customer_id=a.pk, values={"phone": "010-12345678"}, expected_version=a.version, acting_user=steward)
    MatchCandidate.objects.create(left_id=min(a.pk, c.pk), right_id=max(a.pk, c.pk), score=0.9)
    return a, b, c


@pytest.mark.django_db
def test_merge_then_unmerge_returns_exactly_the_original_state(trio, steward):
    a, b, c = trio
    before = snapshot()
    merge = services.customers_merge(
        customers=[a.pk, b.pk, c.pk], survivor=b.pk, values={"full_name": "章伟", "phone": ""}, acting_user=steward
    )
    during = snapshot()
    assert during != before
    survivor = Customer.objects.get(pk=b.pk)
    assert set(survivor.source_records.values_list("source_key", flat=True)) == {"K1", "K2", "P1", "P9"}
    assert survivor.interactions.count() == 4
    assert survivor.tags == ["new", "vip"] and survivor.custom == {"shoe_size": 42, "level": "silver"}
    assert set(FieldOverride.objects.filter(customer=b).values_list("field", flat=True)) == {
        "full_name",
        "job_title",
        "phone",
    }
    # Tombstones keep resolving to the survivor; open candidates about them are moot.
    assert Customer.objects.get(pk=a.pk).merged_into_id == b.pk
    assert MatchCandidate.objects.get(left_id=min(a.pk, c.pk)).status == CandidateStatus.SUPERSEDED
    report = services.merge_undo(merge=merge, acting_user=steward)
    assert report["has_conflicts"] is False and report["recomputed"] == []
    after = snapshot()
    assert after["customers"] == before["customers"]
    assert after["source_records"] == before["source_records"]
    assert after["interactions"] == before["interactions"]
    assert after["overrides"] == before["overrides"]
    assert after == before


@pytest.mark.django_db
def test_unmerge_after_later_changes_keeps_them_where_they_belong_and_reports_them(trio, steward):
    a, b, c = trio
    merge = services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, acting_user=steward)
    a.refresh_from_db()
    # After the merge: a steward edits the survivor, an order and a new source record arrive
    # for it, and b's old crm record changes at its source.
    customer_update(customer_id=a.pk, values={"email": "later@x.cn"}, expected_version=a.version, acting_user=steward)
    late_order = Interaction.objects.create(
        customer=a, kind="ticket", external_id="T-9", occurred_at=timezone.now(), title="later"
    )
    late_record = SourceRecord.objects.create(source=make_source("web"), source_key="W1", customer=a)
    SourceRecord.objects.filter(source_key="K2").update(
        normalized={"full_name": "章伟", "mobile": "+8613800000022"}, updated_at=timezone.now()
    )
    moved_on = SourceRecord.objects.get(source_key="P9")
    moved_on.customer = c
    moved_on.save()

    report = services.merge_undo(merge=merge, acting_user=steward)
    a.refresh_from_db()
    b.refresh_from_db()
    assert b.status == CustomerStatus.ACTIVE and b.merged_into_id is None
    # The later edit stays on the survivor (with its override) and is a conflict.
    assert a.email == "later@x.cn"
    assert FieldOverride.objects.get(customer=a, field="email").value == "later@x.cn"
    assert report["conflicts"]["fields"] == ["email"]
    field = report["details"]["fields"][0]
    assert (field["field"], field["channel"], field["user"]) == ("email", ChangeChannel.WEB, steward.username)
    # Rows that arrived afterwards stay with the survivor, and the report lists them.
    late_order.refresh_from_db()
    late_record.refresh_from_db()
    assert late_order.customer_id == a.pk and late_record.customer_id == a.pk
    stayed = report["details"]["stayed_with_survivor"]
    assert stayed["source_records"] == [{"id": late_record.pk, "source": "web"}]
    assert [i["external_id"] for i in stayed["interactions"]] == ["T-9"]
    # A record that moved on to someone else stays there: a conflict, said where it is.
    assert report["conflicts"]["source_records"] == [moved_on.pk]
    assert report["details"]["source_records"][0] == {
        "id": moved_on.pk,
        "owner_before": b.pk,
        "customer_now": c.pk,
        "source": "pos",
    }
    # b's records and orders came back; its crm record changed meanwhile, so b follows it.
    assert set(b.source_records.values_list("source_key", flat=True)) == {"K2"}
    assert set(b.interactions.values_list("external_id", flat=True)) == {"O-1", "O-2"}
    assert b.mobile == "+8613800000022" and report["recomputed"] == [b.pk]
    assert report["has_conflicts"] is True
    # b's own override (job title) was never touched; a's values came back except the email.
    assert b.job_title == "经理" and a.city == "北京"


@pytest.mark.django_db
def test_recompute_skips_tombstones_and_merge_choices_survive_it(trio, steward):
    a, b, c = trio
    services.customers_merge(customers=[a.pk, c.pk], survivor=a.pk, values={"city": "天津"}, acting_user=steward)
    outcome = golden_record_recompute([a.pk, c.pk])
    assert outcome["customers"] == 1  # c is a tombstone
    a.refresh_from_db()
    assert a.city == "天津"
