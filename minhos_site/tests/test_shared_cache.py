"""The shared cache's fallback (minhos_site/shared_cache.py): with Redis unreachable, reads and writes go to this
process's memory, the shared cache is tried again only after a pause, and the outage is logged once as it starts and
once as it ends."""
import logging

import pytest

from minhos_site.shared_cache import FailoverCache
from trading.tests.redis_server import PrivateRedis

pytestmark = pytest.mark.embedded


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def redis_cache(tmp_path, settings):
    """The default cache on a private redis-server this test may stop and start again."""
    server = PrivateRedis(tmp_path)
    server.start()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": server.url(), "KEY_PREFIX": "failover-test",
                                   "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
    yield server
    server.stop()


def records(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "minhos_site.shared_cache"]


def test_with_redis_down_counts_move_to_the_process_and_back_and_each_change_is_logged_once(redis_cache, caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    cache = FailoverCache(retry_seconds=5, clock=clock)
    cache.set("k", [1], 60)
    assert cache.get("k") == [1] and not cache.down

    redis_cache.stop()
    assert cache.get("k", "missing") == "missing"  # not an exception: the local store, which has no count yet
    cache.set("k", [2], 60)
    assert cache.get("k") == [2] and cache.down
    assert len(records(caplog)) == 1 and "cannot be reached" in records(caplog)[0]

    redis_cache.start()
    clock.now += 4.9  # within the pause the shared cache is not tried again
    assert cache.get("k") == [2] and cache.down
    clock.now += 0.2
    assert cache.get("k") is None and not cache.down  # Redis came back empty (a restart keeps nothing here)
    [down, back] = records(caplog)
    assert "answers again after 5 s" in back and "(4 reads and writes were counted in this process" in back


def test_an_error_that_is_not_about_reaching_redis_is_not_hidden(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache = FailoverCache()
    with pytest.raises(AttributeError, match="pickle"):
        cache.set("k", lambda: None, 60)  # cannot be pickled: a programming error, raised as before
