"""The cache every process of a site shares (the API's throttle counts live there).

Django's default cache is local memory: each gunicorn worker and each Celery worker would keep
its own counts, so a client pushing through four workers would get four times its rate.

* ``CACHE_URL`` set to ``redis://…`` / ``rediss://…`` / ``unix://…``: that Redis server.
* else, when the Celery broker is Redis (``CELERY_BROKER_URL=redis://…``): the same Redis
  database, under the key prefix ``crmhub:`` (``clear()`` deletes only those keys, never the
  broker's queues, which Django's plain ``RedisCache.clear()`` would, with ``FLUSHDB``).
* else (the embedded default, one machine): files under ``VAR_DIR/cache`` (or ``CACHE_URL=file:///path``).
  Every process on the machine sees them and each write is an atomic rename; the database cache
  was not chosen because on SQLite it would put a write transaction into every API request, in
  the one file that imports write to (SQLite has a single writer), and it needs a table that
  ``migrate`` does not create.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

KEY_PREFIX = "crmhub"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def cache_settings(*, cache_url: str, broker_url: str, var_dir: Path) -> dict[str, dict[str, Any]]:
    """Django's CACHES for this site (see the module's docstring)."""
    url = cache_url.strip()
    if not url and broker_url.startswith(REDIS_SCHEMES):
        url = broker_url
    if url.startswith(REDIS_SCHEMES):
        return {
            "default": {
                "BACKEND": "crmhub.cache.PrefixedRedisCache",
                "LOCATION": url,
                "KEY_PREFIX": KEY_PREFIX,
                # An unreachable cache fails a request in seconds, not at the OS's TCP timeout.
                "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            }
        }
    if url.startswith("file://"):
        location = url.removeprefix("file://")
    elif url:
        raise ImproperlyConfigured(f"CACHE_URL must start with redis://, rediss://, unix:// or file://, got {url!r}")
    else:
        location = str(var_dir / "cache")
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": location,
            "KEY_PREFIX": KEY_PREFIX,
            # Counters are raised with get + set, which keeps no expiry of its own: the default
            # outlasts a day's window (stale windows go when the cache culls past MAX_ENTRIES).
            "TIMEOUT": 2 * 86400,
            "OPTIONS": {"MAX_ENTRIES": 1000},
        }
    }


class PrefixedRedisCache(RedisCache):
    """Django's Redis cache whose ``clear()`` removes only this site's keys: the database may be
    the Celery broker's."""

    def clear(self) -> None:
        client = self._cache.get_client(None, write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
