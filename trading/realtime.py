"""Pushes to websocket clients through the channel layer (in-memory when embedded, Redis when deployed).

A push never fails its caller because the layer is unreachable: the data is already in the database and a client
that reconnects catches up (`trading.stream_catchup`). An outage is logged once when it starts and once when it ends,
and `stream_state()` says since when the stream is up or down.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.exceptions
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# The longest a push (or a websocket's join) waits on the layer: a refused connection fails at once, a silent network
# within this bound, so no caller hangs on an outage.
LAYER_TIMEOUT_SECONDS = 2.0
# What an unreachable layer raises: redis-py's connection and timeout errors, the socket's, our own bound.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)


def market_group(symbol: str, timeframe: str) -> str:
    return f"market.{symbol}.{timeframe}"


def bar_message(bar) -> dict:
    return {
        "t": bar.timestamp.isoformat().replace("+00:00", "Z"),
        "o": float(bar.open),
        "h": float(bar.high),
        "l": float(bar.low),
        "c": float(bar.close),
        "v": float(bar.volume),
    }


# Every open page (not only a market's dashboard) listens here: alerts are shown wherever the user is.
EVERYONE_GROUP = "everyone"


def broadcast(symbol: str, timeframe: str, message_type: str, payload: dict) -> bool:
    """Push a message to a market's dashboards from sync code; False (logged once per outage) when the layer is
    unreachable, without raising."""
    return _broadcast(market_group(symbol, timeframe), message_type, payload)


def broadcast_all(message_type: str, payload: dict) -> bool:
    """Push a message to every open page (alerts); like `broadcast`, never raises."""
    return _broadcast(EVERYONE_GROUP, message_type, payload)


def _broadcast(group: str, message_type: str, payload: dict) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    message = {"type": message_type, "payload": payload}
    try:
        try:
            _group_send_from_sync(layer, group, message)
        except redis.exceptions.ConnectionError:
            # After Redis restarts, the first push goes out on a pooled connection from before and fails; the pool
            # then drops it, so one more try on a fresh connection tells a restarted Redis from one still down.
            _group_send_from_sync(layer, group, message)
    except UNREACHABLE as error:
        stream_down(error, during="a push", dropped=1)
        return False
    stream_up()
    return True


async def layer_call(awaitable):
    """Await a call on the channel layer within LAYER_TIMEOUT_SECONDS (the consumer's joins go through here)."""
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives as the call completes
    # (a consumer whose client left would go on as if never cancelled).
    async with asyncio.timeout(LAYER_TIMEOUT_SECONDS):
        return await awaitable


def _group_send_from_sync(layer, group: str, message: dict) -> None:
    if isinstance(layer, InMemoryChannelLayer):
        # Its queues belong to the server's event loop, which async_to_sync reaches from the server's threads.
        async_to_sync(layer_call)(layer.group_send(group, message))
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("broadcast() blocks: call it from sync code, or await the channel layer directly")
    # channels_redis keeps a connection pool per event loop: one loop for the whole process keeps one pool, where
    # async_to_sync from a thread without a loop would make a loop, and a new Redis connection, for every push.
    future = asyncio.run_coroutine_threadsafe(layer_call(layer.group_send(group, message)), _PushLoop.get())
    try:
        future.result(LAYER_TIMEOUT_SECONDS + 1.0)
    except TimeoutError:
        future.cancel()
        raise


class _PushLoop:
    """One event loop per process, run forever by a daemon thread, for the pushes of sync code (Celery workers, the
    feed's threads). Made again in a forked child (Celery's prefork pool): the parent's thread does not exist there."""

    _lock = threading.Lock()
    _current: _PushLoop | None = None

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="minhos-push-loop", daemon=True)
        self.thread.start()

    def usable(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive()

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        current = cls._current
        if current is None or not current.usable():
            with cls._lock:
                current = cls._current
                if current is None or not current.usable():
                    current = cls._current = _PushLoop()
        return current.loop

    @classmethod
    def after_fork_in_child(cls) -> None:
        # A lock held by another thread at the fork would never be released in the child.
        cls._lock = threading.Lock()
        cls._current = None


os.register_at_fork(after_in_child=_PushLoop.after_fork_in_child)


# ---- stream state: up or down, since when, logged on each change only ---------------------------------------------

@dataclass(frozen=True)
class StreamState:
    up: bool
    since: datetime
    error: str | None = None  # what made it go down
    dropped: int = 0  # pushes dropped since it went down

    def as_dict(self) -> dict:
        return {"status": "up" if self.up else "down", "since": self.since.isoformat().replace("+00:00", "Z"),
                "error": self.error, "dropped": self.dropped}


_state_lock = threading.Lock()
_state = StreamState(up=True, since=datetime.now(UTC))


def stream_state() -> StreamState:
    """This process's view of the live stream: up or down, since when, why, and how many pushes it dropped."""
    return _state


def stream_down(error: BaseException, *, during: str, dropped: int = 0) -> None:
    """Record that the channel layer could not be reached; only the first failure of an outage is logged."""
    global _state
    with _state_lock:
        was_up = _state.up
        if was_up:
            _state = StreamState(up=False, since=datetime.now(UTC), error=_describe(error), dropped=dropped)
        elif dropped:
            _state = StreamState(up=False, since=_state.since, error=_state.error, dropped=_state.dropped + dropped)
    if was_up:
        logger.warning("Live stream down: the channel layer is unreachable (%s, during %s). Pushes are dropped and "
                       "websockets refused with 4503 until it answers; clients catch up when they reconnect.",
                       _describe(error), during)


def stream_up() -> None:
    """Record that the channel layer answered; logs the end of an outage, once."""
    global _state
    if _state.up:  # the common case, without the lock
        return
    with _state_lock:
        previous = _state
        if previous.up:
            return
        _state = StreamState(up=True, since=datetime.now(UTC))
    logger.info("Live stream back: the channel layer answers again after %.1f s down (%d pushes dropped).",
                (_state.since - previous.since).total_seconds(), previous.dropped)


def _after_fork_in_child() -> None:
    global _state_lock
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
