"""The Redis channel layer, made safe for a quiet market and for a cancelled receive.

1. channels_redis waits for a message with BZPOPMIN for `brpop_timeout` (5 s), then waits again; redis-py reads every
   reply within the connection's socket timeout (5 s by default). Equal, a market with nothing pushed for 5 s races
   the two, and under load the read timeout wins: the receive raises redis' TimeoutError, which the market consumer
   must take for Redis being unreachable (it closes the dashboard with 4503). Here the blocking wait is a quarter of
   the read timeout, so an empty wait always comes back first; a Redis that really hangs still fails the read.
2. redis-py sends each command under `asyncio.wait_for`, which on Python 3.11 returns the result and drops a
   cancellation that arrives as the send completes (fixed in 3.12). A consumer cancelled there (its client left) went
   on receiving for ever, holding the layer's receive lock: no other dashboard of the process got a message again,
   and the channel never left its groups. The connections here send under `asyncio.timeout`, which lets it through.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from channels_redis import core
from redis._defaults import DEFAULT_SOCKET_TIMEOUT
from redis.asyncio import connection as redis_connection
from redis.exceptions import ConnectionError, TimeoutError  # redis-py's, as its callers expect


def read_timeout(host: dict) -> float | None:
    """The socket timeout a channels_redis host entry gives its connections (None: reads wait for ever)."""
    if "socket_timeout" in host:
        return host["socket_timeout"]
    query = parse_qs(urlsplit(host.get("address", "")).query)
    if "socket_timeout" in query:
        return float(query["socket_timeout"][-1])
    return DEFAULT_SOCKET_TIMEOUT


class _CancellableSend:
    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout or None):
                await self._send_packed_command(command)
        except asyncio.TimeoutError:
            await self.disconnect(nowait=True)
            raise TimeoutError("Timeout writing to socket") from None
        except OSError as error:
            await self.disconnect(nowait=True)
            raise ConnectionError(f"Error while writing to socket: {error}") from error
        except BaseException:
            # Part of a command may be on the wire (a cancellation): the connection cannot be reused.
            await self.disconnect(nowait=True)
            raise


class Connection(_CancellableSend, redis_connection.Connection):
    pass


class SSLConnection(_CancellableSend, redis_connection.SSLConnection):
    pass


class UnixDomainSocketConnection(_CancellableSend, redis_connection.UnixDomainSocketConnection):
    pass


CANCELLABLE = {redis_connection.Connection: Connection, redis_connection.SSLConnection: SSLConnection,
               redis_connection.UnixDomainSocketConnection: UnixDomainSocketConnection}


def _cancellable(host: dict) -> dict:
    """The host entry with its URL spelled out as connection options (a URL's scheme would choose redis-py's own
    connection class) and the cancellable connection class of its kind."""
    host = dict(host)
    if "address" in host:
        host.update(redis_connection.parse_url(host.pop("address")))
    kind = host.get("connection_class", redis_connection.Connection)
    host["connection_class"] = CANCELLABLE.get(kind, kind)
    return host


class RedisChannelLayer(core.RedisChannelLayer):
    def __init__(self, hosts=None, **kwargs: Any):
        super().__init__(hosts=hosts, **kwargs)
        timeouts = [timeout for timeout in map(read_timeout, self.hosts) if timeout]
        if timeouts:
            self.brpop_timeout = min(self.brpop_timeout, min(timeouts) / 4)
        if sys.version_info < (3, 12):
            self.hosts = [_cancellable(host) for host in self.hosts]
