"""The push API's per-client rate is counted in the cache every process shares (crmhub.cache):
with several gunicorn workers a client still gets its rate once, not once per worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.roles import Role
from crmhub.cache import PrefixedRedisCache, cache_settings
from imports.api.connectors import PushThrottle
from tests.conftest import make_user
from tests.factories import SourceFactory

ROOT = Path(__file__).resolve().parents[3]

# Another process of the same site: same settings and environment (VAR_DIR, broker), so the
# same cache. It asks the real push throttle twice for the same client.
OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    import django
    django.setup()
    from imports.api.connectors import PushThrottle
    PushThrottle.THROTTLE_RATES = {"push": "3/min"}
    client = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=int(sys.argv[1])))
    view = SimpleNamespace(throttle_scope="push")
    print(json.dumps([PushThrottle().allow_request(client, view) for _ in range(2)]))
    """
)


@pytest.fixture
def pusher(django_user_model):  # noqa: ANN001, ANN201
    source = SourceFactory(code="shop")
    user = make_user(django_user_model, "shop_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", user, source)
    client = APIClient()
    client.force_authenticate(user)
    cache.clear()
    yield user, client
    cache.clear()


def push(client: APIClient, key: str) -> int:
    return client.post("/api/v1/sources/shop/records/", {"source_key": key}, format="json").status_code


@pytest.mark.django_db
def test_it_counts_a_clients_pushes_across_processes(pusher, monkeypatch):
    user, client = pusher
    monkeypatch.setattr(PushThrottle, "THROTTLE_RATES", {"push": "3/min"})
    assert [push(client, "A1"), push(client, "A2")] == [200, 200]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CRMHUB_VAR_DIR": str(settings.VAR_DIR)}
    other = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(user.pk)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # The other process sees this one's two requests: one more fits, the next does not ...
    assert json.loads(other.stdout.strip().splitlines()[-1]) == [True, False]
    # ... and this process sees the other's.
    assert push(client, "A3") == 429


@pytest.mark.django_db
def test_a_refused_client_is_told_when_to_come_back_and_others_are_not_held(pusher, django_user_model, monkeypatch):
    _user, client = pusher
    monkeypatch.setattr(PushThrottle, "THROTTLE_RATES", {"push": "2/min"})
    assert [push(client, "B1"), push(client, "B2"), push(client, "B3")] == [200, 200, 429]
    response = client.post("/api/v1/sources/shop/records/", {"source_key": "B4"}, format="json")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 120
    other = make_user(django_user_model, "pos_bot", Role.API_CLIENT)
    assign_perm("crmhub.push_to_source", other, _source())
    second = APIClient()
    second.force_authenticate(other)
    assert push(second, "C1") == 200


def _source():  # noqa: ANN202
    from crmhub.models import Source

    return Source.objects.get(code="shop")


def test_the_sliding_window_lets_the_rate_through_again_as_the_last_window_ages(monkeypatch):
    cache.clear()
    throttle = PushThrottle()
    monkeypatch.setattr(PushThrottle, "THROTTLE_RATES", {"push": "2/min"})
    client = type("Request", (), {"user": type("User", (), {"is_authenticated": True, "pk": 987654})()})()
    view = type("View", (), {"throttle_scope": "push"})()
    start = 60 * 29_000_000 + 30.0  # half way through a window
    monkeypatch.setattr(throttle, "timer", lambda: start)
    assert [throttle.allow_request(client, view) for _ in range(3)] == [True, True, False]
    assert throttle.wait() == pytest.approx(60.0)  # next window, once this one weighs half
    monkeypatch.setattr(throttle, "timer", lambda: start + 59.0)
    assert not throttle.allow_request(client, view)  # the previous window still weighs 2 * 31/60
    monkeypatch.setattr(throttle, "timer", lambda: start + 60.5)
    assert throttle.allow_request(client, view)
    assert not throttle.allow_request(client, view)
    cache.clear()


def test_the_cache_is_redis_when_configured_else_files_every_process_sees(tmp_path):
    explicit = cache_settings(cache_url="redis://cache:6379/2", broker_url="redis://broker:6379/0", var_dir=tmp_path)
    assert explicit["default"]["LOCATION"] == "redis://cache:6379/2"
    broker = cache_settings(cache_url="", broker_url="redis://broker:6379/0", var_dir=tmp_path)["default"]
    assert broker["BACKEND"] == "crmhub.cache.PrefixedRedisCache" and broker["LOCATION"] == "redis://broker:6379/0"
    embedded = cache_settings(cache_url="", broker_url="sqla+sqlite:///x.sqlite3", var_dir=tmp_path)["default"]
    assert embedded["BACKEND"].endswith("FileBasedCache") and embedded["LOCATION"] == str(tmp_path / "cache")
    assert cache_settings(cache_url="file:///srv/cache", broker_url="", var_dir=tmp_path)["default"]["LOCATION"] == (
        "/srv/cache"
    )
    with pytest.raises(ImproperlyConfigured):
        cache_settings(cache_url="memcached://x", broker_url="", var_dir=tmp_path)


def test_clearing_the_cache_in_the_brokers_redis_leaves_the_brokers_keys():
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        # The embedded default has no Redis (its cache is files, tested above); CI's second pass sets
        # CELERY_BROKER_URL to the machine's real Redis, where this runs.
        pytest.skip("the Redis cache is tested in the PostgreSQL + Redis pass (CELERY_BROKER_URL=redis://…)")
    shared = PrefixedRedisCache(broker, {"KEY_PREFIX": "crmhub-test-clear"})
    client = shared._cache.get_client(None, write=True)
    client.set("celery-queue-stand-in", "message")
    try:
        shared.set("count", 5)
        assert shared.get("count") == 5 and shared.incr("count") == 6
        shared.clear()
        assert shared.get("count") is None
        assert client.get("celery-queue-stand-in") == b"message"
    finally:
        client.delete("celery-queue-stand-in")
