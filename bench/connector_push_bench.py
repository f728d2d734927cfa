"""Push API benchmark under gunicorn on loopback, with a threaded Python load client.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_push_bench CRMHUB_VAR_DIR=/tmp/pushbench \
      /work/main/.venv/bin/python bench/connector_push_bench.py --workers 3 --threads 1,4,20

Starts ``gunicorn crmhub.wsgi`` (sync workers, persistent database connections as in production:
``DB_CONN_MAX_AGE``, default 600 here, ``--conn-max-age 0`` for a new connection per request) on a
free 127.0.0.1 port, creates an API client with a scoped ``push`` token (``accounts.ApiToken``)
and the push permission on source ``bench-push``, then for each client-thread count measures
(1) throughput: batches of 500 records, ``--batches`` requests spread over the client threads;
(2) latency: ``--singles`` single-record requests over the same threads, p50/p95/p99. Every
request carries a unique Idempotency-Key, as a careful client would; all go to one source.

``--in-process N`` instead pushes N single records through the Django test client (no HTTP)
and prints the median time, the queries per push and the time spent waiting for them.
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


def in_process(token: str, n: int) -> None:
    """Single pushes through Django's test client: time, queries and time waiting for them."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_HOSTS = ["*"]
    client = Client()
    start = int(time.time()) * 1000 % 10**8 * 10
    totals, cpu, db_times, counts = [], [], [], []
    for i in range(n + 10):
        with CaptureQueriesContext(connection) as queries:
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.post(
                "/api/v1/sources/bench-push/records/",
                data=json.dumps(record(start + i), ensure_ascii=False),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Token {token}",
                HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
            )
            elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
        assert response.status_code == 200, response.content
        if i >= 10:  # the first pushes warm the caches
            totals.append(elapsed * 1000)
            cpu.append(cpu_used * 1000)
            db_times.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
            counts.append(len(queries.captured_queries))
    print(f"in-process single pushes: {n}")
    print(f"median {statistics.median(totals):.1f} ms, p95 {statistics.quantiles(totals, n=20)[18]:.1f} ms")
    print(f"CPU of this process (Python: Django, DRF, the push) per push: median {statistics.median(cpu):.1f} ms")
    print(f"load average {os.getloadavg()}")
    print(f"queries per push: {statistics.median(counts):.0f}; waiting for them: {statistics.median(db_times):.1f} ms")
    for q in queries.captured_queries:
        print(f"  {float(q['time']) * 1000:6.1f} ms  {q['sql'][:110]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", default="4", help="client threads; a comma list runs each in turn")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--conn-max-age", type=int, default=600)
    parser.add_argument("--in-process", type=int, default=0, metavar="N")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from guardian.shortcuts import assign_perm

    from accounts.services import api_token_create
    from crmhub.services import field_definitions_sync, source_get_or_create

    field_definitions_sync()
    source, _ = source_get_or_create(code="bench-push")
    user, _ = get_user_model().objects.get_or_create(username="bench-push-client")
    assign_perm("crmhub.push_to_source", user, source)
    _token, token = api_token_create(user=user, name="bench", scopes=["push"], sources=[source])
    if args.in_process:
        in_process(token, args.in_process)
        return

    port = free_port()
    env = dict(os.environ, CRMHUB_PUSH_RATE="1000000/min", DB_CONN_MAX_AGE=str(args.conn_max_age))
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
        for threads in [int(t) for t in args.threads.split(",")]:
            measure(port, token, threads, args)
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(port: int, token: str, threads: int, args: argparse.Namespace) -> None:
    start = int(time.time()) * 1000 % 10**8 * 10
    warm = [json.dumps([record(start + i)]).encode() for i in range(20)]
    load(port, token, warm, threads)
    n = start + 1000
    batches = []
    for _b in range(args.batches):
        batches.append(json.dumps([record(n + i) for i in range(500)], ensure_ascii=False).encode())
        n += 500
    started = time.perf_counter()
    batch_lat = load(port, token, batches, threads)
    seconds = time.perf_counter() - started
    singles = [json.dumps(record(n + i), ensure_ascii=False).encode() for i in range(args.singles)]
    started = time.perf_counter()
    single_lat = sorted(load(port, token, singles, threads))
    single_seconds = time.perf_counter() - started
    q = statistics.quantiles(single_lat, n=100)
    records = 500 * len(batch_lat)
    print(f"\ngunicorn sync workers: {args.workers}; client threads: {threads}; load average {os.getloadavg()}")
    print("| client threads | measurement | requests | records | seconds | records/s | p50 ms | p95 ms | p99 ms |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    if batch_lat:
        bq = statistics.quantiles(sorted(batch_lat), n=20) if len(batch_lat) > 1 else [batch_lat[0]] * 19
        print(
            f"| {threads} | batches of 500 | {len(batch_lat)} | {records:,} | {seconds:.1f} | "
            f"{records / seconds:,.0f} | {statistics.median(batch_lat) * 1000:.0f} | {bq[18] * 1000:.0f} | - |"
        )
    print(
        f"| {threads} | single records | {len(single_lat)} | {len(single_lat):,} | {single_seconds:.1f} | "
        f"{len(single_lat) / single_seconds:,.0f} | {q[49] * 1000:.1f} | {q[94] * 1000:.1f} | {q[98] * 1000:.1f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
