"""Real-time matching of newly arrived records, created as the import would create them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crmhub.choices import CustomerStatus
from crmhub.models import Customer, SourceRecord
from dedup import services
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source


@pytest.fixture
def existing(db):  # noqa: ANN001, ANN201
    crm = make_source("crm")
    out = {
        "zw": add_person(
            crm,
            "C1",
            full_name="张伟",
            birth_date="1985-03-04",
            mobile="+8613800000001",
            email="zw@qq.com",
            gender="M",
            city="上海",
            id_number_hash="h" * 64,
        ),
        "wf": add_person(crm, "C2", full_name="王芳", birth_date="1990-07-08", mobile="+8613700000003", gender="F"),
    }
    for i in range(30):
        add_person(crm, f"X{i}", full_name=f"路人{i}", mobile=f"+86139{i:08d}")
    return out


def _arrive(key: str, **values) -> SourceRecord:  # noqa: ANN003
    customer = add_person(make_source("shop"), key, **values)
    return SourceRecord.objects.get(customer=customer)


@pytest.mark.django_db
def test_it_merges_a_sure_match_into_the_existing_customer(existing):
    record = _arrive(
        "S1",
        full_name="章伟",
        birth_date="1985-03-04",
        mobile="13800000001",
        email="zw@qq.com",
        gender="M",
        city="上海",
    )
    new_customer = record.customer_id
    result = services.records_match(source_record_ids=[record.pk])
    assert result["merged"] == 1, result
    assert result["results"][0]["customer"] == existing["zw"].pk
    record.refresh_from_db()
    assert record.customer_id == existing["zw"].pk
    assert Customer.objects.get(pk=new_customer).status == CustomerStatus.MERGED
    assert MatchCandidate.objects.get(status=CandidateStatus.AUTO_MERGED).explanation


@pytest.mark.django_db
def test_it_merges_on_an_identity_key(existing):
    record = _arrive("S2", full_name="张伟", id_number_hash="h" * 64, birth_date="1985-03-04")
    result = services.records_match(source_record_ids=[record.pk])
    assert result["results"][0]["action"] == "merged"


@pytest.mark.django_db
def test_it_queues_a_doubtful_match_for_review(existing):
    # Same name and phone but another gender: a reliable field differs, so a person decides.
    record = _arrive("S3", full_name="王芳", mobile="+8613700000003", gender="M")
    result = services.records_match(source_record_ids=[record.pk])
    assert result["for_review"] == 1, result
    candidate = MatchCandidate.objects.get(status=CandidateStatus.PENDING)
    assert {candidate.left_id, candidate.right_id} == {existing["wf"].pk, record.customer_id}


@pytest.mark.django_db
def test_it_leaves_strangers_and_family_members_alone_and_respects_rejections(existing, steward):
    stranger = _arrive("S4", full_name="赵六", mobile="+8613311112222")
    assert services.records_match(source_record_ids=[stranger.pk])["unmatched"] == 1
    # Same (family) phone, another name: two people, not even a candidate.
    relative = _arrive("S7", full_name="李丽", mobile="+8613700000003", gender="F")
    assert services.records_match(source_record_ids=[relative.pk])["unmatched"] == 1
    record = _arrive("S5", full_name="王芳", mobile="+8613700000003", gender="M")
    services.records_match(source_record_ids=[record.pk])
    services.candidate_reject(candidate=MatchCandidate.objects.get(status=CandidateStatus.PENDING), acting_user=steward)
    again = services.records_match(source_record_ids=[record.pk])
    assert again["for_review"] == 0 and again["merged"] == 0


@pytest.mark.django_db
def test_it_looks_up_by_index_not_by_scanning(existing):
    record = _arrive("S6", full_name="章伟", birth_date="1985-03-04", mobile="13800000001")
    with CaptureQueriesContext(connection) as queries:
        services.records_match(source_record_ids=[record.pk])
    lookups = [q["sql"] for q in queries.captured_queries if 'FROM "crmhub_customer"' in q["sql"]]
    assert lookups and all("WHERE" in sql for sql in lookups)


#
# The single-pair merge (dedup.realtime.merge_pair) against the general set-based path
#


class _Rollback(Exception):
    pass


def _unsealed(value):  # noqa: ANN001, ANN202
    """Sealed values in plain text: encryption is randomised, the sealed text differs each time."""
    from accounts.crypto import CIPHERTEXT_PREFIX, decrypt

    if isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX):
        return decrypt(value)
    if isinstance(value, dict):
        return {k: _unsealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsealed(v) for v in value]
    return value


def _rows(model, exclude: set[str], **filters) -> list[dict]:  # noqa: ANN001
    fields = [f.attname for f in model._meta.concrete_fields if f.attname not in exclude]
    return sorted(
        (
            {k: _unsealed(v) for k, v in zip(fields, row, strict=True)}
            for row in model.objects.filter(**filters).values_list(*fields)
        ),
        key=repr,
    )


def _end_state(ids: list[int]) -> dict:
    """Every row a merge writes or touches, without ids of new rows and timestamps of the moment."""
    from crmhub.models import ChangeEvent, Interaction
    from dedup.models import Merge

    moment = {"updated_at", "history_date", "created_at", "decided_at", "occurred_at"}
    return {
        "customers": _rows(Customer, {"updated_at"}, pk__in=ids),
        "customer_history": _rows(Customer.history.model, moment | {"history_id"}, id__in=ids),
        "records": _rows(SourceRecord, set(), customer_id__in=ids),
        "record_history": _rows(SourceRecord.history.model, moment | {"history_id"}, customer_id__in=ids),
        "interactions": _rows(Interaction, set(), customer_id__in=ids),
        "interaction_history": _rows(Interaction.history.model, moment | {"history_id"}, customer_id__in=ids),
        "merges": _rows(Merge, moment | {"id"}, survivor_id__in=ids),
        "events": _rows(ChangeEvent, moment | {"id", "event_id"}, customer_id__in=ids),
        "candidates": [
            {**row, "merge_id": row["merge_id"] is not None}
            for row in _rows(MatchCandidate, moment | {"id"}, left_id__in=ids)
        ],
    }


@pytest.fixture
def pair_to_merge(existing, steward):  # noqa: ANN001, ANN201
    """An existing customer and an arriving one that survivorship will take values from, each
    with more than one source record or an interaction, and open candidates about both."""
    from django.utils import timezone

    from crmhub.models import Interaction

    survivor = existing["zw"]
    SourceRecord.objects.create(
        source=make_source("pos"), source_key="P9", customer=survivor, normalized={"city": "上海"}
    )
    arriving = add_person(
        make_source("shop"),
        "S9",
        full_name="章伟",
        birth_date="1985-03-04",
        mobile="+8613800000001",
        email="zw@qq.com",
        address="人民路1号",
        id_number="11010519491231002X",
        tags=["vip"],
        custom={"size": 40},
    )
    Interaction.objects.create(
        customer=arriving, source=make_source("shop"), kind="order", external_id="O-9", occurred_at=timezone.now()
    )
    bystander = existing["wf"]
    MatchCandidate.objects.create(
        left=bystander, right=arriving, score=0.9, rule="default", status=CandidateStatus.PENDING
    )
    return survivor, arriving


def _merge_arguments(survivor, arriving) -> dict:  # noqa: ANN001
    """What records_match hands merge_pair for this pair."""
    from django.utils import timezone

    from dedup import realtime
    from dedup.choices import MergeOrigin

    record = SourceRecord.objects.get(customer=arriving)
    return {
        "survivor_id": survivor.pk,
        "merged_id": arriving.pk,
        "candidate": {
            "left_id": min(survivor.pk, arriving.pk),
            "right_id": max(survivor.pk, arriving.pk),
            "score": 0.99999,
            "rule": "default",
            "reason": "score",
            "explanation": [{"comparison": "name", "level": "sound_alike", "weight": 5.0}],
            "status": CandidateStatus.AUTO_MERGED,
            "decided_at": timezone.now(),
        },
        "origin": MergeOrigin.REALTIME,
        "note": "real-time match by rule default",
        "state": realtime.state_for(realtime.arrivals_load([record.pk])[0].stamp),
        "ref": f"source_record:{record.pk}",
    }


def _merge(path, arguments, steward):  # noqa: ANN001, ANN202
    from crmhub.choices import ChangeChannel
    from crmhub.context import change_context
    from dedup import realtime

    arguments = dict(arguments)
    ref = arguments.pop("ref")
    with change_context(channel=ChangeChannel.MERGE, ref=ref, user=steward):
        if path == "portable":
            arguments.pop("state")
            return realtime.merge_pair_portable(**arguments)
        return realtime.merge_pair(**arguments)


@pytest.mark.django_db
@pytest.mark.parametrize("pair_candidate_exists", [False, True])
def test_the_single_pair_merge_ends_exactly_as_the_set_based_merge(pair_to_merge, steward, pair_candidate_exists):
    from django.db import transaction

    from dedup.models import Merge

    survivor, arriving = pair_to_merge
    proposed = None
    if pair_candidate_exists:  # an earlier review-band proposal of this very pair
        proposed = MatchCandidate.objects.create(
            left_id=min(survivor.pk, arriving.pk),
            right_id=max(survivor.pk, arriving.pk),
            score=0.9,
            rule="default",
            status=CandidateStatus.PENDING,
        )
    ids = [survivor.pk, arriving.pk, *Customer.objects.values_list("pk", flat=True)]
    arguments = _merge_arguments(survivor, arriving)
    before = _end_state(ids)
    try:
        with transaction.atomic():
            general = _merge("portable", arguments, steward)
            expected = _end_state(ids)
            raise _Rollback
    except _Rollback:
        pass
    assert _end_state(ids) == before
    single = _merge("single", arguments, steward)
    assert single.merge_id is not None and general.merge_id is not None
    after = _end_state(ids)
    for key, rows in expected.items():
        assert after[key] == rows, key
    merged = Customer.objects.get(pk=survivor.pk)
    assert (merged.email, merged.id_number, merged.tags, merged.custom) == (
        "zw@qq.com",
        "11010519491231002X",
        ["vip"],
        {"size": 40},
    )
    written = MatchCandidate.objects.get(pk=single.candidate_id)
    assert written.merge_id == single.merge_id
    if proposed is not None:  # updated in place, as update_or_create does
        assert (written.pk, written.created_at) == (proposed.pk, proposed.created_at)
    # Undo is exact: every customer, source record and interaction as before the merge.
    from dedup import services

    report = services.merge_undo(merge=Merge.objects.get(pk=single.merge_id))
    assert report["has_conflicts"] is False
    undone = _end_state(ids)
    for key in ("records", "interactions"):
        assert undone[key] == before[key]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "version"} for r in rows]  # noqa: E731
    assert strip(undone["customers"]) == strip(before["customers"])


@pytest.mark.django_db
def test_a_single_pair_merge_writes_in_one_statement_after_two_locking_reads(pair_to_merge, steward):
    survivor, arriving = pair_to_merge
    arguments = _merge_arguments(survivor, arriving)
    with CaptureQueriesContext(connection) as queries:
        outcome = _merge("single", arguments, steward)
    assert outcome.merge_id is not None
    if connection.vendor == "postgresql":  # elsewhere the general path runs
        assert len(queries.captured_queries) == 3, [q["sql"][:80] for q in queries.captured_queries]


@pytest.mark.django_db
def test_real_time_scoring_equals_the_batch_scoring_of_the_same_pairs(people):
    import numpy as np

    from dedup import engine, realtime, scoring
    from dedup.features import features_from_rows
    from dedup.services import FEATURE_SOURCE_COLUMNS, match_rule_default_ensure

    config = match_rule_default_ensure().config()
    rows = [{**r, "id_valid": True} for r in Customer.objects.order_by("pk").values(*FEATURE_SOURCE_COLUMNS)]
    rows[3]["id_valid"] = False
    tf, floor = scoring.term_frequencies(config.comparisons, features_from_rows(rows))
    for params in (
        scoring.Parameters.defaults(config.comparisons),
        scoring.Parameters(
            m={c.name: list(c.default_m) for c in config.comparisons},
            u={c.name: list(c.default_u) for c in config.comparisons},
            prior=0.05,
            tf=tf,
            tf_floor=floor,
        ),
    ):
        for k, mine in enumerate(rows):
            others = rows[:k] + rows[k + 1 :]
            fast = realtime.score_against(config, params, mine, others)
            pairs = np.stack([np.zeros(len(others), dtype=np.int64), np.arange(1, len(others) + 1)], axis=1)
            slow = engine.score_pair_positions(
                config, params, features_from_rows([mine, *others]), pairs, keep_all=True
            )
            for name in ("left", "right", "action", "reason", "levels"):
                assert getattr(fast, name).tolist() == getattr(slow, name).tolist(), name
            assert np.array_equal(fast.score, slow.score) and np.array_equal(fast.contributions, slow.contributions)


@pytest.mark.django_db
def test_the_queries_compiled_once_give_what_the_querysets_give(existing):
    from dedup import realtime

    record = _arrive(
        "S8", full_name="章伟", birth_date="1985-03-04", mobile="+8613800000001", email="zw@qq.com", member_no="M1"
    )
    Customer.objects.filter(pk=record.customer_id).update(quality_flags={"id_number": "bad checksum"})
    ids = [record.pk, SourceRecord.objects.get(customer=existing["wf"]).pk]
    arrivals = realtime.arrivals_load(ids)
    assert arrivals == realtime.arrivals_load(ids)  # the second call runs the compiled statement
    assert [a.record_id for a in arrivals] == list(SourceRecord.objects.filter(pk__in=ids).values_list("pk", flat=True))
    assert [tuple(r) for r in realtime._values_rows(("arrivals", 2), realtime._arrivals_query, ids)] == list(
        realtime._arrivals_query(*ids)
    )
    me = next(a for a in arrivals if a.record_id == record.pk)
    assert me.features["id_valid"] is False
    found = realtime.candidates_load(me)
    assert [o["id"] for o in found.others] == [existing["zw"].pk] and found.mine["id"] == me.customer_id
    assert found.rejections is False
    keys = ("mobile", "email", "member_no", "name_birth")
    values = [me.customer_id] * 3 + ["+8613800000001", "zw@qq.com", "M1", me.name_pinyin, me.features["birth_date"]]
    build = lambda *v: realtime._candidates_query(*v, keys=keys)  # noqa: E731
    assert [tuple(r) for r in realtime._values_rows(("candidates", *keys), build, values)] == list(build(*values))


@pytest.mark.django_db
def test_an_admins_change_reaches_the_next_call_however_it_was_made(existing):
    from crmhub.choices import Sensitivity
    from crmhub.models import FieldDefinition, Source
    from dedup import realtime
    from dedup.models import MatchRule, SurvivorshipRule

    record = _arrive("S10", full_name="王芳", mobile="+8613700000003", gender="M")
    stamps = [realtime.arrivals_load([record.pk])[0].stamp]
    services.match_rule_default_ensure()
    for change in (
        lambda: MatchRule.objects.update(auto_threshold=1.0, review_threshold=1.0),
        lambda: SurvivorshipRule.objects.update_or_create(field="email", defaults={"strategy": "most_frequent"}),
        lambda: Source.objects.filter(code="shop").update(trust_rank=99),
        lambda: FieldDefinition.objects.update_or_create(name="company", defaults={"sensitivity": Sensitivity.SECRET}),
    ):
        change()
        stamps.append(realtime.arrivals_load([record.pk])[0].stamp)
    assert len(set(stamps)) == len(stamps)
    # The raised thresholds (a queryset update: no save, no signal) apply at once.
    assert services.records_match(source_record_ids=[record.pk])["unmatched"] == 1
    MatchRule.objects.update(auto_threshold=0.9999, review_threshold=0.8)
    assert services.records_match(source_record_ids=[record.pk])["for_review"] == 1
