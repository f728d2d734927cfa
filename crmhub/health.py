"""Health of the parts crmhub needs: the database and the broker (and, for information,
the workers that have checked in)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection


def check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not answering"
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "ms": round(1000 * (time.monotonic() - started), 1), "vendor": connection.vendor}


def check_broker() -> dict:
    from crmhub.celery import app

    started = time.monotonic()
    try:
        # A fresh connection to the configured broker, not the app's pooled one.
        with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "ms": round(1000 * (time.monotonic() - started), 1), "transport": _transport_name()}


def _transport_name() -> str:
    return settings.CELERY_BROKER_URL.split(":", 1)[0].split("+", 1)[0]


def health_report() -> tuple[bool, dict]:
    from crmhub.selectors import workers_alive

    database = check_database()
    broker = check_broker()
    workers = [w.hostname for w in workers_alive()] if database["ok"] else []
    ok = database["ok"] and broker["ok"]
    return ok, {"status": "ok" if ok else "unavailable", "database": database, "broker": broker, "workers": workers}


def check_worker_roundtrip(timeout: float = 10.0) -> dict:
    """Send a probe task and wait for a worker to record it in the database."""
    import secrets

    from crmhub.models import WorkerHeartbeat
    from crmhub.tasks import probe

    nonce = secrets.token_hex(8)
    started = time.monotonic()
    try:
        probe.delay(nonce)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": exc.__class__.__name__}
    while time.monotonic() - started < timeout:
        worker = WorkerHeartbeat.objects.filter(probe_nonce=nonce).values_list("hostname", flat=True).first()
        if worker:
            return {"ok": True, "ms": round(1000 * (time.monotonic() - started), 1), "worker": worker}
        time.sleep(0.1)
    return {"ok": False, "error": "no worker answered the probe", "seconds": timeout}
