"""A quiet market keeps its dashboards: the channel layer's blocking receive returns empty well before redis-py's read
timeout, so a market with nothing pushed for longer than that timeout is not read as Redis being unreachable (the
consumer closes with 4503 on that). Found by `bench e2e` on CI: one of three clients connected, the feed took longer
than 5 s to start, and that client was closed and got none of the 20 bars."""
import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from minhos_site.channel_layer import RedisChannelLayer, read_timeout
from trading.tests.redis_server import PrivateRedis

pytestmark = pytest.mark.deployment
READ_TIMEOUT = 0.4  # redis-py's, shortened so the quiet spell is short


@pytest.fixture
def redis_url(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server.url(3)
    server.stop()


async def test_a_receive_outlives_many_read_timeouts_of_silence_then_gets_the_message(redis_url):
    layer = RedisChannelLayer(hosts=[{"address": redis_url, "socket_timeout": READ_TIMEOUT}], prefix="quiet")
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        # Silence for five read timeouts: the receive still waits (before, it failed with redis' TimeoutError).
        done, _ = await asyncio.wait({receiving}, timeout=5 * READ_TIMEOUT)
        assert not done, receiving.exception()
        await layer.send(channel, {"type": "bar.closed", "n": 1})
        message = await asyncio.wait_for(receiving, 5.0)
        assert message == {"type": "bar.closed", "n": 1}
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        await layer.flush()
        await layer.close_pools()


def test_the_blocking_wait_is_well_inside_the_read_timeout_whatever_the_hosts_say():
    assert RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"]).brpop_timeout < read_timeout({"address": "redis://x"})
    assert RedisChannelLayer(hosts=[{"address": "redis://127.0.0.1:1/0", "socket_timeout": 2}]).brpop_timeout <= 0.5
    assert RedisChannelLayer(hosts=["redis://127.0.0.1:1/0?socket_timeout=1"]).brpop_timeout <= 0.25
    # No read timeout at all (None): the library's own wait is safe.
    assert RedisChannelLayer(hosts=[{"address": "redis://127.0.0.1:1/0", "socket_timeout": None}]).brpop_timeout == 5


def test_deployment_settings_use_it():
    if not django_settings.REDIS_URL:
        pytest.fail("needs REDIS_URL: run it through make test")
    assert django_settings.CHANNEL_LAYERS["default"]["BACKEND"] == "minhos_site.channel_layer.RedisChannelLayer"
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    assert layer.brpop_timeout < read_timeout(layer.hosts[0])


async def _cancellations_lost(layer, rounds: int) -> int:
    """Cancel a command after 0..7 turns of the event loop, over and over: how many cancellations were dropped (the
    command returned as if never cancelled)."""
    from channels_redis.utils import create_pool
    import redis.asyncio

    client = redis.asyncio.Redis(connection_pool=create_pool(layer.hosts[0]))
    lost = 0
    try:
        for attempt in range(rounds):
            async def ping():
                await client.ping()
                return asyncio.current_task().cancelling()

            task = asyncio.ensure_future(ping())
            for _ in range(attempt % 8):
                await asyncio.sleep(0)
            task.cancel()
            try:
                lost += bool(await task)
            except asyncio.CancelledError:
                pass
    finally:
        await client.aclose()
    return lost


async def test_a_cancelled_command_is_cancelled(redis_url):
    """Python 3.11's asyncio.wait_for, around redis-py's send, dropped about one cancellation in five here."""
    layer = RedisChannelLayer(hosts=[redis_url], prefix="cancel")
    assert await _cancellations_lost(layer, 400) == 0


async def test_cancelled_receives_end_and_leave_the_layer_receiving(redis_url):
    """Consumers whose clients left are cancelled mid-receive, three at a time, at random points of the wait: each
    ends at once (before, one would go on receiving for ever, holding the receive lock every other consumer of the
    process needs), and a new channel still gets its message."""
    import random

    layer = RedisChannelLayer(hosts=[redis_url], prefix="cancel")
    layer.brpop_timeout = 0.05  # many empty waits, so cancellations land in every part of one
    randomness = random.Random(7)
    try:
        for _ in range(60):
            receives = [asyncio.ensure_future(layer.receive(await layer.new_channel())) for _ in range(3)]
            await asyncio.sleep(randomness.uniform(0, 0.15))  # where in the wait the cancellation lands
            for receive in receives:
                receive.cancel()
            _, pending = await asyncio.wait(receives, timeout=5.0)
            assert not pending, "a cancelled receive went on"
        channel = await layer.new_channel()
        receiving = asyncio.ensure_future(layer.receive(channel))
        await layer.send(channel, {"type": "bar.closed"})
        assert await asyncio.wait_for(receiving, 5.0) == {"type": "bar.closed"}
    finally:
        await layer.flush()
        await layer.close_pools()
