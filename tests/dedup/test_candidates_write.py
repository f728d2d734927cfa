"""A batch run's candidates written on two connections at once are the rows one connection writes:
the same ids, values and refreshed pairs, and a steward's decision still never overwritten."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import connection
from django.utils import timezone

from dedup import services
from dedup.choices import CandidateStatus
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source

# The second connection is PostgreSQL's path (SQLite writes through the ORM on one connection);
# CI's PostgreSQL pass runs this.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="candidates go over several connections on PostgreSQL only"
)

COLUMNS = [f.attname for f in MatchCandidate._meta.concrete_fields if f.attname != "created_at"]


def _existing(ids: list[int]) -> None:
    """A pair still open (refreshed by the write) and one a steward rejected (kept as it is)."""
    MatchCandidate.objects.create(left_id=ids[0], right_id=ids[1], score=0.1, status=CandidateStatus.PENDING)
    MatchCandidate.objects.create(left_id=ids[0], right_id=ids[2], score=0.2, status=CandidateStatus.REJECTED)


def _columns(ids: list[int]) -> tuple[dict, int]:
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 : i + 8]]
    now = timezone.make_aware(datetime(2026, 1, 2, 3, 4, 5))
    return {
        "left_id": [a for a, _b in pairs],
        "right_id": [b for _a, b in pairs],
        "score": [round(0.5 + (a * 7 + b) % 50 / 100, 3) for a, b in pairs],
        "rule": "default",
        "explanation": [f'[{{"comparison": "name", "level": "exact", "weight": {a % 9}.5}}]' for a, _b in pairs],
        "reason": "",
        "status": [CandidateStatus.PENDING if k % 3 else CandidateStatus.AUTO_MERGED for k in range(len(pairs))],
        "decided_at": [None if k % 3 else now for k in range(len(pairs))],
    }, len(pairs)


def _write(ids: list[int], *, connections: int, monkeypatch) -> list[tuple]:  # noqa: ANN001
    monkeypatch.setattr(services, "PARALLEL_CANDIDATES_ABOVE", 1 if connections > 1 else 10**9)
    monkeypatch.setattr(services, "CANDIDATE_CONNECTIONS", connections)
    columns, n = _columns(ids)
    services._candidates_upsert(columns, n)
    return list(MatchCandidate.objects.order_by("id").values_list(*COLUMNS))


@pytest.mark.django_db(transaction=True)
def test_it_writes_on_two_connections_exactly_what_one_writes(monkeypatch):
    # transaction=True: the second connection must see the customers (committed here).
    source = make_source()
    ids = sorted(add_person(source, f"k{i}", full_name=f"客户{i}").pk for i in range(40))
    _existing(ids)
    # The sequence is put back before the second write, so both give the same ids.
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('dedup_matchcandidate', 'id'))")
        start = cursor.fetchone()[0]
    one = _write(ids, connections=1, monkeypatch=monkeypatch)

    MatchCandidate.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('dedup_matchcandidate', 'id'), %s, false)", [start - 2])
    _existing(ids)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('dedup_matchcandidate', 'id'), %s)", [start])
    two = _write(ids, connections=2, monkeypatch=monkeypatch)

    assert len(one) == _columns(ids)[1]  # the two pairs already there among them
    assert two == one
    by_pair = {(row[COLUMNS.index("left_id")], row[COLUMNS.index("right_id")]): row for row in two}
    assert by_pair[(ids[0], ids[2])][COLUMNS.index("status")] == CandidateStatus.REJECTED
    assert by_pair[(ids[0], ids[2])][COLUMNS.index("score")] == 0.2
    assert by_pair[(ids[0], ids[1])][COLUMNS.index("score")] != 0.1  # still open: refreshed
