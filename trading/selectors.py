"""Reads of trading data: instruments, the last N bars, feed status."""
from datetime import datetime

import pandas as pd
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .domain.timeframes import TIMEFRAMES
from .models import Bar, FeedStatus, Instrument


class UnknownInstrument(LookupError):
    def __init__(self, symbol: str):
        super().__init__(f"unknown instrument symbol {symbol!r}")
        self.symbol = symbol


def instrument_get(*, symbol: str) -> Instrument:
    try:
        return Instrument.objects.get(symbol=symbol)
    except Instrument.DoesNotExist:
        raise UnknownInstrument(symbol) from None


def instrument_list_active() -> QuerySet[Instrument]:
    return Instrument.objects.filter(active=True)


def market_exists(*, symbol: str, timeframe: str) -> bool:
    return timeframe in TIMEFRAMES and Instrument.objects.filter(symbol=symbol, active=True).exists()


def bars_last_n(*, instrument: Instrument, timeframe: str, n: int) -> list[Bar]:
    """The newest n bars, oldest first."""
    newest = Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("-timestamp")[:n]
    return list(reversed(newest))


def bars_in_range(
    *, instrument: Instrument, timeframe: str, start: datetime | None = None, end: datetime | None = None
) -> QuerySet[Bar]:
    """Bars with start <= timestamp < end, oldest first."""
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe)
    if start is not None:
        bars = bars.filter(timestamp__gte=start)
    if end is not None:
        bars = bars.filter(timestamp__lt=end)
    return bars.order_by("timestamp")


def bar_latest(*, instrument: Instrument, timeframe: str) -> Bar | None:
    return Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("-timestamp").first()


def feed_is_alive(status: FeedStatus | None, *, now: datetime) -> bool:
    """Running flag set and a heartbeat recent enough: a killed feed process cannot clear its own flag."""
    if status is None or not status.running or status.heartbeat_at is None:
        return False
    allowed = max(settings.MINHOS_FEED_STALE_SECONDS, 3 * status.pace_seconds)
    return (now - status.heartbeat_at).total_seconds() <= allowed


def feed_status_payload(*, symbol: str, timeframe: str, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    status = FeedStatus.objects.filter(instrument__symbol=symbol, timeframe=timeframe).first()
    received = status.last_bar_received_at if status else None
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "running": feed_is_alive(status, now=now),
        "source": status.source if status else None,
        "pace_seconds": status.pace_seconds if status else None,
        "bars_emitted": status.bars_emitted if status else 0,
        "last_bar_received_at": received.isoformat() if received else None,
        "last_bar_timestamp": status.last_bar_timestamp.isoformat() if status and status.last_bar_timestamp else None,
        "last_bar_age_seconds": round((now - received).total_seconds(), 1) if received else None,
        "server_time": now.isoformat(),
    }


def instrument_list() -> QuerySet[Instrument]:
    """Every instrument, active or not, by symbol: API clients see the `active` flag and decide."""
    return Instrument.objects.order_by("symbol")


def bars_frame(
    *, instrument: Instrument, timeframe: str, end_at: datetime | None = None, last_n: int | None = None
) -> pd.DataFrame:
    """Bars as a float frame (timestamp, open, high, low, close, volume), oldest first: what ML reads.

    `end_at` keeps bars up to and including that time; `last_n` keeps the newest n of those.
    """
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe)
    if end_at is not None:
        bars = bars.filter(timestamp__lte=end_at)
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    if last_n is not None:
        rows = list(bars.order_by("-timestamp").values_list(*columns)[:last_n])[::-1]
    else:
        rows = list(bars.order_by("timestamp").values_list(*columns))
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns[1:]:
        frame[column] = frame[column].astype("float64")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame
