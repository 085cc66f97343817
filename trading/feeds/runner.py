"""Runs a bar source as a live feed: store (or look up) each bar, announce it, keep the heartbeat, keep pace."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async

from trading import services
from trading.domain.bars import InvalidBars
from trading.feeds import BarSource
from trading.models import Instrument

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2.0
_END = object()


async def run_feed(
    *,
    instrument: Instrument,
    timeframe: str,
    source: BarSource,
    pace_seconds: float = 1.0,
    max_bars: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Emit bars from `source` until it ends, `max_bars` were announced, or `stop` is set. Returns the count."""
    if pace_seconds < 0:
        raise ValueError(f"pace must be >= 0 seconds, got {pace_seconds}")
    stop = stop or asyncio.Event()
    await sync_to_async(services.feed_status_start)(
        instrument=instrument, timeframe=timeframe, source=source.name, pace_seconds=pace_seconds
    )
    heartbeat = asyncio.create_task(_beat(instrument, timeframe, stop))
    iterator = iter(source)
    emitted = 0
    try:
        while not stop.is_set() and (max_bars is None or emitted < max_bars):
            # Sources may block (a live adapter) or touch the database: never on the event loop.
            bar = await sync_to_async(next)(iterator, _END)
            if bar is _END:
                logger.info("%s %s feed: source %s ended after %d bars", instrument, timeframe, source.name, emitted)
                break
            try:
                stored = await sync_to_async(services.feed_publish_bar)(
                    instrument=instrument, timeframe=timeframe, bar=bar, already_stored=source.already_stored
                )
            except (InvalidBars, services.OutOfOrderBar) as exc:
                logger.warning("%s %s feed: bar at %s skipped: %s", instrument, timeframe, bar.timestamp, exc)
                continue
            if stored is None:
                continue
            emitted += 1
            if pace_seconds:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pace_seconds)
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await sync_to_async(services.feed_status_stop)(instrument=instrument, timeframe=timeframe)
    return emitted


async def _beat(instrument: Instrument, timeframe: str, stop: asyncio.Event) -> None:
    # A separate heartbeat so a slow source (one bar a minute) still shows as running.
    while not stop.is_set():
        await sync_to_async(services.feed_status_heartbeat)(instrument=instrument, timeframe=timeframe)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_SECONDS)
