"""A batch run over a small fixed data set with known duplicates: exact expected output."""

from __future__ import annotations

import pytest
from django.utils import timezone

from crmhub.choices import ChangeChannel, CustomerStatus
from crmhub.models import Customer, Interaction, SourceRecord
from dedup import services
from dedup.choices import CandidateStatus, RunStatus
from dedup.models import MatchCandidate, Merge
from tests.dedup.conftest import add_person, make_source


def _run(**kwargs):  # noqa: ANN003, ANN202
    run = services.dedup_run_create(**kwargs)
    return services.dedup_run_execute_inline(run=run)


@pytest.mark.django_db
def test_it_links_the_known_duplicates_and_queues_the_doubtful_ones(people):
    run = _run()
    assert run.status == RunStatus.COMPLETED
    assert run.records == 10
    survivors = {
        k: (
            c.pk
            if Customer.objects.get(pk=c.pk).status == CustomerStatus.ACTIVE
            else Customer.objects.get(pk=c.pk).merged_into_id
        )
        for k, c in people.items()
    }
    # 张伟/張偉 (traditional form, same e-mail) link automatically; 章伟 — same person by sound,
    # but only name, birth date, phone and city agree — waits for a steward, proposed against
    # the survivor. The twin 张芳 and the namesake 王芳 stay apart, and so does 李娜.
    assert survivors["A1"] == survivors["A3"] == people["A1"].pk
    assert survivors["A2"] == people["A2"].pk
    pending = MatchCandidate.objects.get(status=CandidateStatus.PENDING)
    assert (pending.left_id, pending.right_id) == (people["A1"].pk, people["A2"].pk)
    assert [e["level"] for e in pending.explanation if e["comparison"] == "name"] == ["sound_alike"]
    assert survivors["B1"] == people["B1"].pk
    assert survivors["C1"] == survivors["C2"]
    assert survivors["D1"] == survivors["D2"]  # day/month swapped, a transposed mobile digit
    assert survivors["E1"] == people["E1"].pk
    assert survivors["F1"] == people["F1"].pk
    assert run.auto_merged == 3 == sum(1 for k in people if survivors[k] != people[k].pk)
    assert run.for_review == 1
    assert set(SourceRecord.objects.filter(customer_id=people["A1"].pk).values_list("source_key", flat=True)) == {
        "A1",
        "A3",
    }
    # The set-based merges leave the same history as single ones, attributed to the run.
    tombstone = Customer.history.filter(id=people["A3"].pk).order_by("-history_id").first()
    assert (tombstone.status, tombstone.change_channel, tombstone.change_ref) == (
        CustomerStatus.MERGED,
        ChangeChannel.MERGE,
        f"dedup_run:{run.pk}",
    )
    moved = SourceRecord.history.filter(source_key="A3").order_by("-history_id").first()
    assert moved.customer_id == people["A1"].pk and moved.change_channel == ChangeChannel.MERGE
    merge = Merge.objects.get(survivor=people["A1"])
    assert merge.merged_ids == [people["A3"].pk] and merge.origin == "auto"
    assert not MatchCandidate.objects.filter(
        status=CandidateStatus.PENDING, left=people["B1"], right=people["E1"]
    ).exists()


@pytest.mark.django_db
def test_it_never_proposes_a_rejected_pair_again(people):
    run = _run()
    pending = list(MatchCandidate.objects.filter(status=CandidateStatus.PENDING))
    for candidate in pending:
        services.candidate_reject(candidate=candidate, acting_user=None)
    run2 = _run()
    assert run2.for_review == 0
    assert run2.auto_merged == 0
    assert MatchCandidate.objects.filter(status=CandidateStatus.REJECTED).count() == len(pending)
    assert run.pk != run2.pk


@pytest.mark.django_db
def test_a_source_run_only_considers_pairs_involving_that_source(people):
    from tests.dedup.conftest import add_person, make_source

    shop = make_source("shop")
    newcomer = add_person(
        shop,
        "S1",
        full_name="李娜",
        birth_date="1988-05-05",
        mobile="+8613500000005",
        email="lina@x.cn",
        gender="F",
        city="杭州",
    )
    run = _run(source_code="shop")
    assert run.records == 1
    newcomer.refresh_from_db()
    assert newcomer.merged_into_id == people["F1"].pk
    # Pairs among the other source's records were not looked at: 张伟/章伟 are still apart.
    assert Customer.objects.get(pk=people["A2"].pk).status == CustomerStatus.ACTIVE
    assert run.auto_merged == 1


def _state(ids):  # noqa: ANN001, ANN202
    customers = {
        c.pk: {
            f.attname: f.value_from_object(c)
            for f in Customer._meta.concrete_fields
            if f.name not in ("updated_at", "version")
        }
        for c in Customer.objects.filter(pk__in=ids)
    }
    records = dict(SourceRecord.objects.filter(customer_id__isnull=False).values_list("pk", "customer_id"))
    interactions = dict(Interaction.objects.values_list("pk", "customer_id"))
    return customers, records, interactions


@pytest.mark.django_db
def test_undoing_a_set_based_merge_restores_exactly_the_original_state(people):
    source = make_source("pos")
    # The survivor lacks what the others have (filled by survivorship), including a secret.
    a = add_person(source, "X1", full_name="赵敏", mobile="+8613900000009")
    b = add_person(
        source,
        "X2",
        full_name="趙敏",
        mobile="+8613900000009",
        email="zm@qq.com",
        birth_date="1991-02-03",
        id_number="11010519491231002X",
        tags=["vip"],
        custom={"size": 40},
    )
    c = add_person(source, "X3", full_name="赵敏", city="成都")
    SourceRecord.objects.create(source=make_source("web"), source_key="X2b", customer=b)
    Interaction.objects.create(customer=c, source=source, kind="order", external_id="O-9", occurred_at=timezone.now())
    ids = [a.pk, b.pk, c.pk]
    before = _state(ids)
    merged = services.customers_merge_many(clusters=[ids, [people["D1"].pk, people["D2"].pk]])
    a.refresh_from_db()
    assert (a.email, a.city, a.id_number, a.tags, a.custom) == (
        "zm@qq.com",
        "成都",
        "11010519491231002X",
        ["vip"],
        {"size": 40},
    )
    assert a.id_number_hash and a.version == 2
    assert set(SourceRecord.objects.filter(customer=a).values_list("source_key", flat=True)) == {
        "X1",
        "X2",
        "X2b",
        "X3",
    }
    assert Interaction.objects.get(external_id="O-9").customer_id == a.pk
    # One history row per changed row, from the rows themselves.
    assert Customer.history.filter(id=b.pk).first().status == CustomerStatus.MERGED
    assert SourceRecord.history.filter(source_key="X2b").first().customer_id == a.pk
    merge = Merge.objects.get(pk=merged[a.pk])
    report = services.merge_undo(merge=merge)
    assert report["has_conflicts"] is False
    after_undo = _state(ids)
    assert after_undo[0] == before[0]
    mine = {k for k, v in before[1].items() if v in ids}
    assert {k: after_undo[1][k] for k in mine} == {k: before[1][k] for k in mine}
    assert after_undo[2] == before[2]
    # The other cluster's merge is untouched.
    assert Customer.objects.get(pk=people["D2"].pk).merged_into_id == people["D1"].pk
