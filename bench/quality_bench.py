"""Data-quality metrics benchmark: every metric over N golden records on PostgreSQL.

    createdb -h 127.0.0.1 -U postgres crmhub_quality_bench   # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_quality_bench \
      /work/main/.venv/bin/python bench/quality_bench.py 1000000

Generates N customers and about 1.5·N source records over five sources set-based in SQL
(generate_series: no Python per row), with ~5 % shared mobiles, ~3 % flagged mobiles, a
quarter of customers with two or three source records (some disagreeing on the name), and
a few thousand pending match candidates. Then times ``quality_figures`` (every metric, no
writes) and ``quality_snapshot_take`` (the same plus replacing the day's snapshot), twice
each, and prints one JSON line. Target: all metrics over 1M customers in <= 60 s.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

TABLES = [
    "crmhub_qualitysnapshot",
    "dedup_matchcandidate",
    "crmhub_historicalsourcerecord",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_customer",
    "crmhub_source",
]


def _defaults(model, overrides: dict[str, str]) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """Column names and SQL expressions for every concrete column of ``model``."""
    from django.db import models

    columns, exprs = [], []
    for f in model._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(f.column)
        if f.column in overrides:
            exprs.append(overrides[f.column])
        elif f.null:
            exprs.append("NULL")
        elif isinstance(f, models.JSONField):
            exprs.append("'[]'::jsonb" if f.name == "tags" else "'{}'::jsonb")
        elif isinstance(f, models.DateTimeField):
            exprs.append("now()")
        elif isinstance(f, models.BooleanField):
            exprs.append("false")
        elif isinstance(f, (models.IntegerField, models.BigIntegerField, models.PositiveIntegerField)):
            exprs.append("1")
        else:
            exprs.append("''")
    return columns, exprs


def load(n: int) -> float:
    from crmhub.models import Customer, Source, SourceRecord

    started = time.monotonic()
    with connection.cursor() as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    sources = [Source.objects.create(code=f"s{i}", name=f"Source {i}") for i in range(5)]
    distinct_mobiles = int(n * 0.95)
    columns, exprs = _defaults(
        Customer,
        {
            "full_name": "'客户' || g",
            "family_name": "'张'",
            "mobile": f"'+86138' || lpad((g % {distinct_mobiles})::text, 8, '0')",
            "email": "CASE WHEN g % 3 = 0 THEN '' ELSE 'u' || g || '@example.com' END",
            "member_no": "CASE WHEN g % 2 = 0 THEN 'M' || g ELSE '' END",
            "city": "CASE WHEN g % 4 = 0 THEN '' ELSE '上海' END",
            "status": "'active'",
            "country": "'CN'",
            "gender": "CASE WHEN g % 2 = 0 THEN 'M' ELSE 'F' END",
        },
    )
    with connection.cursor() as c:
        c.execute(
            f"INSERT INTO crmhub_customer ({', '.join(columns)}) "  # noqa: S608
            f"SELECT {', '.join(exprs)} FROM generate_series(1, {n}) AS g"
        )
        # Every customer in one source; every 4th in a second, every 12th in a third (a different name).
        for i, (modulo, name_expr) in enumerate([(1, "'客户' || g"), (4, "'客户' || g"), (12, "'客戶' || g")]):
            source = sources[i]
            bad = "CASE WHEN g % 33 = 0 THEN '{\"mobile\": \"not a valid phone number\"}'::jsonb ELSE '{}'::jsonb END"
            cols, ex = _defaults(
                SourceRecord,
                {
                    "source_id": str(source.pk),
                    "source_key": "'K' || g",
                    "customer_id": "g",
                    "raw": "jsonb_build_object('姓名', '客户' || g)",
                    "normalized": (
                        f"jsonb_build_object('full_name', {name_expr}, 'mobile', "
                        "CASE WHEN g % 33 = 0 THEN '12345' "
                        f"ELSE '+86138' || lpad((g % {distinct_mobiles})::text, 8, '0') "
                        "END, 'email', 'u' || g || '@example.com', 'city', '上海')"
                    ),
                    "flags": bad,
                    "last_seen_at": f"now() - interval '{i + 1} hours'",
                },
            )
            c.execute(
                f"INSERT INTO crmhub_sourcerecord ({', '.join(cols)}) "  # noqa: S608
                f"SELECT {', '.join(ex)} FROM generate_series(1, {n}) AS g WHERE g % {modulo} = 0"
            )
        c.execute(
            "INSERT INTO dedup_matchcandidate (left_id, right_id, score, rule, explanation, reason, status, note, "
            "created_at) SELECT g, g + 1, 0.7, '', '[]'::jsonb, '', 'pending', '', now() "
            f"FROM generate_series(1, {min(n - 1, 5000)}) AS g"
        )
        c.execute("ANALYZE crmhub_customer; ANALYZE crmhub_sourcerecord")
    return time.monotonic() - started


def parts() -> dict[str, float]:
    """Seconds per statement family (one run each), to see where the time goes."""
    from django.utils import timezone

    from crmhub import quality
    from crmhub.models import FieldDefinition

    fields = list(FieldDefinition.objects.filter(is_active=True))
    now = timezone.now()
    out = {}
    for label, fn in [
        ("source_records_pass", lambda: quality._source_record_figures(fields, now)),
        ("golden_pass", lambda: quality._golden_figures(fields)),
        ("identity_keys", lambda: quality._identity_figures(fields)),
        ("source_identity_keys", lambda: quality._source_identity_figures(fields)),
        ("conflicts_pass", lambda: quality._conflict_figures(fields)),
    ]:
        started = time.monotonic()
        fn()
        out[label] = round(time.monotonic() - started, 2)
    return out


def main() -> None:
    """``quality_bench.py N [--no-load]``: --no-load re-times the data already loaded."""
    from crmhub.models import Customer, SourceRecord
    from crmhub.quality import quality_figures, quality_snapshot_take

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if connection.vendor != "postgresql":
        sys.exit("run this benchmark on PostgreSQL (DATABASE_URL=postgres://...)")
    call_command("migrate", verbosity=0)
    loaded = 0.0 if "--no-load" in sys.argv else load(n)
    n = Customer.objects.count()
    records = SourceRecord.objects.count()
    timings = {}
    for label, fn in [
        ("figures_1", quality_figures),
        ("figures_2", quality_figures),
        ("snapshot_1", quality_snapshot_take),
        ("snapshot_2", quality_snapshot_take),
    ]:
        started = time.monotonic()
        result = fn()
        timings[label] = round(time.monotonic() - started, 2)
        rows = len(result) if isinstance(result, list) else result
    print(
        json.dumps(
            {
                "customers": n,
                "source_records": records,
                "load_seconds": round(loaded, 1),
                "snapshot_rows": rows,
                **timings,
                "parts": parts(),
            }
        )
    )


if __name__ == "__main__":
    main()
