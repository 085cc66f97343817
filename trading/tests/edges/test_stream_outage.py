"""The live stream through a Redis outage (a private redis-server, killed and started again): pushes return at once
without raising, websockets are closed with 4503, each outage is logged once when it starts and once when it ends,
and pushes from sync code reuse one Redis connection, also in a forked child."""
import logging
import os
import socket
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from minhos_site.asgi import application
from trading import realtime
from trading.consumers import CLOSE_STREAM_UNAVAILABLE
from trading.tests.factories import InstrumentFactory
from trading.tests.redis_server import private_redis, stream_was_up  # noqa: F401  (fixtures)

ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")
TIMEOUT = 5
MEMBER = "outage-test-member"  # a plain channel name: read directly with the layer's receive


def realtime_records(caplog, level):
    return [r for r in caplog.records if r.name == "trading.realtime" and r.levelno == level]


def errors_logged(caplog):
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def receive_from_layer(channel: str) -> dict:
    async def receive():
        import asyncio

        return await asyncio.wait_for(get_channel_layer().receive(channel), TIMEOUT)
    return async_to_sync(receive)()


def join(channel: str) -> None:
    async_to_sync(get_channel_layer().group_add)(realtime.market_group("NQ", "1m"), channel)


# ---- pushes from sync code ------------------------------------------------------------------------------------------

def test_broadcast_with_redis_down_returns_at_once_without_raising_and_logs_once(private_redis, stream_was_up,
                                                                                 caplog):
    caplog.set_level(logging.INFO)
    join(MEMBER)
    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 0}) is True
    assert receive_from_layer(MEMBER)["payload"] == {"n": 0}

    private_redis.stop()
    started = time.monotonic()
    sent = [realtime.broadcast("NQ", "1m", "feed.status", {"n": n}) for n in range(1, 21)]
    elapsed = time.monotonic() - started

    assert sent == [False] * 20
    # A refused connection fails at once: twenty pushes take less than one timeout.
    assert elapsed < realtime.LAYER_TIMEOUT_SECONDS
    [warning] = realtime_records(caplog, logging.WARNING)
    assert "channel layer is unreachable" in warning.getMessage()
    assert "ConnectionError" in warning.getMessage()
    state = realtime.stream_state()
    assert (state.up, state.dropped) == (False, 20)
    assert state.as_dict()["status"] == "down" and "ConnectionError" in state.as_dict()["error"]
    assert realtime_records(caplog, logging.INFO) == []

    private_redis.start()
    join(MEMBER)  # a fresh Redis has forgotten the group
    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 21}) is True
    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 22}) is True

    assert [receive_from_layer(MEMBER)["payload"]["n"] for _ in range(2)] == [21, 22]
    [back] = realtime_records(caplog, logging.INFO)
    assert "answers again" in back.getMessage() and "20 pushes dropped" in back.getMessage()
    assert len(realtime_records(caplog, logging.WARNING)) == 1
    assert realtime.stream_state().up
    assert errors_logged(caplog) == []


def test_the_first_push_after_redis_restarted_is_delivered_not_dropped(private_redis, stream_was_up, caplog):
    caplog.set_level(logging.INFO)
    join(MEMBER)
    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 0}) is True  # the pool now holds a connection
    assert receive_from_layer(MEMBER)["payload"] == {"n": 0}

    private_redis.stop()  # restarted between two pushes: no push saw it down
    private_redis.start()
    join(MEMBER)  # a fresh Redis has forgotten the group

    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 1}) is True
    assert receive_from_layer(MEMBER)["payload"] == {"n": 1}
    assert realtime_records(caplog, logging.WARNING) == []  # no outage reported for a stale pooled connection
    assert realtime.stream_state().up


def test_broadcast_to_a_redis_that_never_answers_gives_up_within_the_timeout(settings, stream_was_up, monkeypatch,
                                                                             caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(realtime, "LAYER_TIMEOUT_SECONDS", 0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel's backlog; nothing ever answers
        port = silent.getsockname()[1]
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "minhos_site.channel_layer.RedisChannelLayer",
                                               "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/6"]}}}
        timings = []
        for n in range(3):
            started = time.monotonic()
            assert realtime.broadcast("NQ", "1m", "feed.status", {"n": n}) is False
            timings.append(time.monotonic() - started)

    assert max(timings) < 1.0, timings
    assert min(timings) >= 0.25, timings  # it did wait for an answer, up to the bound
    [warning] = realtime_records(caplog, logging.WARNING)
    assert "TimeoutError" in warning.getMessage()
    assert realtime.stream_state().dropped == 3


def test_pushes_from_sync_code_reuse_one_redis_connection(private_redis):
    join(MEMBER)
    assert realtime.broadcast("NQ", "1m", "feed.status", {"n": 0}) is True  # opens the process's connection
    before = private_redis.connections_received()

    assert all(realtime.broadcast("NQ", "1m", "feed.status", {"n": n}) for n in range(1, 31))

    # The only connection made meanwhile is the one that asks Redis for its count.
    assert private_redis.connections_received() - before == 1
    assert [receive_from_layer(MEMBER)["payload"]["n"] for _ in range(31)] == list(range(31))


def test_a_forked_child_pushes_through_an_event_loop_of_its_own(private_redis):
    join(MEMBER)
    assert realtime.broadcast("NQ", "1m", "feed.status", {"from": "parent"}) is True  # the loop thread runs now

    pid = os.fork()
    if pid == 0:  # the child, as in Celery's prefork pool: the parent's loop thread does not exist here
        try:
            os._exit(0 if realtime.broadcast("NQ", "1m", "feed.status", {"from": "child"}) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)  # the child's push is bounded by LAYER_TIMEOUT_SECONDS

    assert os.waitstatus_to_exitcode(status) == 0
    assert [receive_from_layer(MEMBER)["payload"]["from"] for _ in range(2)] == ["parent", "child"]


# ---- websockets -----------------------------------------------------------------------------------------------------

@pytest.fixture
def nq(transactional_db):
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="trader", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(session_cookie) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/market/NQ/1m/", headers=[HOST, ORIGIN, (b"cookie", session_cookie)])


async def connect_refused_for_the_stream(session_cookie) -> dict:
    ws = communicator(session_cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected  # accepted, so that the browser sees the close code
    try:
        return await ws.receive_output(timeout=TIMEOUT)
    finally:
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_handshakes_with_redis_down_are_closed_4503_and_logged_once(private_redis, stream_was_up, nq,
                                                                         session_cookie, caplog):
    caplog.set_level(logging.INFO)
    private_redis.stop()

    closes = [await connect_refused_for_the_stream(session_cookie) for _ in range(5)]

    assert [(c["type"], c["code"]) for c in closes] == [("websocket.close", CLOSE_STREAM_UNAVAILABLE)] * 5
    assert CLOSE_STREAM_UNAVAILABLE == 4503
    assert closes[0]["reason"] == "live stream unavailable"
    [warning] = realtime_records(caplog, logging.WARNING)
    assert "channel layer is unreachable" in warning.getMessage()
    assert errors_logged(caplog) == []

    await database_sync_to_async(private_redis.start)()
    ws = communicator(session_cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"
        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "feed.status", {"after": "outage"})
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "feed.status", "after": "outage"}
    finally:
        await ws.disconnect()
    [back] = realtime_records(caplog, logging.INFO)
    assert "answers again" in back.getMessage()
    assert len(realtime_records(caplog, logging.WARNING)) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_connected_client_is_closed_4503_when_redis_goes_away(private_redis, stream_was_up, nq,
                                                                      session_cookie, caplog):
    caplog.set_level(logging.INFO)
    ws = communicator(session_cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"

        await database_sync_to_async(private_redis.stop)()

        close = await ws.receive_output(timeout=TIMEOUT)
        assert (close["type"], close["code"]) == ("websocket.close", CLOSE_STREAM_UNAVAILABLE)
    finally:
        await ws.disconnect()
    assert len(realtime_records(caplog, logging.WARNING)) == 1
    assert errors_logged(caplog) == []
