"""Latency of real-time matching (``dedup.services.records_match``, one arriving record per
call) against a database that already holds the customers, without a batch run.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_dedup_rt_bench CRMHUB_VAR_DIR=/tmp/var_rt
    python manage.py migrate
    python bench/dedup_generate.py --records 1000000 --reset      # once: the existing customers
    nice -n 5 python bench/dedup_realtime.py --arrivals 300 --seed 1

``--arrivals`` new records are created as an import creates them (a golden record and a source
record each, source ``bench-rt``) and then matched one at a time. Half are near-copies of existing
customers (same name, mobile, birth date, gender and city; the e-mail dropped half of the time, as
``bench/dedup_speed.py`` makes them), half are strangers: new people drawn by the generator's
``make_people`` (common names, birth dates, cities, some with an ID number), so their look-ups find
namesakes to score. Each run changes the database a little (the near-copies merge), so use another
``--seed`` for each run; the copies' originals and the strangers follow from it.

Printed as JSON: p50/p95/max wall time overall, per outcome and per kind of arrival; statements per
call (counted with ``connection.execute_wrapper``: every statement sent through Django's cursors —
a COPY is not seen, so the old merge path's COPY of its merge row adds one to what it shows); CPU
of this process and of its PostgreSQL backend (the server runs on the same machine): in total over
the timed calls (/proc/PID/stat), and per call (/proc/PID/schedstat, nanoseconds) as ``cpu_ms_p50``
/ ``cpu_ms_p95`` of their sum, which is what a call costs whatever the load apart from waiting for
the commit's fsync; and the load average before and after. ``--profile PATH`` writes a pyinstrument
call tree of the timed calls to PATH (pyinstrument is a dev tool, not a requirement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
# Measured as deployed: without DEBUG (which keeps every query's SQL text in memory).
os.environ.setdefault("DEBUG", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrivals", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1, help="use another one for each run on the same database")
    parser.add_argument("--profile", help="write a pyinstrument call tree of the timed calls to this file")
    args = parser.parse_args()

    import django

    django.setup()
    from crmhub.models import Customer

    load_before = os.getloadavg()
    arrivals = make_arrivals(args.arrivals, args.seed)
    out: dict = {
        "existing_active_customers": Customer.objects.active().count(),
        "arrivals": args.arrivals,
        "seed": args.seed,
        **time_calls(arrivals, profile=args.profile),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))


def make_arrivals(n: int, seed: int) -> list[tuple[str, int]]:
    """(kind, source record id) of ``n`` new records, created as an import creates them."""
    import numpy as np
    from dedup_generate import make_people

    from crmhub.models import Customer, Source, SourceRecord
    from dedup.names import pinyin

    rng = np.random.default_rng(seed)
    source, _ = Source.objects.get_or_create(code="bench-rt", defaults={"name": "Real-time arrivals"})
    # Originals of the near-copies: active customers at random ids (an indexed probe per id).
    low = Customer.objects.order_by("id").values_list("id", flat=True).first() or 0
    high = Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0
    copies = n // 2
    originals: list[Customer] = []
    while high and len(originals) < copies:
        tried = rng.integers(low, high + 1, size=copies * 2).tolist()
        found = {c.pk: c for c in Customer.objects.active().filter(pk__in=tried).exclude(full_name="")}
        seen = {c.pk for c in originals}
        originals += [found[i] for i in tried if i in found and i not in seen][: copies - len(originals)]
    strangers = make_people(n - len(originals), np.random.default_rng(10_000 + seed))
    run_tag = f"{seed}-{time.time_ns()}"
    values_list: list[tuple[str, dict]] = []
    for k in range(n):
        if k % 2 == 0 and k // 2 < len(originals):
            c = originals[k // 2]
            values = {
                "full_name": c.full_name,
                "mobile": c.mobile,
                "birth_date": c.birth_date,
                "email": c.email if rng.random() >= 0.5 else "",
                "gender": c.gender,
                "city": c.city,
            }
            values_list.append(("copy", values))
        else:
            p = strangers.pop()
            full = f"{p.given} {p.family}" if p.western else p.family + p.given
            values = {
                "full_name": full,
                "gender": p.gender,
                "birth_date": p.birth,
                "mobile": "+86" + p.mobile,
                "email": p.email,
                "id_number": p.id_number,
                "city": p.city,
                "postcode": p.postcode,
                "address": p.address,
            }
            values_list.append(("stranger", values))
    arrivals = []
    for k, (kind, values) in enumerate(values_list):
        customer = Customer.objects.create(**values, name_pinyin=pinyin(values["full_name"]))
        record = SourceRecord.objects.create(source=source, source_key=f"RT{run_tag}-{k}", customer=customer)
        arrivals.append((kind, record.pk))
    return arrivals


def time_calls(arrivals: list[tuple[str, int]], *, profile: str | None) -> dict:
    import numpy as np
    from django.db import connection

    from dedup import services

    statements = [0]

    def count(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        statements[0] += 1
        return execute(sql, params, many, context)

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    services.records_match(source_record_ids=[])  # connection and per-process caches, as a serving process has them
    rows = []
    db_cpu_before = services.db_backend_cpu_seconds()
    backend_ns = _db_backend_ns()
    cpu_before = time.process_time()
    with connection.execute_wrapper(count):
        if profiler:
            profiler.start()
        for kind, pk in arrivals:
            statements[0] = 0
            cpu_started, db_started = time.process_time_ns(), backend_ns()
            started = time.perf_counter()
            result = services.records_match(source_record_ids=[pk])
            wall = (time.perf_counter() - started) * 1000
            cpu = (time.process_time_ns() - cpu_started) / 1e6
            db = (backend_ns() - db_started) / 1e6
            action = result["results"][0]["action"] if result["results"] else "none"
            rows.append((kind, action, wall, statements[0], cpu, db))
        if profiler:
            profiler.stop()
    cpu = time.process_time() - cpu_before
    db_cpu = services.db_backend_cpu_seconds()
    if profiler:
        Path(profile).write_text(profiler.output_text(unicode=True, color=False, show_all=False))

    def stats(selected: list[tuple]) -> dict:
        if not selected:
            return {"calls": 0}
        t = np.array([r[2] for r in selected])
        q = np.array([r[3] for r in selected])
        cpu = np.array([r[4] + r[5] for r in selected])
        return {
            "calls": len(selected),
            "p50_ms": round(float(np.percentile(t, 50)), 1),
            "p95_ms": round(float(np.percentile(t, 95)), 1),
            "max_ms": round(float(t.max()), 1),
            "statements_median": int(np.median(q)),
            "statements_max": int(q.max()),
            # CPU of this process plus its PostgreSQL backend per call: what the call costs
            # whatever the machine's load (the wall time adds waiting for a core and for fsync).
            "cpu_ms_p50": round(float(np.percentile(cpu, 50)), 1),
            "cpu_ms_p95": round(float(np.percentile(cpu, 95)), 1),
            "cpu_ms_mean_process": round(float(np.mean([r[4] for r in selected])), 2),
            "cpu_ms_mean_db_backend": round(float(np.mean([r[5] for r in selected])), 2),
        }

    outcomes: dict[str, int] = {}
    for _kind, action, *_rest in rows:
        outcomes[action] = outcomes.get(action, 0) + 1
    return {
        "all": stats(rows),
        "by_outcome": {a: stats([r for r in rows if r[1] == a]) for a in sorted(outcomes)},
        "by_kind": {k: stats([r for r in rows if r[0] == k]) for k in ("copy", "stranger")},
        "outcomes": outcomes,
        "cpu_seconds_this_process": round(cpu, 2),
        "cpu_ms_per_call_this_process": round(cpu * 1000 / max(len(rows), 1), 2),
        "cpu_seconds_db_backend": None if db_cpu is None else round(db_cpu - db_cpu_before, 2),
        "cpu_ms_per_call_db_backend": None if db_cpu is None else round((db_cpu - db_cpu_before) * 1000 / len(rows), 2),
    }


def _db_backend_ns():  # noqa: ANN202
    """A function giving the CPU nanoseconds of this connection's PostgreSQL backend so far
    (/proc/PID/schedstat, nanosecond resolution), or 0 when it cannot be read."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return lambda: 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        path = Path(f"/proc/{cursor.fetchone()[0]}/schedstat")

    def read() -> int:
        try:
            return int(path.read_text().split()[0])
        except OSError:
            return 0

    return read


if __name__ == "__main__":
    main()
