"""The shared cache (Redis in deployment) with a fallback to this process's memory while it cannot be reached.

The API's throttles count here. They sit in front of every API view, the safety controls included (the kill switch,
auto-trading, approvals, tokens), and a control must never depend on Redis: during an outage the counts move to a
local limiter (limits then hold per web process rather than across them) instead of the request failing with a 500.
The outage is logged once when it starts and once when it ends."""
from __future__ import annotations

import logging
import threading
import time

from django.core.cache import cache as shared_cache
from django.core.cache.backends.locmem import LocMemCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# While the shared cache is down, it is tried again at most this often: each try of an unreachable server can cost
# up to its connect timeout, which a request must not pay every time.
RETRY_SECONDS = 5.0
# What an unreachable or failing Redis raises through Django's RedisCache (socket errors surface as OSError too).
UNREACHABLE = (RedisError, OSError)


class FailoverCache:
    """`get` / `set` on the shared cache, or on a local in-memory cache while the shared one fails."""

    def __init__(self, *, retry_seconds: float = RETRY_SECONDS, clock=time.monotonic):
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.local = LocMemCache("minhos-shared-cache-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
        self._lock = threading.Lock()
        self._down_since: float | None = None  # clock time of the first failure of this outage
        self._retry_at = 0.0
        self._local_calls = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def get(self, key, default=None):
        return self._call("get", key, default)

    def set(self, key, value, timeout=None):
        return self._call("set", key, value, timeout)

    def _call(self, method: str, *args):
        if self._down_since is None or self.clock() >= self._retry_at:
            try:
                result = getattr(shared_cache, method)(*args)
            except UNREACHABLE as error:
                self._failed(error)
            else:
                if self._down_since is not None:
                    self._recovered()
                return result
        with self._lock:
            self._local_calls += 1
        return getattr(self.local, method)(*args)

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            now = self.clock()
            self._retry_at = now + self.retry_seconds
            if self._down_since is not None:
                return
            self._down_since = now
            self._local_calls = 0
        logger.warning("the shared cache (Redis) cannot be reached (%s: %s): API rate limits count in this process "
                       "until it answers again; the API, its safety controls included, keeps answering",
                       type(error).__name__, error)

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            lasted, counted = self.clock() - self._down_since, self._local_calls
            self._down_since, self._local_calls = None, 0
        logger.warning("the shared cache (Redis) answers again after %.0f s; API rate limits count there again "
                       "(%d reads and writes were counted in this process meanwhile)", lasted, counted)


throttle_cache = FailoverCache()
