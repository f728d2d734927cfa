"""Webhooks against a real HTTP receiver on loopback that fails, times out and recovers."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from crmhub.choices import ChangeEventType, DeliveryStatus
from crmhub.models import WebhookDelivery, WebhookSubscription
from crmhub.outbox import change_record
from crmhub.webhooks import webhook_delivery_redeliver, webhook_dispatch, webhook_subscription_enable
from tests.factories import CustomerFactory
from tests.imports.connectors.test_worker_kill import doomed_worker  # noqa: F401 - a fixture

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "s3cret-for-tests"


def docs_verifier():  # noqa: ANN201
    """The verification example of docs/webhooks.md, executed as written."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace["verify_crmhub_webhook"]


class Receiver:
    """A local HTTP server whose behaviour the test scripts: 'ok', 'fail' (500) or 'slow'."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received: list[tuple[dict, dict, bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.mode == "slow":
                    time.sleep(1.5)
                if receiver.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), json.loads(body), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():  # noqa: ANN201
    r = Receiver()
    yield r
    r.close()


def emit(customer, n: int) -> None:  # noqa: ANN001
    for i in range(n):
        with transaction.atomic():
            change_record(
                event_type=ChangeEventType.UPDATED,
                customer_id=customer.pk,
                changed_fields=["city"],
                data={"city": f"city-{i}", "mobile": customer.mobile, "id_number": "11010519491231002X"},
            )


fast = override_settings(
    CRMHUB_WEBHOOK_BACKOFF_BASE_SECONDS=0.0,
    CRMHUB_WEBHOOK_BACKOFF_MAX_SECONDS=0.0,
    CRMHUB_WEBHOOK_READ_TIMEOUT=0.5,
    CRMHUB_WEBHOOK_DISABLE_AFTER_FAILURES=4,
)


@pytest.mark.django_db(transaction=True)
@fast
@override_settings(CRMHUB_WEBHOOK_DISABLE_AFTER_FAILURES=50)
def test_it_delivers_signed_masked_events_in_order_through_failures_timeouts_and_recovery(receiver):
    alice, bob = CustomerFactory(), CustomerFactory()
    sub = WebhookSubscription.objects.create(name="erp", url=receiver.url, secret=SECRET, role="support")
    emit(alice, 3)
    emit(bob, 2)

    receiver.mode = "fail"
    assert webhook_dispatch(sub.pk, time_budget=2)["sent"] == 0
    receiver.mode = "slow"  # longer than the read timeout
    assert webhook_dispatch(sub.pk, time_budget=2)["sent"] == 0
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.FAILED).exists()
    receiver.mode = "ok"
    for _ in range(5):
        webhook_dispatch(sub.pk, time_budget=5)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}

    payloads = [p for _, p, _ in receiver.received]
    event_ids = [p["event_id"] for p in payloads]
    assert len(set(event_ids)) == 5  # every event arrived
    for customer in (alice, bob):
        # Timed-out sends may arrive twice (at least once); first arrivals are in order per customer.
        first_arrivals = list(dict.fromkeys(p["data"]["city"] for p in payloads if p["customer"] == customer.pk))
        assert first_arrivals == sorted(first_arrivals)
    verify = docs_verifier()
    for headers, payload, body in receiver.received:
        assert verify(SECRET, headers, body)
        assert not verify("another secret", headers, body)
        assert payload["data"]["mobile"].count("*") == 4  # masked for the support role
        assert "id_number" in payload["data"] and "11010519491231002X" not in body.decode()


@pytest.mark.django_db(transaction=True)
@fast
def test_it_disables_a_failing_subscription_and_loses_nothing_when_enabled_again(receiver):
    customer = CustomerFactory()
    sub = WebhookSubscription.objects.create(name="bi", url=receiver.url, secret=SECRET, event_types=["updated"])
    emit(customer, 2)
    receiver.mode = "fail"
    for _ in range(6):
        webhook_dispatch(sub.pk, time_budget=1)
    sub.refresh_from_db()
    assert sub.is_active is False and "4 failed attempts" in sub.disabled_reason
    assert webhook_dispatch(sub.pk)["sent"] == 0  # disabled: nothing is sent
    receiver.mode = "ok"
    webhook_subscription_enable(subscription=sub)
    webhook_dispatch(sub.pk, time_budget=5)
    assert [p["data"]["city"] for _, p, _ in receiver.received] == ["city-0", "city-1"]
    delivery = WebhookDelivery.objects.order_by("position").first()
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 204)
    webhook_delivery_redeliver(delivery=delivery)
    webhook_dispatch(sub.pk, time_budget=5)
    assert [p["data"]["city"] for _, p, _ in receiver.received] == ["city-0", "city-1", "city-0"]


@pytest.mark.django_db(transaction=True)
@fast
def test_it_sends_only_the_chosen_event_types_and_fields(receiver):
    customer = CustomerFactory()
    sub = WebhookSubscription.objects.create(
        name="mkt", url=receiver.url, secret=SECRET, role="api_client", event_types=["created"], fields=["mobile"]
    )
    emit(customer, 1)
    with transaction.atomic():
        change_record(
            event_type=ChangeEventType.CREATED,
            customer_id=customer.pk,
            changed_fields=["mobile", "city"],
            data={"mobile": customer.mobile, "city": "上海"},
        )
    webhook_dispatch(sub.pk, time_budget=5)
    assert [(p["event_type"], p["data"]) for _, p, _ in receiver.received] == [("created", {"mobile": customer.mobile})]


@pytest.mark.django_db(transaction=True)
def test_it_lets_only_one_dispatcher_work_a_subscription_at_a_time(receiver):
    sub = WebhookSubscription.objects.create(name="x", url=receiver.url, secret=SECRET)
    WebhookSubscription.objects.filter(pk=sub.pk).update(dispatch_lease_until=timezone.now() + timedelta(seconds=60))
    emit(CustomerFactory(), 1)
    assert webhook_dispatch(sub.pk) == {"sent": 0, "failed": 0}
    assert receiver.received == []


@pytest.mark.integration
def test_it_delivers_through_the_celery_worker(live_worker, receiver):
    from crmhub.tasks import webhooks_dispatch_all

    sub = WebhookSubscription.objects.create(name="worker", url=receiver.url, secret=SECRET)
    emit(CustomerFactory(), 3)
    webhooks_dispatch_all.delay()
    delivered = WebhookDelivery.objects.filter(subscription=sub, status=DeliveryStatus.DELIVERED)
    deadline = time.monotonic() + 30
    # The receiver has a request before the worker has recorded its answer: wait for both.
    while (len(receiver.received) < 3 or delivered.count() < 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p["data"]["city"] for _, p, _ in receiver.received] == ["city-0", "city-1", "city-2"]
    assert delivered.count() == 3


class SlowReceiver(Receiver):
    """Answers every request after a short pause, so a worker can be killed mid-batch."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        handler = self.server.RequestHandlerClass
        original = handler.do_POST

        def slow_post(handler_self) -> None:  # noqa: ANN001
            time.sleep(0.15)
            original(handler_self)

        handler.do_POST = slow_post


@pytest.mark.integration
def test_it_loses_no_event_when_the_worker_dies_mid_delivery(doomed_worker):  # noqa: F811
    import os
    import signal

    from crmhub.tasks import webhook_dispatch as dispatch_task

    receiver = SlowReceiver()
    try:
        customers = [CustomerFactory() for _ in range(3)]
        sub = WebhookSubscription.objects.create(name="kill", url=receiver.url, secret=SECRET)
        for customer in customers:
            emit(customer, 10)
        dispatch_task.apply_async(args=[sub.pk], queue=doomed_worker.queue)
        deadline = time.monotonic() + 60
        while len(receiver.received) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.received) >= 8, "the worker never started delivering"
        os.killpg(doomed_worker.pid, signal.SIGKILL)  # mid-batch: its successes are not recorded yet
        doomed_worker.wait()
        sent_before_kill = len(receiver.received)
        assert sent_before_kill < 30
        # The dead worker's lease runs out; the next dispatcher takes over.
        WebhookSubscription.objects.filter(pk=sub.pk).update(dispatch_lease_until=None)
        for _ in range(10):
            webhook_dispatch(sub.pk, time_budget=30)
            if not WebhookDelivery.objects.filter(subscription=sub).exclude(status=DeliveryStatus.DELIVERED).exists():
                break
        assert set(WebhookDelivery.objects.filter(subscription=sub).values_list("status", flat=True)) == {
            DeliveryStatus.DELIVERED
        }
        payloads = [p for _, p, _ in receiver.received]
        assert len({p["event_id"] for p in payloads}) == 30  # nothing lost
        assert len(payloads) - 30 <= sent_before_kill  # only what the dead worker sent can come twice
        for customer in customers:
            arrivals = list(dict.fromkeys(p["data"]["city"] for p in payloads if p["customer"] == customer.pk))
            assert arrivals == [f"city-{i}" for i in range(10)]
    finally:
        receiver.close()
