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
