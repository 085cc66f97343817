"""Websocket consumer for live market data: authenticate, join one group, forward its messages."""
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import realtime, selectors

# Application close codes (4000-4999): the browser can tell "log in again" from "no such market".
CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNKNOWN_MARKET = 4404


class MarketConsumer(AsyncJsonWebsocketConsumer):
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
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        status = await database_sync_to_async(selectors.feed_status_payload)(symbol=self.symbol, timeframe=self.timeframe)
        await self.send_json({"type": "feed.status", **status})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The stream is one-way; clients have nothing to send.
        pass

    async def bar_closed(self, event):
        await self.send_json({"type": "bar.closed", **event["payload"]})

    async def feed_status(self, event):
        await self.send_json({"type": "feed.status", **event["payload"]})

    async def prediction_created(self, event):
        await self.send_json({"type": "prediction.created", **event["payload"]})

    async def recommendation_updated(self, event):
        await self.send_json({"type": "recommendation.updated", **event["payload"]})

    async def account_updated(self, event):
        await self.send_json({"type": "account.updated", **event["payload"]})
