"""Websocket routes of the trading app."""
from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"^ws/market/(?P<symbol>[A-Z0-9._-]+)/(?P<timeframe>[0-9]+[mhd])/$", consumers.MarketConsumer.as_asgi()),
]
