"""Review clusters kept on the candidates (dedup.clusters): joined by a new candidate, split by a
rejection, cut by a merge superseding candidates, written by batch runs, and a queue page whose
queries do not grow with the backlog."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dedup import selectors, services
from dedup.choices import CandidateStatus
from dedup.clusters import clusters_refresh
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source

pytestmark = pytest.mark.django_db


def _people(n: int) -> list:
    crm = make_source("crm")
    return [add_person(crm, f"K{i}", full_name=f"客户{i}", mobile=f"+86138{i:08d}") for i in range(n)]


def _pair(a, b, score: float = 0.9) -> MatchCandidate:  # noqa: ANN001
    """A pending candidate written as the writers do: the row, then its customers' clusters."""
    left, right = sorted([a.pk, b.pk])
    candidate = MatchCandidate.objects.create(left_id=left, right_id=right, score=score, rule="default")
    clusters_refresh([left, right])
    candidate.refresh_from_db()
    return candidate


def _queue(user) -> list[list[int]]:  # noqa: ANN001
    return [item.candidate_ids for item in selectors.review_items(user=user, filters=selectors.ReviewFilters())]


def _stored(*candidates: MatchCandidate) -> list[tuple]:
    return [MatchCandidate.objects.values_list("cluster", "cluster_score").get(pk=c.pk) for c in candidates]


def test_a_new_candidate_joins_two_clusters_into_one(steward):
    a, b, c, d = _people(4)
    ab, cd = _pair(a, b, 0.85), _pair(c, d, 0.95)
    assert _stored(ab, cd) == [(ab.pk, 0.85), (cd.pk, 0.95)]
    assert _queue(steward) == [[cd.pk], [ab.pk]]
    bc = _pair(b, c, 0.81)
    # One cluster: the smallest candidate id is its key, the best score its score.
    assert _stored(ab, cd, bc) == [(ab.pk, 0.95)] * 3
    assert _queue(steward) == [[ab.pk, cd.pk, bc.pk]]
    (item,) = selectors.review_items(user=steward, filters=selectors.ReviewFilters())
    assert item.customer_ids == sorted([a.pk, b.pk, c.pk, d.pk]) and item.score == 0.95


def test_rejecting_the_pair_that_held_a_cluster_together_splits_it(steward):
    a, b, c, d = _people(4)
    ab, bc, cd = _pair(a, b, 0.9), _pair(b, c, 0.82), _pair(c, d, 0.97)
    assert _queue(steward) == [[ab.pk, bc.pk, cd.pk]]
    services.candidate_reject(candidate=bc, acting_user=steward)
    assert _stored(ab, cd) == [(ab.pk, 0.9), (cd.pk, 0.97)]
    assert _queue(steward) == [[cd.pk], [ab.pk]]
    # The compare screen of one half shows that half only.
    assert selectors.cluster_of(user=steward, candidate=MatchCandidate.objects.get(pk=cd.pk)).candidate_ids == [cd.pk]


def test_a_merge_superseding_candidates_leaves_the_rest_as_its_own_clusters(steward):
    a, b, c, d, e = _people(5)
    ab, bc, cd, ce = _pair(a, b, 0.99), _pair(b, c, 0.9), _pair(c, d, 0.88), _pair(c, e, 0.86)
    assert _queue(steward) == [[ab.pk, bc.pk, cd.pk, ce.pk]]
    # Merging b and c supersedes every other pending pair of the merged-away customer c;
    # what is left (a~b) is a cluster of its own, and d, e have no pending pair any more.
    services.candidate_approve(candidate=bc, acting_user=steward, survivor=b.pk)
    statuses = dict(MatchCandidate.objects.values_list("pk", "status"))
    assert statuses[bc.pk] == CandidateStatus.APPROVED
    assert statuses[cd.pk] == statuses[ce.pk] == CandidateStatus.SUPERSEDED
    assert _queue(steward) == [[ab.pk]]
    assert _stored(ab) == [(ab.pk, 0.99)]
    # A new pair with the survivor joins a~b's cluster again.
    bd = _pair(b, d, 0.8)
    assert _queue(steward) == [[ab.pk, bd.pk]]


def test_a_cluster_approved_whole_leaves_the_queue_and_its_neighbours_keep_theirs(steward):
    a, b, c, x, y = _people(5)
    ab, bc, xy = _pair(a, b), _pair(b, c), _pair(x, y, 0.7)
    services.cluster_approve(candidate_ids=[ab.pk, bc.pk], acting_user=steward)
    assert _queue(steward) == [[xy.pk]]
    assert _stored(xy) == [(xy.pk, 0.7)]


def test_a_candidate_written_without_its_cluster_still_shows(steward):
    a, b = _people(2)
    stray = MatchCandidate.objects.create(left_id=a.pk, right_id=b.pk, score=0.9)  # e.g. from the admin
    assert stray.cluster is None
    assert _queue(steward) == [[stray.pk]]
    assert _stored(stray) == [(stray.pk, 0.9)]


def test_batch_runs_leave_every_pending_candidate_in_its_cluster(people, steward):
    run = services.dedup_run_create()
    services.dedup_run_execute_inline(run=run)
    pending = list(MatchCandidate.objects.filter(status=CandidateStatus.PENDING))
    assert pending
    for candidate in pending:
        assert candidate.cluster is not None and candidate.cluster_score is not None
    assert sorted(pk for item in _queue(steward) for pk in item) == sorted(c.pk for c in pending)


def test_the_queue_page_costs_the_same_queries_however_long_the_backlog(steward):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(steward)
    people = _people(80)
    for i in range(0, 6, 2):
        _pair(people[i], people[i + 1])
    client.get("/dedup/review/")  # sessions, roles: cached after the first view
    with CaptureQueriesContext(connection) as small:
        assert client.get("/dedup/review/").status_code == 200
    for i in range(6, 80, 2):
        _pair(people[i], people[i + 1])
    with CaptureQueriesContext(connection) as large:
        body = client.get("/dedup/review/").content.decode()
    assert body.count('class="candidate item') == 20 and "40 items wait" in body
    assert len(large.captured_queries) == len(small.captured_queries)
    # Every read of the candidates is bounded: a LIMIT, or the page's clusters or ids.
    for q in large.captured_queries:
        sql = q["sql"]
        if 'FROM "dedup_matchcandidate"' in sql:
            assert "LIMIT" in sql.upper() or '"cluster" IN' in sql or '"id" IN' in sql, sql


def test_a_refresh_around_many_customers_gives_the_same_clusters_as_probing_around_them(steward, monkeypatch):
    """Past REBUILD_ABOVE customers (a batch run) the refresh reads every pending candidate once
    instead of probing around each customer: the stored clusters must come out the same."""
    from dedup import clusters

    people = _people(8)
    a, b, c, d, e, f, g, h = people
    pairs = [_pair(a, b, 0.9), _pair(b, c, 0.82), _pair(d, e, 0.97), _pair(g, h, 0.85)]
    # Rows written behind the refresh's back (as a batch writer does before refreshing).
    left, right = sorted([c.pk, d.pk])
    pairs.append(MatchCandidate.objects.create(left_id=left, right_id=right, score=0.81, rule="default"))
    MatchCandidate.objects.filter(pk=pairs[3].pk).update(cluster=None)
    snapshot = list(MatchCandidate.objects.values_list("pk", "cluster", "cluster_score", "cluster_created"))

    clusters_refresh([p.pk for p in people])  # few customers: probes
    probed = sorted(MatchCandidate.objects.values_list("pk", "cluster", "cluster_score", "cluster_created"))
    for pk, cluster, score, created in snapshot:
        MatchCandidate.objects.filter(pk=pk).update(cluster=cluster, cluster_score=score, cluster_created=created)
    monkeypatch.setattr(clusters, "REBUILD_ABOVE", 2)
    clusters_refresh([p.pk for p in people])  # "many" customers: one read of all pending
    rebuilt = sorted(MatchCandidate.objects.values_list("pk", "cluster", "cluster_score", "cluster_created"))
    assert rebuilt == probed
    assert {row[1] for row in rebuilt} == {pairs[0].pk, pairs[3].pk}  # a-b-c-d-e joined by c~d; g-h
