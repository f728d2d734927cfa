"""The dedup API: the review queue, decisions and merges, with their permission checks."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from crmhub.choices import CustomerStatus
from crmhub.models import Customer
from dedup.choices import CandidateStatus, MergeStatus
from dedup.models import MatchCandidate, Merge
from tests.dedup.conftest import add_person, make_source


@pytest.fixture
def candidate(db):  # noqa: ANN001, ANN201
    source = make_source()
    a = add_person(source, "K1", full_name="张伟", mobile="+8613800000001", id_number="11010519491231002X")
    b = add_person(source, "K2", full_name="章伟", mobile="+8613800000001", id_number="11010519491231002X")
    return MatchCandidate.objects.create(
        left=a,
        right=b,
        score=0.93,
        rule="default",
        explanation=[
            {"comparison": "name", "fields": ["full_name"], "level": "sound_alike", "weight": 2.1},
            {"comparison": "mobile", "fields": ["mobile"], "level": "exact", "weight": 9.0},
            {"comparison": "id_number", "fields": ["id_number"], "level": "exact", "weight": 19.9},
        ],
    )


def client_for(user) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_a_steward_sees_the_queue_with_masked_secrets(candidate, steward):
    body = client_for(steward).get("/api/v1/candidates/", {"status": "pending"}).json()
    assert body["count"] == 1
    item = body["results"][0]
    assert item["score"] == 0.93
    rows = {r["comparison"]: r for r in item["explanation"]}
    assert rows["mobile"]["values"][0]["left"] == "+8613800000001"
    ident = rows["id_number"]["values"][0]
    assert ident["left"] != "11010519491231002X" and "*" in ident["left"]  # secret: masked even for a steward


@pytest.mark.django_db
def test_an_auditor_sees_the_queue_without_values_beyond_their_role(candidate, auditor):
    body = client_for(auditor).get("/api/v1/candidates/").json()
    rows = {r["comparison"]: r for r in body["results"][0]["explanation"]}
    assert rows["id_number"]["values"] == []  # hidden for auditors: left out entirely
    assert "8613800000001" not in str(body)  # the mobile is masked for an auditor
    assert client_for(auditor).post(f"/api/v1/candidates/{candidate.pk}/approve/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["sales", "support", "outsider"])
def test_sales_support_and_outsiders_cannot_decide_or_merge(candidate, persona, request):
    client = client_for(request.getfixturevalue(persona))
    assert client.get("/api/v1/candidates/").status_code == 403
    assert client.post(f"/api/v1/candidates/{candidate.pk}/approve/").status_code == 403
    assert client.post(f"/api/v1/candidates/{candidate.pk}/reject/").status_code == 403
    r = client.post(
        "/api/v1/merges/",
        {"customers": [candidate.left_id, candidate.right_id], "survivor": candidate.left_id},
        format="json",
    )
    assert r.status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.PENDING


@pytest.mark.django_db
def test_anonymous_callers_are_refused(candidate):
    assert APIClient().get("/api/v1/candidates/").status_code in (401, 403)


@pytest.mark.django_db
def test_a_steward_approves_rejects_merges_and_unmerges(candidate, steward):
    client = client_for(steward)
    r = client.post(f"/api/v1/candidates/{candidate.pk}/approve/", {"note": "same phone"}, format="json")
    assert r.status_code == 201, r.json()
    merge = Merge.objects.get(pk=r.json()["id"])
    assert merge.acting_user == steward
    again = client.post(f"/api/v1/candidates/{candidate.pk}/reject/")
    assert again.status_code == 409 and "not waiting" in again.json()["message"]
    r = client.post(f"/api/v1/merges/{merge.pk}/unmerge/", format="json")
    assert r.status_code == 200 and r.json()["status"] == MergeStatus.UNDONE
    assert Customer.objects.filter(status=CustomerStatus.ACTIVE).count() == 2


@pytest.mark.django_db
def test_merge_requests_are_validated(candidate, steward):
    client = client_for(steward)
    a, b = candidate.left_id, candidate.right_id
    r = client.post("/api/v1/merges/", {"customers": [a, b], "survivor": 999}, format="json")
    assert r.status_code == 400 and "survivor" in r.json()["details"]
    r = client.post("/api/v1/merges/", {"customers": [a, 999999], "survivor": a}, format="json")
    assert r.status_code == 404
    r = client.post("/api/v1/merges/", {"customers": [a, b], "survivor": a, "versions": {str(a): 5}}, format="json")
    assert r.status_code == 409 and "changed since" in r.json()["message"]
    r = client.post(
        "/api/v1/merges/", {"customers": [a, b], "survivor": a, "values": {"birth_date": "x"}}, format="json"
    )
    assert r.status_code == 400
    r = client.post(
        "/api/v1/merges/", {"customers": [a, b], "survivor": b, "values": {"full_name": "章伟"}}, format="json"
    )
    assert r.status_code == 201
    assert Customer.objects.get(pk=a).merged_into_id == b
    assert client.get("/api/v1/candidates/", {"status": "bogus"}).status_code == 400


@pytest.mark.django_db
def test_a_steward_cannot_set_a_field_they_may_not_edit(candidate, steward):
    r = client_for(steward).post(
        "/api/v1/merges/",
        {
            "customers": [candidate.left_id, candidate.right_id],
            "survivor": candidate.left_id,
            "values": {"id_number": "440524188001010014"},
        },
        format="json",
    )
    assert r.status_code == 403


@pytest.fixture
def queue(db):  # noqa: ANN001, ANN201
    crm, shop = make_source("crm"), make_source("shop")
    a = add_person(crm, "Q1", full_name="甲")
    b = add_person(crm, "Q2", full_name="乙")
    c = add_person(shop, "Q3", full_name="丙")
    d = add_person(crm, "Q4", full_name="丁")
    return {
        "ab": MatchCandidate.objects.create(left=a, right=b, score=0.97, rule="default"),
        "bc": MatchCandidate.objects.create(left=b, right=c, score=0.86, rule="strict"),
        "cd": MatchCandidate.objects.create(left=c, right=d, score=0.99, rule="default", status="rejected"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["cd", "ab", "bc"]),
        ({"status": "pending"}, ["ab", "bc"]),
        ({"status": "pending", "source": "shop"}, ["bc"]),
        ({"rule": "strict"}, ["bc"]),
        ({"min_score": "0.9"}, ["cd", "ab"]),
        ({"max_score": "0.9"}, ["bc"]),
        ({"status": "pending", "assignee": "none"}, ["ab", "bc"]),
    ],
)
def test_candidates_are_filtered(queue, steward, params, expected):
    body = client_for(steward).get("/api/v1/candidates/", params).json()
    assert [r["id"] for r in body["results"]] == [queue[k].pk for k in expected]


@pytest.mark.django_db
def test_a_bad_filter_says_what_is_wrong(queue, steward):
    r = client_for(steward).get("/api/v1/candidates/", {"min_score": "high"})
    assert r.status_code == 400 and "min_score must be a number" in str(r.json())
    r = client_for(steward).get("/api/v1/candidates/", {"status": "maybe"})
    assert r.status_code == 400 and "Unknown status" in str(r.json())


@pytest.mark.django_db
def test_a_steward_assigns_candidates_through_the_api(queue, steward, auditor, sales):
    client = client_for(steward)
    r = client.post(f"/api/v1/candidates/{queue['ab'].pk}/assign/", {"assignee": "me"}, format="json")
    assert r.status_code == 200 and r.json()["assignee"] == steward.username
    mine = client.get("/api/v1/candidates/", {"assignee": "me"}).json()
    assert [x["id"] for x in mine["results"]] == [queue["ab"].pk]
    by_name = client.get("/api/v1/candidates/", {"assignee": steward.username}).json()
    assert [x["id"] for x in by_name["results"]] == [queue["ab"].pk]
    r = client.post(f"/api/v1/candidates/{queue['bc'].pk}/assign/", {"assignee": sales.username}, format="json")
    assert r.status_code == 400 and "not a data steward" in str(r.json())
    r = client.post(f"/api/v1/candidates/{queue['ab'].pk}/assign/", {"assignee": None}, format="json")
    assert r.status_code == 200 and r.json()["assignee"] is None
    r = client.post(f"/api/v1/candidates/{queue['cd'].pk}/assign/", {"assignee": "me"}, format="json")
    assert r.status_code == 409  # decided already
    r = client_for(auditor).post(f"/api/v1/candidates/{queue['ab'].pk}/assign/", {"assignee": "me"}, format="json")
    assert r.status_code == 403
