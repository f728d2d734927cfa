"""Speed of duplicate detection: end-to-end batch time and peak memory, and the latency of
real-time matching of one arriving record.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_dedup_bench \
        python bench/dedup_speed.py --records 100000 --generate

``--generate`` writes a fresh labelled data set first (bench/dedup_generate.py). The batch run is
``dedup_run --inline --processes N`` in this process (its peak RSS is this process's; the merge
parts go to ``N`` forked processes, default this machine's cores, whose CPU, PostgreSQL CPU and
peak RSS the run's statistics give); with ``--worker`` it is queued to the running Celery workers
instead and the wall time and the CPU the run's steps recorded are reported. Afterwards
``--arrivals`` new records (half near-copies of existing people, half strangers) are created as an
import creates them and matched one at a time with ``records_match``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
# Measured as deployed: without DEBUG (which keeps every query's SQL text in memory).
os.environ.setdefault("DEBUG", "false")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--generate", action="store_true")
    parser.add_argument("--worker", action="store_true", help="run the batch on the Celery workers")
    parser.add_argument("--arrivals", type=int, default=300)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="inline: processes merging the clusters (default: this machine's cores)",
    )
    args = parser.parse_args()
    out: dict = {"records": args.records}
    if args.generate:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "dedup_generate.py"), "--records", str(args.records), "--reset"],
            check=True,
        )
        out["generate_seconds"] = round(time.monotonic() - started, 1)

    import django

    django.setup()
    from django.core.management import call_command

    from bench.pg_settings import server_settings

    out["server"] = server_settings()

    from dedup.models import DedupRun
    from dedup.services import db_backend_cpu_seconds

    if not args.skip_batch:
        db_cpu_before = db_backend_cpu_seconds()
        started = time.monotonic()
        buf = io.StringIO()
        inline = ["--inline", "--processes", str(args.processes)]
        call_command("dedup_run", *([] if args.worker else inline), stdout=buf)
        wall = time.monotonic() - started
        summary = json.loads(buf.getvalue().strip().splitlines()[-1])
        run = DedupRun.objects.get(pk=summary["run"])
        out.update(
            {
                "batch_wall_seconds": round(wall, 1),
                "run": summary,
                "pairs": run.pairs,
                "phases": {
                    k: run.stats.get(k)
                    for k in (
                        "prepare_seconds",
                        "blocking_seconds",
                        "score_seconds",
                        "cluster_seconds",
                        "merge_seconds",
                        "candidates_seconds",
                        "candidates_other_db_cpu_seconds",
                        "finish_seconds",
                        "prepare_cpu_seconds",
                        "score_processes",
                        "score_child_cpu_seconds",
                        "merge_cpu_seconds",
                        "finish_cpu_seconds",
                        "merge_processes",
                        "merge_child_cpu_seconds",
                        "merge_child_db_cpu_seconds",
                        "merge_child_peak_rss_mb",
                    )
                },
                "cpu_seconds_this_process": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
                # PostgreSQL runs on the same machine: its backend's CPU is part of the cost too.
                "cpu_seconds_db_backend": _round(db_backend_cpu_seconds(), db_cpu_before),
                # Processes comparing the pairs (inline, --processes > 1).
                "cpu_seconds_score_children": run.stats.get("score_child_cpu_seconds", 0.0),
                # Merging processes (--processes > 1) and their backends.
                "cpu_seconds_merge_children": run.stats.get("merge_child_cpu_seconds", 0.0),
                "cpu_seconds_merge_children_db": run.stats.get("merge_child_db_cpu_seconds", 0.0),
                # The second connection writing the candidates (its backend).
                "cpu_seconds_candidates_other_db": run.stats.get("candidates_other_db_cpu_seconds", 0.0),
                "largest_component": run.stats.get("largest_component"),
                "blocking": {k: run.stats["blocking"][k] for k in ("largest_block", "sub_blocked", "skipped_records")},
            }
        )
        if not args.worker:
            out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.arrivals:
        out["realtime"] = realtime(args.arrivals)
    out["load_average"] = os.getloadavg()
    print(json.dumps(out))


def _round(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(after - before, 1)


def realtime(n: int) -> dict:
    import numpy as np

    from crmhub.models import Customer, Source, SourceRecord
    from dedup import services
    from dedup.names import pinyin

    rng = np.random.default_rng(5)
    source, _ = Source.objects.get_or_create(code="bench-rt", defaults={"name": "Real-time arrivals"})
    ids = list(Customer.objects.active().order_by("?").values_list("pk", flat=True)[: n // 2])
    base = {c.pk: c for c in Customer.objects.filter(pk__in=ids)}
    arrivals = []
    for k in range(n):
        if k % 2 == 0 and base:
            c = base[ids[(k // 2) % len(ids)]]
            values = {
                "full_name": c.full_name,
                "mobile": c.mobile,
                "birth_date": c.birth_date,
                "email": c.email,
                "gender": c.gender,
                "city": c.city,
            }
            if rng.random() < 0.5:
                values["email"] = ""
        else:
            values = {"full_name": f"新客{k}", "mobile": f"+86166{rng.integers(0, 10**8):08d}", "gender": "F"}
        values["name_pinyin"] = pinyin(values["full_name"])
        customer = Customer.objects.create(**values)
        record = SourceRecord.objects.create(source=source, source_key=f"RT{time.time_ns()}-{k}", customer=customer)
        arrivals.append(record.pk)
    timings = []
    outcomes: dict[str, int] = {}
    for pk in arrivals:
        started = time.perf_counter()
        result = services.records_match(source_record_ids=[pk])
        timings.append((time.perf_counter() - started) * 1000)
        action = result["results"][0]["action"] if result["results"] else "none"
        outcomes[action] = outcomes.get(action, 0) + 1
    t = np.array(timings)
    return {
        "arrivals": n,
        "p50_ms": round(float(np.percentile(t, 50)), 1),
        "p95_ms": round(float(np.percentile(t, 95)), 1),
        "max_ms": round(float(t.max()), 1),
        "outcomes": outcomes,
    }


if __name__ == "__main__":
    main()
