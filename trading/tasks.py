"""Celery tasks of the trading app; each loads what it needs and calls one service or selector."""
from celery import shared_task

from . import realtime, selectors
from .models import FeedStatus


@shared_task(name="trading.tasks.feed_status_broadcast")
def feed_status_broadcast() -> int:
    """Push every feed's status to the dashboards watching it (the strip shows stopped feeds too)."""
    pushed = 0
    for symbol, timeframe in FeedStatus.objects.values_list("instrument__symbol", "timeframe"):
        payload = selectors.feed_status_payload(symbol=symbol, timeframe=timeframe)
        realtime.broadcast(symbol, timeframe, "feed.status", payload)
        pushed += 1
    return pushed
