"""Review queue benchmark: what the queue page, its grouping into clusters and the navigation
count cost with a large backlog of pending candidates.

    createdb -h 127.0.0.1 -U postgres crmhub_queue_bench   # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_queue_bench \
      /work/main/.venv/bin/python bench/review_queue_bench.py 100000 [--reuse]

Loads N pending candidates over about 1.9 N customers (nine pairs in ten; every tenth item a
cluster of three records linked by two pairs), one source record per customer in two sources,
then measures (each 20 times, p50/p95 in ms):
- the navigation count (``pending_count``);
- ``review_items`` unfiltered and filtered by source (the first page's 20 items);
- the queue page (``GET /dedup/review/``, 20 items rendered: unfiltered, by score band, by source,
  by age on page 50) and the compare screen of a cluster and of a pair, through Django's test
  client (no network, no server).
The loader writes candidates in bulk and then computes their clusters (``clusters_rebuild``, as
the writers' refresh would have), then VACUUM ANALYZE.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402


def timed(func, runs: int = 20) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def load(n: int) -> None:
    from crmhub.models import Customer, Source, SourceRecord
    from dedup.models import MatchCandidate

    with connection.cursor() as c:
        c.execute(
            "TRUNCATE dedup_matchcandidate, crmhub_historicalsourcerecord, crmhub_sourcerecord, "
            "crmhub_historicalcustomer, crmhub_customer, crmhub_source RESTART IDENTITY CASCADE"
        )
    sources = [Source.objects.create(code=code, name=code) for code in ("crm", "shop")]
    pairs = []
    next_id = 1
    item = 0
    while len(pairs) < n:
        if item % 10 == 9 and len(pairs) + 2 <= n:
            a, b, c_ = next_id, next_id + 1, next_id + 2
            pairs += [(a, b), (b, c_)]
            next_id += 3
        else:
            pairs.append((next_id, next_id + 1))
            next_id += 2
        item += 1
    customers = [
        Customer(id=i, full_name=f"客户{i}", mobile=f"+86138{i:08d}", email=f"c{i}@example.com", name_pinyin=f"kehu{i}")
        for i in range(1, next_id)
    ]
    Customer.objects.bulk_create(customers, batch_size=5000)
    with connection.cursor() as c:
        c.execute("SELECT setval(pg_get_serial_sequence('crmhub_customer', 'id'), %s)", [next_id])
    SourceRecord.objects.bulk_create(
        [
            SourceRecord(source=sources[i % 2], source_key=f"K{i}", customer_id=i, normalized={})
            for i in range(1, next_id)
        ],
        batch_size=5000,
    )
    MatchCandidate.objects.bulk_create(
        [
            MatchCandidate(left_id=a, right_id=b, score=0.8 + (i % 200) / 1000, rule="default", explanation=[])
            for i, (a, b) in enumerate(pairs)
        ],
        batch_size=5000,
    )
    from dedup.clusters import clusters_rebuild

    started = time.perf_counter()
    clusters_rebuild()  # what the candidate writers' refresh leaves behind
    print(f"clusters computed in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as c:
        # The rebuild rewrote every row once; autovacuum would tidy that up in production.
        c.execute("VACUUM ANALYZE dedup_matchcandidate")
        c.execute("ANALYZE")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    call_command("migrate", verbosity=0)
    from dedup.models import MatchCandidate

    if "--reuse" in sys.argv and MatchCandidate.objects.filter(status="pending").count() == n:
        print(f"reusing {n} pending candidates")
    else:
        started = time.perf_counter()
        load(n)
        print(f"loaded {n} pending candidates in {time.perf_counter() - started:.1f} s")

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts.roles import roles_sync
    from dedup import selectors

    roles_sync()
    user, _ = get_user_model().objects.get_or_create(username="bench_steward")
    user.groups.add(Group.objects.get(name="steward"))
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    cluster = MatchCandidate.objects.order_by("pk")[9]
    pair = MatchCandidate.objects.order_by("pk")[0]

    def items(**params):  # noqa: ANN003, ANN202
        fresh = get_user_model().objects.get(pk=user.pk)
        return lambda: selectors.review_items(user=fresh, filters=selectors.ReviewFilters.from_params(params))[:20]

    counted = len(selectors.review_items(user=user, filters=selectors.ReviewFilters()))
    print(f"items: {counted} (counted up to {selectors.QUEUE_COUNT_LIMIT + 1})")
    rows = [
        ("pending_count", selectors.pending_count),
        ("review_items (all)", items()),
        ("review_items (source=shop)", items(source="shop")),
        ("GET /dedup/review/", lambda: client.get("/dedup/review/")),
        ("GET /dedup/review/?band=high", lambda: client.get("/dedup/review/", {"band": "high"})),
        ("GET /dedup/review/?source=shop", lambda: client.get("/dedup/review/", {"source": "shop"})),
        ("GET /dedup/review/?sort=age&page=50", lambda: client.get("/dedup/review/", {"sort": "age", "page": 50})),
        ("GET compare (pair)", lambda: client.get(f"/dedup/candidates/{pair.pk}/compare/")),
        ("GET compare (cluster of 3)", lambda: client.get(f"/dedup/candidates/{cluster.pk}/compare/")),
    ]
    with override_settings(DEBUG=False):
        for name, func in rows:
            p50, p95 = timed(func)
            print(f"{name:34s} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms")


if __name__ == "__main__":
    main()
