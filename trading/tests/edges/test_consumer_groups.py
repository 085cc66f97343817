"""The market websocket leaves its channel groups however the connection ends, on the real web process (uvicorn)
and a private Redis: a client that closes while the server prepares a resume's catch-up (the server's send then
raises, and Channels never calls disconnect) must not stay a member of the groups, where every push would be sent to
it and buffered by the web process for the layer's group expiry (a day)."""
import asyncio
import json

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from trading import realtime
from trading.tests.factories import BarFactory, InstrumentFactory
from trading.tests.processes import CHANNELS_PREFIX, process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

CLIENTS = 10
TIMEOUT = 20


def members(url: str, group: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.zcard(f"{CHANNELS_PREFIX}:group:{group}")
    finally:
        client.close()


async def resume_and_leave(url: str, origin: str, cookie: str) -> None:
    """Connect, ask for what was missed, and close at once (a page closed just after it reconnected): the server
    reads the close while it is reading the catch-up from the database, and its first send of it then fails."""
    from websockets.asyncio.client import connect

    socket_ = await connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, proxy=None,
                            open_timeout=TIMEOUT, compression=None)
    assert json.loads(await asyncio.wait_for(socket_.recv(), TIMEOUT))["type"] == "feed.status"
    await socket_.send(json.dumps({"type": "resume", "since": "2000-01-01T00:00:00Z"}))
    await asyncio.wait_for(socket_.close(), TIMEOUT)


def test_a_client_that_leaves_during_a_catch_up_leaves_both_groups(process_stack):
    nq = InstrumentFactory(symbol="NQ")
    BarFactory.create_series(20, instrument=nq)  # something to catch up on
    user = get_user_model().objects.create_user(username="watcher", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    web = process_stack.web()
    url = f"ws://127.0.0.1:{web.port}/ws/market/NQ/1m/"

    async def leave_all():
        await asyncio.gather(*(resume_and_leave(url, web.url, cookie) for _ in range(CLIENTS)))
    asyncio.run(leave_all())

    groups = (realtime.market_group("NQ", "1m"), realtime.EVERYONE_GROUP)
    process_stack.wait_for(
        lambda: all(members(process_stack.redis_url, group) == 0 for group in groups), TIMEOUT,
        lambda: "channels left in the groups after every client went: "
                f"{ {group: members(process_stack.redis_url, group) for group in groups} }")



def test_a_connection_closed_by_a_layer_error_leaves_the_groups(process_stack):
    """Redis drops the web process's connections (a network blip, a proxy's idle timeout) but keeps its data: the
    websocket is closed with 4503, and its channel must not stay in the groups Redis still holds."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    InstrumentFactory(symbol="NQ")
    user = get_user_model().objects.create_user(username="watcher", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    web = process_stack.web()
    groups = (realtime.market_group("NQ", "1m"), realtime.EVERYONE_GROUP)
    with connect(f"ws://127.0.0.1:{web.port}/ws/market/NQ/1m/", proxy=None, open_timeout=TIMEOUT,
                 additional_headers={"Cookie": cookie, "Origin": web.url}) as socket_:
        assert '"feed.status"' in socket_.recv(timeout=TIMEOUT)
        assert [members(process_stack.redis_url, group) for group in groups] == [1, 1]
        server = redis.Redis.from_url(process_stack.redis_url)
        try:
            assert server.client_kill_filter(_type="normal") >= 1  # every client but this one
        finally:
            server.close()
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 4503

    process_stack.wait_for(
        lambda: all(members(process_stack.redis_url, group) == 0 for group in groups), TIMEOUT,
        lambda: "channels left in the groups after a layer error: "
                f"{ {group: members(process_stack.redis_url, group) for group in groups} }")
