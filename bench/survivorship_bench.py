"""Golden-record recompute benchmark on PostgreSQL (issue 6 item 3): what recomputing costs a
re-import that updates 100k linked source records, through the real import path.

    python bench/import_generate.py /tmp/survive_100k.csv --rows 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_survive_bench \
      CELERY_BROKER_URL=redis://127.0.0.1:6379/12 \
      /work/main/.venv/bin/python bench/survivorship_bench.py /tmp/survive_100k.csv

Steps, from empty tables:
1. import the file (N new records, one golden record each);
2. re-import it with every address changed: N records updated, so N golden records are
   recomputed and written (set-based), reported from the run's log;
3. recompute the same N customers again with nothing to change (the cost of a run whose
   updates do not change the golden values);
4. link a second source's copy of every record to the same customers (SQL), so every customer
   has two records and the rules really choose (strategy, tie-break), and recompute all N;
5. merge 5,000 pairs of those customers with ``customers_merge_many`` (the batch run's path),
   which proposes every survivor's values under the rules from four records.
"""

from __future__ import annotations

import csv
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

TABLES = [
    "imports_importrunissue",
    "imports_importrunchange",
    "imports_importrun",
    "dedup_fieldoverride",
    "dedup_matchcandidate",
    "dedup_merge",
    "dedup_deduprunpart",
    "dedup_deduprun",
    "crmhub_changeevent",
    "crmhub_historicalsourcerecord",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_interaction",
    "crmhub_customer",
]


def reset() -> None:
    with connection.cursor() as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


def run_import(path: str) -> tuple[float, object]:
    from crmhub.services import source_get_or_create
    from imports.services import file_run_from_path, import_run_execute, mapping_suggest

    source, _ = source_get_or_create(code="bench")
    started = time.perf_counter()
    run = file_run_from_path(
        path=path, source=source, plan_for=lambda layout: mapping_suggest(headers=layout.headers), enqueue=False
    )
    run = import_run_execute(run_id=run.pk)
    return time.perf_counter() - started, run


def changed_copy(path: str) -> str:
    out = path.replace(".csv", "_moved.csv")
    with open(path, encoding="utf-8", newline="") as src, open(out, "w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            row[7] = row[7].replace("号", "号2楼") if row[7] else "新地址1号"  # every address changes
            writer.writerow(row)
    return out


def main() -> None:
    from crmhub.choices import ChangeChannel
    from crmhub.context import change_context
    from crmhub.models import Customer
    from dedup.survivorship import golden_record_recompute

    path = sys.argv[1]
    call_command("migrate", verbosity=0)
    reset()
    seconds, run = run_import(path)
    print(f"1. first import: {run.created} created in {seconds:.1f} s")

    moved = changed_copy(path)
    seconds, run = run_import(moved)
    entry = next(e for e in run.log if e.get("golden_records"))
    print(
        f"2. re-import: {run.updated} updated, {entry['customers']} customers recomputed, {entry['changed']} changed; "
        f"run {seconds:.1f} s of which recompute {entry['seconds']:.1f} s ({entry['seconds'] / seconds:.0%})"
    )

    ids = list(Customer.objects.values_list("pk", flat=True))
    started = time.perf_counter()
    with change_context(channel=ChangeChannel.COMMAND, ref="bench"):
        outcome = golden_record_recompute(ids)
    print(f"3. recompute, nothing to change: {outcome} in {time.perf_counter() - started:.1f} s")

    with connection.cursor() as c:
        c.execute(
            "INSERT INTO crmhub_source (code, name, kind, trust_rank, description, is_active, created_at, updated_at) "
            "VALUES ('bench2', 'bench2', 'file', 80, '', true, now(), now()) ON CONFLICT (code) DO NOTHING"
        )
        # A second, more trusted source: same values, a longer address, a later update.
        c.execute(
            """
            INSERT INTO crmhub_sourcerecord (source_id, source_key, customer_id, raw, normalized, flags, record_hash,
              first_seen_at, last_seen_at, source_updated_at, updated_at)
            SELECT (SELECT id FROM crmhub_source WHERE code = 'bench2'), r.source_key, r.customer_id, '{}',
              r.normalized || jsonb_build_object('address', (r.normalized->>'address') || '东侧'), '{}', '',
              now(), now(), now(), now()
            FROM crmhub_sourcerecord r"""
        )
    started = time.perf_counter()
    with change_context(channel=ChangeChannel.COMMAND, ref="bench"):
        outcome = golden_record_recompute(ids)
    print(f"4. recompute, two records each (rules choose): {outcome} in {time.perf_counter() - started:.1f} s")
    pairs = [[ids[i], ids[i + 1]] for i in range(0, min(len(ids) - 1, 10_000), 2)]
    from dedup.services import customers_merge_many

    started = time.perf_counter()
    with change_context(channel=ChangeChannel.MERGE, ref="bench"):
        merged = customers_merge_many(clusters=pairs)
    print(f"5. batch merge under the rules: {len(merged)} pairs in {time.perf_counter() - started:.1f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()
