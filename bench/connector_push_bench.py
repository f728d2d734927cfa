"""Push API benchmark under gunicorn on loopback, with a threaded Python load client.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_conn_bench CRMHUB_VAR_DIR=/tmp/connbench \
      /work/main/.venv/bin/python bench/connector_push_bench.py --workers 3 --threads 4

Starts ``gunicorn crmhub.wsgi`` (sync workers) on a free 127.0.0.1 port, creates an API client
with the push permission on source ``bench-push``, then measures (1) throughput: batches of 500
records, ``--batches`` requests spread over the client threads; (2) latency: ``--singles``
single-record requests over the same threads, p50/p95/p99. Every request carries a unique
Idempotency-Key, as a careful client would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

SURNAMES = "张王李赵陈刘杨黄周吴"
GIVEN = "伟芳娜敏静丽强磊军洋"


def record(n: int) -> dict:
    return {
        "source_key": f"P{n:09d}",
        "full_name": SURNAMES[n % 10] + GIVEN[(n // 10) % 10],
        "mobile": f"13{n:09d}",
        "email": f"p{n}@example.com",
        "city": "上海",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port: int, token: str, bodies: list[bytes], threads: int) -> list[float]:
    """Send ``bodies`` over ``threads`` keep-alive connections; the latency of each request."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                _i, body = queue.pop()
            started = time.perf_counter()
            conn.request(
                "POST",
                "/api/v1/sources/bench-push/records/",
                body=body,
                headers={
                    "Authorization": f"Token {token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != 200:
                    errors.append(f"{response.status} {data[:200]!r}")
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        print(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--singles", type=int, default=2000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from guardian.shortcuts import assign_perm
    from rest_framework.authtoken.models import Token

    from crmhub.services import field_definitions_sync, source_get_or_create

    field_definitions_sync()
    source, _ = source_get_or_create(code="bench-push")
    user, _ = get_user_model().objects.get_or_create(username="bench-push-client")
    assign_perm("crmhub.push_to_source", user, source)
    token = Token.objects.get_or_create(user=user)[0].key

    port = free_port()
    env = dict(os.environ, CRMHUB_PUSH_RATE="1000000/min")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "crmhub.wsgi",
            "-w",
            str(args.workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--keep-alive",
            "30",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        start = int(time.time()) * 1000 % 10**8 * 10
        warm = [json.dumps([record(start + i)]).encode() for i in range(20)]
        load(port, token, warm, args.threads)
        n = start + 1000
        batches = []
        for _b in range(args.batches):
            batches.append(json.dumps([record(n + i) for i in range(500)], ensure_ascii=False).encode())
            n += 500
        started = time.perf_counter()
        batch_lat = load(port, token, batches, args.threads)
        seconds = time.perf_counter() - started
        singles = [json.dumps(record(n + i), ensure_ascii=False).encode() for i in range(args.singles)]
        started = time.perf_counter()
        single_lat = sorted(load(port, token, singles, args.threads))
        single_seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    q = statistics.quantiles(single_lat, n=100)
    records = 500 * len(batch_lat)
    print(f"\ngunicorn sync workers: {args.workers}; client threads: {args.threads}")
    print("| measurement | requests | records | seconds | records/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    bq = statistics.quantiles(sorted(batch_lat), n=20)
    print(
        f"| batches of 500 | {len(batch_lat)} | {records:,} | {seconds:.1f} | {records / seconds:,.0f} | "
        f"{statistics.median(batch_lat) * 1000:.0f} | {bq[18] * 1000:.0f} | - |"
    )
    print(
        f"| single records | {len(single_lat)} | {len(single_lat):,} | {single_seconds:.1f} | "
        f"{len(single_lat) / single_seconds:,.0f} | {q[49] * 1000:.1f} | {q[94] * 1000:.1f} | {q[98] * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
