"""Access-control benchmark: what masking, exports and key rotation cost per row.

    createdb -h 127.0.0.1 -U postgres crmhub_acc_bench   # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_acc_bench \
      /work/main/.venv/bin/python bench/accounts_bench.py 100000

Loads N customers (every one with an encrypted ID number) and one sealed source record
each, then measures, each from the same data:
- present_customer for a support user (all fields, most masked), rows/s;
- a streamed CSV export for a steward and a support user, rows/s;
- an XLSX export of up to 20k rows (the size the approval threshold keeps direct exports to);
- rotate_field_keys after putting a new key first, rows/s, and a second (idempotent) run.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402

TABLES = [
    "crmhub_historicalsourcerecord",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_customer",
    "crmhub_source",
]


def reset() -> None:
    with connection.cursor() as c:
        if connection.vendor == "postgresql":
            c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        else:
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")  # noqa: S608


def load(n: int) -> float:
    from accounts.crypto import seal_values
    from crmhub.models import Customer, Source, SourceRecord

    started = time.monotonic()
    source = Source.objects.create(code="bench", name="bench")
    batch = 5000
    for start in range(0, n, batch):
        customers = [
            Customer(
                full_name=f"张{i % 977}伟",
                mobile=f"+86138{i:08d}",
                email=f"user{i}@example.com",
                id_number=f"110105{19490000 + i % 9999:08d}{i % 1000:03d}X"[:18],
                member_no=f"M{i:08d}",
                company='=HYPERLINK("x")' if i % 100 == 0 else "Acme",
                city="北京",
                district="朝阳区",
                address="北京市朝阳区建国路88号",
                tags=["vip"],
                consent_sms=True,
                id_number_hash=f"h{i}",
            )
            for i in range(start, min(start + batch, n))
        ]
        Customer.objects.bulk_create(customers)
        SourceRecord.objects.bulk_create(
            [
                SourceRecord(
                    source=source,
                    source_key=f"K{c.pk}",
                    customer=c,
                    normalized=seal_values({"id_number": c.id_number, "mobile": c.mobile}, {"id_number"}),
                )
                for c in customers
            ]
        )
    return time.monotonic() - started


def user(name: str, role: str):  # noqa: ANN201
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    u, _ = get_user_model().objects.get_or_create(username=f"bench_{name}")
    u.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=u.pk)


def measure(label: str, n: int, fn) -> None:  # noqa: ANN001
    started = time.monotonic()
    fn()
    seconds = time.monotonic() - started
    print(f"| {label} | {n} | {seconds:.2f} | {n / seconds:,.0f} |")


def main() -> None:
    from accounts.exports import stream_csv, write_xlsx_bytes
    from accounts.policy import present_customer
    from accounts.roles import roles_sync
    from crmhub.models import Customer
    from crmhub.services import field_definitions_sync

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    call_command("migrate", verbosity=0)
    field_definitions_sync()
    roles_sync()
    key = os.environ.get("FIELD_ENCRYPTION_KEY") or "bench-key-old"
    with override_settings(FIELD_ENCRYPTION_KEY=key):
        reset()
        loaded = load(n)
        print(f"database: {connection.vendor}; loaded {n} customers + {n} sealed source records in {loaded:.1f} s")
        print("| step | rows | seconds | rows/s |\n|---|---|---|---|")
        support, steward = user("support", "support"), user("steward", "steward")

        def present_all() -> None:
            for c in Customer.objects.all().iterator(chunk_size=2000):
                present_customer(support, c)

        measure("present_customer (support: masked)", n, present_all)
        for who in (steward, support):
            measure(
                f"CSV export, streamed ({who.username})",
                n,
                lambda who=who: sum(len(chunk) for chunk in stream_csv(user=who, qs=Customer.objects.order_by("id"))),
            )
        x = min(n, 20_000)
        measure(
            "XLSX export (steward)", x, lambda: write_xlsx_bytes(user=steward, qs=Customer.objects.order_by("id")[:x])
        )
    with override_settings(FIELD_ENCRYPTION_KEY=f"bench-key-new,{key}"):
        measure(
            "rotate_field_keys (customers + records + history)",
            n,
            lambda: call_command("rotate_field_keys", "--batch-size", "2000", stdout=open(os.devnull, "w")),
        )
        measure(
            "rotate_field_keys again (idempotent, nothing to do)",
            n,
            lambda: call_command("rotate_field_keys", "--batch-size", "2000", stdout=open(os.devnull, "w")),
        )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
