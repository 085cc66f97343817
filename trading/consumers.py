"""Websocket consumer for live market data: authenticate, join the market's group and the group every page joins
(alerts), forward their messages; on request, send what a reconnecting client missed."""
import asyncio
import functools
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework.exceptions import ParseError

from minhos_site.api_fields import control_character_problem
from minhos_site.parsers import RepeatedField, json_loads_checked

from . import realtime, selectors, stream_catchup

# Application close codes (4000-4999): the browser can tell "log in again" from "no such market" from "the live
# stream is down for now, try again later".
CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNKNOWN_MARKET = 4404
CLOSE_STREAM_UNAVAILABLE = 4503


class MarketConsumer(AsyncJsonWebsocketConsumer):
    joined = False
    in_groups = False  # a join was sent and the groups not left yet
    layer_error = None  # set once the channel layer failed this connection

    # AsyncConsumer.__call__ sets `channel_receive` to the layer's receive for this connection and waits on it beside
    # the client's messages; an error there would end the connection with a traceback (a handshake answered 500).
    # Wrapped, an unreachable layer arrives as one "stream.unavailable" message, handled in order with the others.
    @property
    def channel_receive(self):
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive):
        self._channel_receive = functools.partial(self._receive_from_layer, receive)

    async def _receive_from_layer(self, receive):
        if self.layer_error is None:
            try:
                return await receive()
            except realtime.UNREACHABLE as error:
                self.layer_error = error
                return {"type": "stream.unavailable"}
        await asyncio.get_running_loop().create_future()  # nothing more from a failed layer: wait to be cancelled

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        self.symbol, self.timeframe = kwargs["symbol"], kwargs["timeframe"]
        if not await database_sync_to_async(selectors.market_exists)(symbol=self.symbol, timeframe=self.timeframe):
            await self.close(code=CLOSE_UNKNOWN_MARKET)
            return
        self.group = realtime.market_group(self.symbol, self.timeframe)
        if self.layer_error is None:
            # A member from the first join sent: a join that timed out may still be applied by Redis.
            self.in_groups = True
            try:
                for group in (self.group, realtime.EVERYONE_GROUP):
                    await realtime.layer_call(self.channel_layer.group_add(group, self.channel_name))
            except realtime.UNREACHABLE as error:
                self.layer_error = error
        if self.layer_error is not None:
            await self._close_stream_unavailable()
            return
        self.joined = True
        realtime.stream_up()
        await self.accept()
        status = await database_sync_to_async(selectors.feed_status_payload)(symbol=self.symbol, timeframe=self.timeframe)
        await self.send_json({"type": "feed.status", **status})

    async def _close_stream_unavailable(self):
        """Accepted, then closed: a refused handshake would hide the code from the browser."""
        realtime.stream_down(self.layer_error, during="a websocket connection")
        if not self.joined:
            await self.accept()
        await self.close(code=CLOSE_STREAM_UNAVAILABLE, reason="live stream unavailable")

    async def stream_unavailable(self, event):
        if self.joined:
            await self._close_stream_unavailable()
        # Before the handshake, connect() sees layer_error and refuses it.

    async def __call__(self, scope, receive, send):
        # A send to a client that has gone (the server raises, e.g. uvicorn's ClientDisconnected during a resume's
        # catch-up) ends the consumer without websocket.disconnect, so disconnect() never runs: leave the groups here
        # too, or the dead channel stays a member for the layer's group expiry (a day) and this process buffers
        # every push to it (up to the layer's capacity each) and sends it every push.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._leave_groups()

    async def disconnect(self, code):
        await self._leave_groups()

    async def _leave_groups(self):
        # Also after a layer error: a slow Redis (a join or a read that timed out) has the channel as a member, and
        # would send it every push for the group expiry. Each try is bounded; a Redis that is down refuses at once.
        if not self.in_groups:
            return
        self.in_groups = False  # once, whichever of disconnect() and the end of __call__ comes first
        for group in (self.group, realtime.EVERYONE_GROUP):
            try:
                await realtime.layer_call(self.channel_layer.group_discard(group, self.channel_name))
            except realtime.UNREACHABLE:
                pass  # the group forgets members after its expiry anyway

    # ---- from the client: only "resume" ---------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self._error("frame", "messages are JSON text frames, not binary")
            return
        try:
            content = json_loads_checked(text_data)
        except RepeatedField as exc:
            await self._error(next(iter(exc.detail)), "sent twice in one message; send it once")
            return
        except ParseError as exc:
            # Not JSON, or nested too deep (a RecursionError here ended the connection).
            await self._error("frame", f"the message is not JSON as accepted here: "
                                       f"{str(exc.detail).removeprefix('JSON parse error - ')}")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self._error("type", 'a message is a JSON object with a "type"')
            return
        if content.get("type") != "resume":
            await self._error("type", f'unknown message type {content.get("type")!r}: a client sends only "resume"')
            return
        since, problem = _parse_since(content.get("since"))
        if problem:
            await self._error("since", problem)
            return
        catchup = await database_sync_to_async(stream_catchup.stream_catchup_since)(
            symbol=self.symbol, timeframe=self.timeframe, since=since)
        for message_type, payload in catchup.messages:
            await self.send_json({"type": message_type, **payload})
        await self.send_json({"type": "resume.done", "bars": catchup.bars, "more": catchup.more})

    async def _error(self, field, message):
        await self.send_json({"type": "error", "field": field, "message": message})

    # ---- from the channel layer -----------------------------------------------------------------------------------

    # Messages forwarded as they are, touching no database: Channels' dispatch would first hop to the shared sync
    # thread to close old database connections, for every message to every socket (a fifth of the web process's
    # time with 100 dashboards open, measured by bench e2e).
    FORWARDED = frozenset({"bar.closed", "feed.status", "prediction.created", "recommendation.updated",
                           "account.updated", "monitoring.snapshot",
                           # to every page (EVERYONE_GROUP), whatever its market
                           "alert.opened", "alert.acknowledged", "alert.resolved", "retraining.decided"})

    async def dispatch(self, message):
        if message.get("type") in self.FORWARDED:
            await self.send_json({"type": message["type"], **message["payload"]})
            return
        await super().dispatch(message)


def _parse_since(value) -> tuple[datetime | None, str | None]:
    """(the time, None), or (None, what is wrong with it)."""
    if not isinstance(value, str):
        return None, '"since" is required: the ISO 8601 UTC time of the newest bar the client has'
    problem = control_character_problem(value)
    if problem:  # Python's ISO parser reads "2026-03-02T14:30:00\x00Z" as a time
        return None, f'"since" is not an ISO 8601 time: {problem}'
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        return None, f'"since" is not an ISO 8601 time: {value[:40]!r}'
    if since.tzinfo is None:
        return None, f'"since" needs a time zone (e.g. 2024-05-06T13:31:00Z): {value[:40]!r}'
    return since.astimezone(UTC), None
