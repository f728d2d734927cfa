"""The steward's review queue and compare-and-merge screen: filters, clusters, assignment, bulk
decisions, field-by-field merges, remembered rejections and two stewards at once."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from accounts.roles import Role
from crmhub.choices import CustomerStatus
from crmhub.editing import customer_update
from crmhub.models import Customer, SourceRecord
from dedup import selectors, services
from dedup.choices import CandidateStatus
from dedup.clusters import clusters_rebuild
from dedup.models import MatchCandidate, Merge
from tests.conftest import make_user
from tests.dedup.conftest import add_person, make_source

pytestmark = pytest.mark.django_db

EXPLANATION = [
    {"comparison": "name", "fields": ["full_name"], "level": "sound_alike", "weight": 2.1},
    {"comparison": "mobile", "fields": ["mobile"], "level": "exact", "weight": 9.0},
    {"comparison": "id_number", "fields": ["id_number"], "level": "exact", "weight": 19.9},
]


def _pair(a: Customer, b: Customer, score: float = 0.9, rule: str = "default", **extra) -> MatchCandidate:  # noqa: ANN003
    left, right = sorted([a, b], key=lambda c: c.pk)
    return MatchCandidate.objects.create(
        left=left, right=right, score=score, rule=rule, explanation=EXPLANATION, **extra
    )


@pytest.fixture
def world(db):  # noqa: ANN001, ANN201
    """A cluster (张伟 ×3, linked by two pending pairs), a separate pair (Smith), a pair from
    another source (王芳) and an already decided pair."""
    crm, shop = make_source("crm"), make_source("shop")
    p = {
        "a1": add_person(crm, "A1", full_name="张伟", mobile="+8613800000001", email="zw@qq.com", city="上海"),
        "a2": add_person(crm, "A2", full_name="章伟", mobile="+8613800000001", city="上海"),
        "a3": add_person(crm, "A3", full_name="張偉", mobile="+8613800000001", email="zw85@qq.com"),
        "c1": add_person(crm, "C1", full_name="Bill Smith", mobile="+8613900000002", id_number="11010519491231002X"),
        "c2": add_person(crm, "C2", full_name="William Smith", mobile="+8613900000002"),
        "d1": add_person(crm, "D1", full_name="王芳", mobile="+8613700000003"),
        "d2": add_person(shop, "D2", full_name="王芳", mobile="+8613700000030"),
        "e1": add_person(crm, "E1", full_name="李娜"),
        "e2": add_person(crm, "E2", full_name="李娜"),
    }
    c = {
        "a12": _pair(p["a1"], p["a2"], 0.97),
        "a23": _pair(p["a2"], p["a3"], 0.91, rule="strict"),
        "c12": _pair(p["c1"], p["c2"], 0.88),
        "d12": _pair(p["d1"], p["d2"], 0.82),
        "e12": _pair(p["e1"], p["e2"], 0.99, status=CandidateStatus.REJECTED),
    }
    return p, c


@pytest.fixture
def steward2(django_user_model):  # noqa: ANN001, ANN201
    return make_user(django_user_model, "tina_steward", Role.STEWARD)


def login(user) -> Client:  # noqa: ANN001
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _keys(items) -> list[list[int]]:  # noqa: ANN001
    return [item.candidate_ids for item in items]


#
# The queue: clusters, filters, sorting
#


def test_it_groups_pending_pairs_sharing_customers_into_one_cluster(world, steward):
    p, c = world
    items = selectors.review_items(user=steward, filters=selectors.ReviewFilters())
    assert _keys(items) == [[c["a12"].pk, c["a23"].pk], [c["c12"].pk], [c["d12"].pk]]
    cluster = items[0]
    assert cluster.is_cluster and cluster.customer_ids == sorted([p["a1"].pk, p["a2"].pk, p["a3"].pk])
    assert cluster.score == 0.97


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "shop"}, ["d12"]),
        ({"rule": "strict"}, ["a12"]),  # a filter never splits a cluster: the whole cluster shows
        ({"band": "high"}, ["a12"]),
        ({"band": "medium"}, ["a12", "c12"]),  # the cluster has a pair at 0.91
        ({"band": "low"}, ["d12"]),
        ({"min_score": "0.85", "max_score": "0.9"}, ["c12"]),
        ({"age": "older_week"}, ["c12"]),
        ({"age": "day"}, ["a12", "d12"]),
    ],
)
def test_it_filters_the_queue(world, steward, params, expected):
    p, c = world
    MatchCandidate.objects.filter(pk=c["c12"].pk).update(created_at=timezone.now() - dt.timedelta(days=9))
    clusters_rebuild()  # the raw update bypasses the services that keep clusters current
    filters = selectors.ReviewFilters.from_params(params)
    assert [item.key for item in selectors.review_items(user=steward, filters=filters)] == [c[k].pk for k in expected]


def test_it_filters_by_assignee_and_sorts_by_age(world, steward, steward2):
    p, c = world
    services.candidates_assign(candidate_ids=[c["c12"].pk], assignee=steward, acting_user=steward)
    services.candidates_assign(candidate_ids=[c["d12"].pk], assignee=steward2, acting_user=steward)
    mine = selectors.ReviewFilters.from_params({"assignee": "me"})
    assert [i.key for i in selectors.review_items(user=steward, filters=mine)] == [c["c12"].pk]
    theirs = selectors.ReviewFilters.from_params({"assignee": steward2.username})
    assert [i.key for i in selectors.review_items(user=steward, filters=theirs)] == [c["d12"].pk]
    nobody = selectors.ReviewFilters.from_params({"assignee": "none"})
    assert [i.key for i in selectors.review_items(user=steward, filters=nobody)] == [c["a12"].pk]
    MatchCandidate.objects.filter(pk=c["d12"].pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    clusters_rebuild()  # the raw update bypasses the services that keep clusters current
    oldest = selectors.review_items(user=steward, filters=selectors.ReviewFilters(), sort="age")
    assert oldest[0].key == c["d12"].pk
    lowest = selectors.review_items(user=steward, filters=selectors.ReviewFilters(), sort="score")
    assert [i.key for i in lowest] == [c["d12"].pk, c["c12"].pk, c["a12"].pk]


def test_unknown_filter_values_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="score band"):
        selectors.ReviewFilters.from_params({"band": "huge"})
    with pytest.raises(ValueError, match="No user"):
        selectors.ReviewFilters.from_params({"assignee": "ghost"})


def test_the_queue_page_shows_items_masked_filtered_and_paginated(world, steward):
    p, c = world
    crm = make_source("crm")
    for i in range(22):
        _pair(add_person(crm, f"P{i}a", full_name=f"甲{i}"), add_person(crm, f"P{i}b", full_name=f"乙{i}"), 0.86)
    client = login(steward)
    body = client.get("/dedup/review/").content.decode()
    assert body.count('class="candidate item') == 20
    assert f'id="item-{c["a12"].pk}"' in body and "cluster of 3 records" in body
    assert "11010519491231002X" not in body  # the secret ID number is masked even for stewards
    page2 = client.get("/dedup/review/", {"page": 2}).content.decode()
    assert page2.count('class="candidate item') == 5
    shop = client.get("/dedup/review/", {"source": "shop"}).content.decode()
    assert shop.count('class="candidate item') == 1 and f'id="item-{c["d12"].pk}"' in shop
    # htmx asks for the list only when a filter changes
    partial = client.get("/dedup/review/", {"band": "high"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="queue")
    assert "<html" not in partial.content.decode() and partial.content.decode().count('class="candidate item') == 1


def test_the_pending_count_shows_for_reviewers_only(world, steward, sales, django_assert_max_num_queries):
    body = login(steward).get("/").content.decode()
    assert re.search(r'id="nav-pending">4</b>', body)
    other = login(sales).get("/").content.decode()
    assert "nav-pending" not in other and "/dedup/review/" not in other
    from django.test import RequestFactory

    from dedup.context_processors import review_count

    request = RequestFactory().get("/")
    request.user = steward
    with django_assert_max_num_queries(2):  # roles, then one COUNT
        assert str(review_count(request)["nav_pending_reviews"]) == "4"


def test_others_may_not_work_the_queue(world, sales, auditor):
    p, c = world
    client = login(sales)
    assert client.get("/dedup/review/").status_code == 403
    assert client.get(f"/dedup/candidates/{c['c12'].pk}/compare/").status_code == 403
    auditor_client = login(auditor)
    queue = auditor_client.get("/dedup/review/")
    assert queue.status_code == 200
    body = queue.content.decode()
    assert f'id="item-{c["c12"].pk}"' in body
    # Names, mobiles and e-mails are confidential: auditors see them masked.
    for value in ("William Smith", "+8613900000002", "zw@qq.com"):
        assert value not in body
    assert "W*** Smith" in body
    assert 'name="decision"' not in body
    page = auditor_client.get(f"/dedup/candidates/{c['c12'].pk}/compare/").content.decode()
    assert 'name="decision"' not in page  # looks, cannot decide
    r = auditor_client.post("/dedup/review/decide/", {"decision": "reject", "candidates": str(c["c12"].pk)})
    assert r.status_code == 403
    assert auditor_client.post("/dedup/review/assign/", {"candidates": str(c["c12"].pk)}).status_code == 403


#
# Assignment and bulk decisions
#


def test_a_steward_assigns_items_to_themselves_and_to_a_colleague(world, steward, steward2, sales):
    p, c = world
    client = login(steward)
    r = client.post("/dedup/review/assign/", {"assignee": "me", "candidates": f"{c['a12'].pk},{c['a23'].pk}"})
    assert r.status_code == 302
    assert set(MatchCandidate.objects.filter(assignee=steward).values_list("pk", flat=True)) == {
        c["a12"].pk,
        c["a23"].pk,
    }
    client.post(
        "/dedup/review/assign/",
        {"assignee": steward2.pk, "items": [str(c["c12"].pk), str(c["d12"].pk), str(c["e12"].pk)]},
    )
    assert set(MatchCandidate.objects.filter(assignee=steward2).values_list("pk", flat=True)) == {
        c["c12"].pk,
        c["d12"].pk,
    }  # the decided pair keeps its assignee (none)
    client.post("/dedup/review/assign/", {"assignee": sales.pk, "candidates": str(c["c12"].pk)})
    assert MatchCandidate.objects.get(pk=c["c12"].pk).assignee == steward2  # sales are not stewards
    client.post("/dedup/review/assign/", {"assignee": "none", "candidates": str(c["c12"].pk)})
    assert MatchCandidate.objects.get(pk=c["c12"].pk).assignee is None


def _queue_versions(client: Client, key: int) -> str:
    body = client.get("/dedup/review/").content.decode()
    return re.search(rf'name="versions-{key}" value="([\d:,]*)"', body).group(1)


def test_bulk_decisions_ask_for_confirmation_first(world, steward):
    p, c = world
    client = login(steward)
    cluster = f"{c['a12'].pk},{c['a23'].pk}"
    data = {
        "decision": "approve",
        "items": [cluster, str(c["c12"].pk)],
        f"versions-{c['a12'].pk}": _queue_versions(client, c["a12"].pk),
        f"versions-{c['c12'].pk}": _queue_versions(client, c["c12"].pk),
    }
    confirm = client.post("/dedup/review/bulk/", data)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "will be merged" in page and f"#{p['a1'].pk}" in page and f"#{p['c1'].pk}" in page
    assert MatchCandidate.objects.filter(status=CandidateStatus.PENDING).count() == 4  # nothing happened yet
    # The confirmation page carries what it showed: post it as it is.
    hidden = dict(re.findall(r'<input type="hidden" name="([\w-]+)" value="([^"]*)"', page))
    items = re.findall(r'<input type="hidden" name="items" value="([\d,]+)"', page)
    done = client.post("/dedup/review/bulk/", {**hidden, "items": items, "confirm": "yes"})
    assert done.status_code == 302
    assert MatchCandidate.objects.get(pk=c["a12"].pk).status == CandidateStatus.APPROVED
    assert MatchCandidate.objects.get(pk=c["a23"].pk).status == CandidateStatus.APPROVED
    for key in ("a2", "a3"):
        assert Customer.objects.get(pk=p[key].pk).merged_into_id == p["a1"].pk
    assert Customer.objects.get(pk=p["c2"].pk).merged_into_id == p["c1"].pk
    merge = Merge.objects.get(survivor=p["a1"])
    assert sorted(merge.merged_ids) == sorted([p["a2"].pk, p["a3"].pk]) and merge.acting_user == steward


def test_bulk_reject_is_remembered_and_a_stale_item_does_not_stop_the_others(world, steward):
    p, c = world
    client = login(steward)
    versions = _queue_versions(client, c["c12"].pk)
    customer_update(
        customer_id=p["c2"].pk, values={"city": "北京"}, expected_version=p["c2"].version, acting_user=steward
    )
    r = client.post(
        "/dedup/review/bulk/",
        {
            "decision": "approve",
            "confirm": "yes",
            "items": [str(c["c12"].pk)],
            f"versions-{c['c12'].pk}": versions,
        },
        follow=True,
    )
    assert "changed since it was read" in r.content.decode()
    assert MatchCandidate.objects.get(pk=c["c12"].pk).status == CandidateStatus.PENDING
    client.post(
        "/dedup/review/bulk/",
        {"decision": "reject", "confirm": "yes", "items": [str(c["c12"].pk), str(c["d12"].pk)]},
    )
    assert set(MatchCandidate.objects.filter(status=CandidateStatus.REJECTED).values_list("pk", flat=True)) == {
        c["c12"].pk,
        c["d12"].pk,
        c["e12"].pk,
    }
    assert (p["c1"].pk, p["c2"].pk) in services.rejected_pairs()


def test_a_cluster_with_a_remembered_rejection_inside_is_not_merged_whole(world, steward):
    p, c = world
    _pair(p["a1"], p["a3"], 0.5, status=CandidateStatus.REJECTED)
    with pytest.raises(services.MergeError, match="different people"):
        services.cluster_approve(candidate_ids=[c["a12"].pk, c["a23"].pk], acting_user=steward)
    assert Customer.objects.get(pk=p["a3"].pk).status == CustomerStatus.ACTIVE


def test_deciding_from_the_queue_with_htmx_answers_with_the_new_state_and_count(world, steward):
    p, c = world
    client = login(steward)
    versions = _queue_versions(client, c["c12"].pk)
    r = client.post(
        "/dedup/review/decide/",
        {"decision": "approve", "candidates": str(c["c12"].pk), "versions": versions},
        HTTP_HX_REQUEST="true",
    )
    body = r.content.decode()
    assert r.status_code == 200 and "Merged." in body and 'id="nav-pending" hx-swap-oob="true">3</b>' in body
    again = client.post(
        "/dedup/review/decide/", {"decision": "reject", "candidates": str(c["c12"].pk)}, HTTP_HX_REQUEST="true"
    )
    assert again.status_code == 409 and "sam_steward decided it" in again.content.decode()


#
# Compare and merge
#


def _form(page: str) -> dict:
    """The merge form's fields as a browser would post them (checked radios, hidden inputs)."""
    form = page[page.index('id="merge-form"') :]
    form = form[: form.index("</form>")]
    data = dict(re.findall(r'<input type="hidden" name="([\w-]+)" value="([^"]*)"', form))
    for name, value in re.findall(r'<input type="radio" name="([\w-]+)" value="([^"]+)"[^>]*\bchecked\b', form):
        data[name] = value
    return data


def test_the_compare_screen_shows_values_differences_reasons_explanation_and_source_records(world, steward):
    p, c = world
    page = login(steward).get(f"/dedup/candidates/{c['c12'].pk}/compare/").content.decode()
    assert "Bill Smith" in page and "William Smith" in page
    assert re.search(r'<tr class="field-row differs" data-row="full_name">', page)
    assert not re.search(r'<tr class="field-row differs" data-row="mobile">', page)  # same value: not highlighted
    # Survivorship's reason beside its proposal: both names come from crm, so the tie-break decided.
    assert "Most trusted source: a tie; the most recently updated (crm)" in page
    assert "sound_alike" in page and "9.00" in page  # the matcher's explanation per field
    assert '<span class="badge">crm</span> C1' in page and '<span class="badge">crm</span> C2' in page
    assert "11010519491231002X" not in page  # masked for stewards (secret)
    assert 'name="choice-id_number"' not in page  # and not chosen by hand: survivorship decides it
    form = _form(page)
    assert form["survivor"] == str(p["c1"].pk) and form["choice-full_name"] == str(p["c2"].pk)


def test_a_steward_merges_a_pair_field_by_field(world, steward):
    p, c = world
    client = login(steward)
    page = client.get(f"/dedup/candidates/{c['a12'].pk}/compare/").content.decode()
    form = _form(page)
    assert form["candidates"] == f"{c['a12'].pk},{c['a23'].pk}"  # opened from a cluster: all three
    form.update(
        {
            "choice-full_name": str(p["a2"].pk),  # not the proposal
            "choice-email": "override",
            "override-email": " ZhangWei@Example.com ",
            "note": "same phone and address",
            "decision": "merge",
        }
    )
    r = client.post(f"/dedup/candidates/{c['a12'].pk}/compare/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    golden = Customer.objects.get(pk=p["a1"].pk)
    assert golden.full_name == "章伟"
    assert golden.email == "zhangwei@example.com"  # cleaned like any manual edit
    assert golden.city == "上海"
    merge = Merge.objects.get(survivor=golden)
    assert merge.values == {"full_name": "章伟", "email": "zhangwei@example.com"}  # only what the steward chose
    assert merge.note == "same phone and address"
    assert SourceRecord.objects.filter(customer=golden).count() == 3
    assert set(MatchCandidate.objects.filter(pk__in=[c["a12"].pk, c["a23"].pk]).values_list("status", flat=True)) == {
        CandidateStatus.APPROVED
    }


def test_choosing_another_survivor_re_proposes_and_merges_into_it(world, steward):
    p, c = world
    client = login(steward)
    page = client.get(f"/dedup/candidates/{c['c12'].pk}/compare/", {"survivor": p["c2"].pk}).content.decode()
    form = _form(page)
    assert form["survivor"] == str(p["c2"].pk) and form["choice-full_name"] == str(p["c2"].pk)
    r = client.post(f"/dedup/candidates/{c['c12'].pk}/compare/", {**form, "decision": "merge"})
    assert r.status_code == 302
    assert Customer.objects.get(pk=p["c1"].pk).merged_into_id == p["c2"].pk
    assert Customer.objects.get(pk=p["c2"].pk).full_name == "William Smith"


def test_an_invalid_override_is_refused_with_its_reason_and_nothing_merges(world, steward):
    p, c = world
    client = login(steward)
    form = _form(client.get(f"/dedup/candidates/{c['c12'].pk}/compare/").content.decode())
    form.update({"choice-mobile": "override", "override-mobile": "12", "decision": "merge"})
    r = client.post(f"/dedup/candidates/{c['c12'].pk}/compare/", form)
    assert r.status_code == 400
    assert 'class="error"' in r.content.decode()
    assert Customer.objects.get(pk=p["c2"].pk).status == CustomerStatus.ACTIVE


def test_not_the_same_person_is_remembered_by_batch_runs_and_real_time_matching(db, steward):
    crm, shop = make_source("crm"), make_source("shop")
    wf = add_person(crm, "C2", full_name="王芳", birth_date="1990-07-08", mobile="+8613700000003", gender="F")
    arriving = add_person(shop, "S3", full_name="王芳", mobile="+8613700000003", gender="M")
    record = SourceRecord.objects.get(customer=arriving)
    assert services.records_match(source_record_ids=[record.pk])["for_review"] == 1
    candidate = MatchCandidate.objects.get(status=CandidateStatus.PENDING)
    client = login(steward)
    form = _form(client.get(f"/dedup/candidates/{candidate.pk}/compare/").content.decode())
    r = client.post(f"/dedup/candidates/{candidate.pk}/compare/", {**form, "decision": "reject", "note": "twins"})
    assert r.status_code == 302
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.REJECTED and candidate.decided_by == steward
    # The same record arriving again, and a batch run over everything: never proposed again.
    again = services.records_match(source_record_ids=[record.pk])
    assert again["for_review"] == 0 and again["merged"] == 0
    run = services.dedup_run_execute_inline(run=services.dedup_run_create())
    assert run.for_review == 0 and run.auto_merged == 0
    assert not MatchCandidate.objects.filter(status=CandidateStatus.PENDING).exists()
    assert Customer.objects.get(pk=wf.pk).status == Customer.objects.get(pk=arriving.pk).status == "active"


def test_one_pair_of_a_cluster_is_kept_apart_and_the_rest_stays_to_decide(world, steward):
    p, c = world
    client = login(steward)
    form = _form(client.get(f"/dedup/candidates/{c['a12'].pk}/compare/").content.decode())
    r = client.post(
        f"/dedup/candidates/{c['a12'].pk}/compare/",
        {"candidates": form["candidates"], "versions": form["versions"], "reject": c["a23"].pk, "decision": "reject"},
    )
    assert r.status_code == 302 and r.url.endswith(f"/dedup/candidates/{c['a12'].pk}/compare/")
    assert MatchCandidate.objects.get(pk=c["a23"].pk).status == CandidateStatus.REJECTED
    assert MatchCandidate.objects.get(pk=c["a12"].pk).status == CandidateStatus.PENDING
    page = client.get(r.url).content.decode()
    assert _form(page)["candidates"] == str(c["a12"].pk)  # the cluster is now a pair


#
# Two stewards at once
#


def test_a_stale_merge_gets_a_clear_message_and_a_fresh_view(world, steward, steward2):
    p, c = world
    first, second = login(steward), login(steward2)
    url = f"/dedup/candidates/{c['c12'].pk}/compare/"
    form_first = _form(first.get(url).content.decode())
    second_page = second.get(f"/customers/{p['c2'].pk}/")
    assert second_page.status_code == 200
    # Meanwhile the second steward corrects the record the first one is looking at.
    customer_update(
        customer_id=p["c2"].pk,
        values={"full_name": "Will Smith"},
        expected_version=p["c2"].version,
        acting_user=steward2,
    )
    form_first.update({"decision": "merge", "choice-full_name": str(p["c2"].pk)})
    r = first.post(url, form_first)
    assert r.status_code == 409
    page = r.content.decode()
    assert "Someone changed one of these customers while you were comparing them" in page
    assert "Will Smith" in page and "William Smith" not in page  # the fresh view shows the current values
    assert Customer.objects.get(pk=p["c2"].pk).status == CustomerStatus.ACTIVE  # nothing merged
    # Merging again from the fresh view works, with the value the first steward now sees.
    fresh = _form(page)
    fresh.update({"decision": "merge", "choice-full_name": str(p["c2"].pk)})
    assert first.post(url, fresh).status_code == 302
    assert Customer.objects.get(pk=p["c1"].pk).full_name == "Will Smith"


def test_a_candidate_decided_by_someone_else_meanwhile_says_so(world, steward, steward2):
    p, c = world
    first, second = login(steward), login(steward2)
    url = f"/dedup/candidates/{c['a12'].pk}/compare/"
    form_first = _form(first.get(url).content.decode())
    form_second = _form(second.get(url).content.decode())
    assert second.post(url, {**form_second, "decision": "reject"}).status_code == 302
    r = first.post(url, {**form_first, "decision": "merge"})
    assert r.status_code == 409
    page = r.content.decode()
    assert "Someone else decided this meanwhile" in page and "tina_steward decided it" in page
    assert 'name="decision"' not in page  # nothing left to decide on this screen
    assert Customer.objects.get(pk=p["a2"].pk).status == CustomerStatus.ACTIVE


def test_overlapping_candidates_merged_by_two_stewards_never_lose_an_update(world, steward, steward2):
    """Two stewards act on pairs sharing a customer (a2): the second one's merge is refused
    rather than applied over a customer that was merged away under it."""
    p, c = world
    services.candidates_assign(candidate_ids=[c["a12"].pk], assignee=steward, acting_user=steward)
    form_a = _form(login(steward).get(f"/dedup/candidates/{c['a12'].pk}/compare/").content.decode())
    # The second steward merges a2 and a3 through the API (versions as they read them).
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(steward2)
    r = api.post(
        "/api/v1/merges/",
        {
            "customers": [p["a2"].pk, p["a3"].pk],
            "survivor": p["a3"].pk,
            "versions": {str(p["a2"].pk): 1, str(p["a3"].pk): 1},
        },
        format="json",
    )
    assert r.status_code == 201
    r = login(steward).post(f"/dedup/candidates/{c['a12'].pk}/compare/", {**form_a, "decision": "merge"})
    assert r.status_code == 409
    assert Customer.objects.get(pk=p["a1"].pk).status == CustomerStatus.ACTIVE
    assert Customer.objects.get(pk=p["a3"].pk).full_name == "張偉"


def test_the_vectorised_grouping_agrees_with_union_find():
    import random

    import numpy as np

    from dedup.clustering import components

    rng = random.Random(7)
    for _ in range(20):
        edges = [(rng.randrange(60), rng.randrange(60)) for _ in range(rng.randrange(1, 80))]
        edges = [(a, b) for a, b in edges if a != b] or [(1, 2)]
        left, right = np.array([e[0] for e in edges]), np.array([e[1] for e in edges])
        labels = selectors._components(left, right)
        groups: dict[int, set[int]] = {}
        for (a, b), label in zip(edges, labels.tolist(), strict=True):
            groups.setdefault(label, set()).update((a, b))
        assert sorted(sorted(g) for g in groups.values()) == sorted(components(edges))
