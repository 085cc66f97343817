"""Websocket routes of every app."""
from trading.routing import websocket_urlpatterns as trading_ws

websocket_urlpatterns = [*trading_ws]
