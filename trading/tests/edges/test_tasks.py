"""Trading's Celery tasks: the feed-status broadcast reaches every dashboard watching a market."""
import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from trading import services
from trading.realtime import market_group
from trading.tasks import feed_status_broadcast
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

# Generous: a push crosses Redis in deployment mode; a lost message fails the test instead of blocking the run.
TIMEOUT = 5


@pytest.fixture(autouse=True)
def private_channel_layer(channel_prefix):
    """Every test here on a channel layer of its own (see trading/tests/conftest.py)."""


def join(group: str) -> str:
    """A fake dashboard: a fresh channel added to `group`."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def receive(channel: str) -> dict:
    async def first_message():
        return await asyncio.wait_for(get_channel_layer().receive(channel), TIMEOUT)

    return async_to_sync(first_message)()


def test_feed_status_broadcast_pushes_each_feeds_status_to_its_market_group_and_counts_the_feeds():
    nq = InstrumentFactory(symbol="NQ")
    services.feed_status_start(instrument=nq, timeframe="1m", source="synthetic", pace_seconds=1.0)
    services.feed_status_start(instrument=nq, timeframe="5m", source="stored", pace_seconds=2.0)
    one_minute, five_minutes = join(market_group("NQ", "1m")), join(market_group("NQ", "5m"))

    result = feed_status_broadcast.apply()

    assert result.successful()
    assert result.get() == 2
    message = receive(one_minute)
    assert message["type"] == "feed.status"
    payload = message["payload"]
    assert (payload["symbol"], payload["timeframe"], payload["source"]) == ("NQ", "1m", "synthetic")
    assert payload["running"] is True  # started just now: the heartbeat is fresh
    assert "server_time" in payload
    assert receive(five_minutes)["payload"]["timeframe"] == "5m"


def test_a_stopped_feed_is_broadcast_as_not_running():
    nq = InstrumentFactory(symbol="NQ")
    services.feed_status_start(instrument=nq, timeframe="1m", source="synthetic", pace_seconds=1.0)
    services.feed_status_stop(instrument=nq, timeframe="1m")
    dashboard = join(market_group("NQ", "1m"))

    assert feed_status_broadcast.apply().get() == 1

    message = receive(dashboard)
    assert (message["type"], message["payload"]["running"]) == ("feed.status", False)


def test_with_no_feeds_the_broadcast_counts_zero():
    assert feed_status_broadcast.apply().get() == 0
