"""Celery tasks of the trading app; each loads what it needs and calls one service or selector."""
from celery import shared_task

from . import realtime, selectors, services
from .brokers import broker_get
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


@shared_task(name="trading.tasks.broker_process_bar", acks_late=True)
def broker_process_bar(bar_id: int) -> int:
    """Fill approved entries, run brackets and mark equity on a closed bar; safe to retry (idempotent)."""
    return len(broker_get().on_bar(bar_id))


@shared_task(name="trading.tasks.size_prediction", acks_late=True)
def size_prediction(prediction_id: int) -> list[int]:
    """Turn a prediction into a recommendation per account; a retry finds the one already made."""
    return [r.pk for r in services.recommendations_create_for_prediction(prediction_id=prediction_id)]
