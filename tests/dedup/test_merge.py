"""Merge and undo: the survivor gets everything, the undo restores exactly the original state."""

from __future__ import annotations

import datetime as dt

import pytest

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.models import Customer, Interaction, SourceRecord
from dedup import services
from dedup.choices import CandidateStatus, MergeStatus
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source


def _state(ids):  # noqa: ANN001, ANN202
    customers = {
        c.pk: {f.attname: f.value_from_object(c) for f in Customer._meta.concrete_fields if f.name != "updated_at"}
        for c in Customer.objects.filter(pk__in=ids)
    }
    for values in customers.values():
        values.pop("version")
    records = dict(SourceRecord.objects.filter(pk__isnull=False).values_list("pk", "customer_id"))
    interactions = dict(Interaction.objects.values_list("pk", "customer_id"))
    return customers, records, interactions


@pytest.fixture
def pair(db):  # noqa: ANN001, ANN201
    source = make_source()
    a = add_person(
        source,
        "K1",
        full_name="张伟",
        mobile="+8613800000001",
        birth_date="1985-03-04",
        id_number="11010519491231002X",
        tags=["vip"],
    )
    b = add_person(
        source,
        "K2",
        full_name="章伟",
        mobile="+8613800000001",
        email="zw@qq.com",
        city="上海",
        tags=["new"],
        custom={"shoe_size": 42},
    )
    add_person(source, "K3", full_name="李娜", mobile="+8613500000005")
    SourceRecord.objects.create(source=make_source("pos"), source_key="P9", customer=b)
    Interaction.objects.create(
        customer=b, source=source, kind="order", external_id="O-1", occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    return a, b


@pytest.mark.django_db
def test_it_moves_everything_to_the_survivor_and_tombstones_the_other(pair, steward):
    a, b = pair
    merge = services.customers_merge(
        customers=[a.pk, b.pk], survivor=a.pk, values={"full_name": "张伟"}, acting_user=steward, note="same phone"
    )
    a.refresh_from_db()
    b.refresh_from_db()
    assert b.status == CustomerStatus.MERGED and b.merged_into_id == a.pk
    assert a.email == "zw@qq.com" and a.city == "上海"  # blanks filled from the merged record
    assert a.tags == ["vip", "new"] and a.custom == {"shoe_size": 42}
    assert a.version == 2 and b.version == 2
    assert set(SourceRecord.objects.filter(customer=a).values_list("source_key", flat=True)) == {"K1", "K2", "P9"}
    assert Interaction.objects.get(external_id="O-1").customer_id == a.pk
    last = a.history.first()
    assert (last.change_channel, last.change_ref, last.history_user_id) == (
        ChangeChannel.MERGE,
        f"merge:{merge.pk}",
        steward.pk,
    )
    moved = SourceRecord.history.filter(source_key="P9").first()
    assert (moved.change_channel, moved.customer_id) == (ChangeChannel.MERGE, a.pk)


@pytest.mark.django_db
def test_undo_returns_exactly_the_original_state(pair, steward):
    a, b = pair
    ids = [a.pk, b.pk]
    before = _state(ids)
    merge = services.customers_merge(
        customers=ids, survivor=b.pk, values={"birth_date": "1985-04-03"}, acting_user=steward
    )
    assert _state(ids) != before
    report = services.merge_undo(merge=merge, acting_user=steward)
    assert report["has_conflicts"] is False
    assert _state(ids) == before
    merge.refresh_from_db()
    assert merge.status == MergeStatus.UNDONE
    a.refresh_from_db()
    assert a.id_number == "11010519491231002X"  # the secret came back from the sealed snapshot
    assert a.history.first().change_channel == ChangeChannel.UNMERGE
    # Undoing remembers that these are two people.
    assert MatchCandidate.objects.get(left=min(ids), right=max(ids)).status == CandidateStatus.REJECTED


@pytest.mark.django_db
def test_undo_keeps_later_changes_and_reports_them(pair, steward):
    a, b = pair
    merge = services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, acting_user=steward)
    a.refresh_from_db()
    a.email = "new@x.cn"  # a steward edit after the merge
    a.save()
    late = SourceRecord.objects.create(source=make_source("web"), source_key="W1", customer=a)
    report = services.merge_undo(merge=merge, acting_user=steward)
    a.refresh_from_db()
    assert a.email == "new@x.cn"
    assert "email" in report["conflicts"]["fields"]
    late.refresh_from_db()
    assert late.customer_id == a.pk  # arrived after the merge: stays with the survivor
    assert SourceRecord.objects.get(source_key="K2").customer_id == b.pk


@pytest.mark.django_db
def test_it_refuses_stale_versions_inactive_customers_and_bad_values(pair, steward):
    a, b = pair
    with pytest.raises(services.StaleVersionError):
        services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, expected_versions={a.pk: 7})
    with pytest.raises(services.MergeValueError, match="birth_date"):
        services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, values={"birth_date": "not a date"})
    with pytest.raises(services.MergeValueError, match="not a field"):
        services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk, values={"status": "active"})
    with pytest.raises(services.MergeError, match="at least two"):
        services.customers_merge(customers=[a.pk], survivor=a.pk)
    a.refresh_from_db()
    assert a.version == 1  # nothing happened
    merge = services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk)
    with pytest.raises(services.MergeError, match="not active"):
        services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk)
    services.merge_undo(merge=merge)
    with pytest.raises(services.MergeError, match="already undone"):
        services.merge_undo(merge=merge)


@pytest.mark.django_db
def test_a_chained_merge_must_be_undone_from_the_latest(pair):
    a, b = pair
    c = Customer.objects.get(full_name="李娜")
    first = services.customers_merge(customers=[a.pk, b.pk], survivor=a.pk)
    services.customers_merge(customers=[c.pk, a.pk], survivor=c.pk)
    with pytest.raises(services.MergeError, match="undo that later merge first"):
        services.merge_undo(merge=first)


@pytest.mark.django_db
def test_approving_a_candidate_merges_and_rejecting_is_remembered(pair, steward):
    a, b = pair
    c1 = MatchCandidate.objects.create(left=a, right=b, score=0.9, rule="default")
    merge = services.candidate_approve(candidate=c1, acting_user=steward)
    c1.refresh_from_db()
    assert c1.status == CandidateStatus.APPROVED and c1.merge_id == merge.pk and c1.decided_by == steward
    with pytest.raises(services.MergeError, match="not waiting"):
        services.candidate_reject(candidate=c1, acting_user=steward)
    c = Customer.objects.get(full_name="李娜")
    c2 = MatchCandidate.objects.create(left=b, right=c, score=0.85)
    services.candidate_reject(candidate=c2, acting_user=steward)
    # b was merged into a: the rejection now keeps a and c apart.
    assert (min(a.pk, c.pk), max(a.pk, c.pk)) in services.rejected_pairs()
