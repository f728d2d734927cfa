"""API throttles counted in the cache every process shares (crmhub.cache)."""

from __future__ import annotations

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import ScopedRateThrottle


class SharedScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle (a rate per client and ``throttle_scope``), counted with atomic
    increments of one counter per client and window.

    DRF's own keeps a list of timestamps that each request reads and writes back whole: two
    processes reading it at once both get through (a lost update), and at the push rate of
    12000/min the list holds 12000 entries. Here the count over the last ``duration`` seconds is
    estimated as this window's count plus the previous window's, weighted by the share of it
    still inside the last ``duration`` seconds (a sliding window). A refused request is taken
    back out, so a client that keeps trying while refused is not held off longer.
    """

    def allow_request(self, request, view) -> bool:  # noqa: ANN001
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window, self.elapsed = divmod(self.now, self.duration)
        current, previous = f"{key}:{int(window)}", f"{key}:{int(window) - 1}"
        count, self.before = self._count(current, previous)
        if self.before * (1 - self.elapsed / self.duration) + count <= self.num_requests:
            return True
        self.cache.decr(current)
        self.count = count - 1
        return False

    def _count(self, current: str, previous: str) -> tuple[int, int]:
        """This window's count after adding this request, and the previous window's count."""
        backend = caches[DEFAULT_CACHE_ALIAS]
        if self.cache is default_cache and isinstance(backend, RedisCache):
            # One round trip instead of three (add, incr, get); INCR makes a missing key 1.
            current_key = backend.make_and_validate_key(current)
            pipe = backend._cache.get_client(current_key, write=True).pipeline(transaction=False)
            pipe.incr(current_key)
            pipe.expire(current_key, 2 * self.duration)
            pipe.get(backend.make_and_validate_key(previous))
            count, _expiry, before = pipe.execute()
            return count, int(before or 0)
        self.cache.add(current, 0, timeout=2 * self.duration)
        try:
            count = self.cache.incr(current)
        except ValueError:  # expired between add and incr
            self.cache.set(current, 1, timeout=2 * self.duration)
            count = 1
        return count, self.cache.get(previous, 0)

    def wait(self) -> float:
        """Seconds until one more request fits."""
        room = self.num_requests - self.count - 1  # what the previous window may still weigh
        rest = self.duration - self.elapsed
        if room >= 0 and self.before:
            within = self.duration * (1 - room / self.before) - self.elapsed
            if within < rest:
                return max(0.0, within)
        # in the next window, this one is the previous: wait until its weight has fallen enough
        later = self.duration * (1 - (self.num_requests - 1) / self.count) if self.count else 0.0
        return rest + max(0.0, later)
