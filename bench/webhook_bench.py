"""Webhook delivery throughput to a local receiver (issue 8: target ≥ 500 events/s).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_bench .venv/bin/python bench/webhook_bench.py --events 20000

Writes N change events (in batches, as imports do), then times one dispatcher draining them
to a keep-alive HTTP receiver on 127.0.0.1 that verifies nothing and answers 204.
"""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from crmhub.choices import ChangeEventType  # noqa: E402
from crmhub.models import ChangeEvent, WebhookDelivery, WebhookSubscription  # noqa: E402
from crmhub.outbox import Change, changes_record_bulk  # noqa: E402
from crmhub.webhooks import webhook_dispatch  # noqa: E402


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    WebhookDelivery.objects.all().delete()
    WebhookSubscription.objects.filter(name="bench").delete()
    start_position = ChangeEvent.objects.order_by("-position").values_list("position", flat=True).first() or 0
    sub = WebhookSubscription.objects.create(
        name="bench",
        url=f"http://127.0.0.1:{server.server_address[1]}/",
        secret="bench",
        role="api_client",
        cursor=start_position,
    )
    started = time.monotonic()
    for offset in range(0, args.events, 5000):
        with transaction.atomic():
            changes_record_bulk(
                Change(ChangeEventType.UPDATED, 1_000_000 + i, ["city"], {"city": "上海", "mobile": "+8613800138000"})
                for i in range(offset, min(offset + 5000, args.events))
            )
    written = time.monotonic() - started
    started = time.monotonic()
    sent = 0
    while sent < args.events:
        sent += webhook_dispatch(sub.pk, time_budget=600, batch=2000)["sent"]
    seconds = time.monotonic() - started
    print(
        f"database: {connection.vendor}; events: {args.events}; outbox write: {written:.1f} s "
        f"({args.events / written:,.0f}/s); delivery: {seconds:.1f} s = {args.events / seconds:,.0f} events/s"
    )
    server.shutdown()


if __name__ == "__main__":
    main()
