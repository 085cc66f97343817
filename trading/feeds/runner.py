"""Runs a bar source as a live feed: store (or look up) each bar, announce it, keep the heartbeat, keep pace; through
a database outage the bar in hand is held and stored once the database answers, the outage logged in a few lines."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError, connections

from trading import selectors, services
from trading.domain.bars import InvalidBars
from trading.feeds import BarSource
from trading.models import Instrument

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2.0
# Skipped bars in the log: the first SKIP_LOG_BURST of each SKIP_LOG_SECONDS one by one, the rest in one summary.
SKIP_LOG_SECONDS = 60.0
SKIP_LOG_BURST = 5
# While the database cannot be reached the bar in hand is tried again this often, and the outage is summed up in one
# line this often (one line also when it starts and one when it ends, not a traceback per try).
DATABASE_RETRY_SECONDS = 1.0
OUTAGE_SUMMARY_SECONDS = 30.0
# What a lost or refused connection raises (a restart, a failover, connections refused); anything else is a bug.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)
_END = object()


async def run_feed(
    *,
    instrument: Instrument,
    timeframe: str,
    source: BarSource,
    pace_seconds: float = 1.0,
    max_bars: int | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Emit bars from `source` until it ends, `max_bars` were announced, or `stop` is set. Returns the count.

    The pace is waited after every bar the source yields, stored or skipped: a source whose bars are all refused
    (say, every one "not after the last stored bar") must not turn the feed into a busy loop.
    `clock` (seconds, monotonic) only paces the log of skipped bars.
    """
    if not (math.isfinite(pace_seconds) and pace_seconds >= 0):
        raise ValueError(f"pace must be a finite number of seconds >= 0, got {pace_seconds}")
    stop = stop or asyncio.Event()
    await database_sync_to_async(services.feed_status_start)(
        instrument=instrument, timeframe=timeframe, source=source.name, pace_seconds=pace_seconds
    )
    if not source.already_stored and not getattr(source, "simulated", False):
        await database_sync_to_async(_check_history_end)(instrument, timeframe)
    outage = _DatabaseOutage(f"{instrument} {timeframe} feed", clock)
    heartbeat = asyncio.create_task(_beat(instrument, timeframe, stop, outage))
    # Sources may block (a live adapter) or touch the database: never on the event loop, and not in the
    # shared sync thread either, where a source waiting for its next bar would hold up the heartbeat.
    loop = asyncio.get_running_loop()
    source_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-source")
    emitted = 0
    skips = _SkipLog(f"{instrument} {timeframe} feed", clock)
    simulated = bool(getattr(source, "simulated", False))
    try:
        iterator = await loop.run_in_executor(source_thread, iter, source)
        while not stop.is_set() and (max_bars is None or emitted < max_bars):
            bar = await loop.run_in_executor(source_thread, next, iterator, _END)
            if bar is _END:
                logger.info("%s %s feed: source %s ended after %d bars", instrument, timeframe, source.name, emitted)
                break
            try:
                stored = await _publish_through_outage(
                    instrument=instrument, timeframe=timeframe, bar=bar, already_stored=source.already_stored,
                    simulated=simulated, outage=outage, stop=stop,
                )
            except (InvalidBars, services.OutOfOrderBar) as exc:
                skips.skipped(bar, exc)
            except _Stopped:
                logger.warning("%s %s feed: stopped while the database could not be reached; the bar at %s was not "
                               "stored", instrument, timeframe, bar.timestamp)
                break
            else:
                if stored is not None:
                    emitted += 1
                    skips.flush()
            if pace_seconds and (max_bars is None or emitted < max_bars):  # a pace between bars, not after the last
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pace_seconds)
    finally:
        skips.flush()
        # Queued behind a source still blocked in next(), if any: the loop does not wait for it.
        source_thread.submit(connections.close_all)
        source_thread.shutdown(wait=False)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        try:
            await database_sync_to_async(services.feed_status_stop)(instrument=instrument, timeframe=timeframe)
        except DATABASE_UNREACHABLE as exc:  # stopping during an outage: the page shows the heartbeat's age instead
            logger.warning("%s %s feed: could not record that it stopped (the database cannot be reached: %s)",
                           instrument, timeframe, exc)
    return emitted


class _Stopped(Exception):
    pass


async def _publish_through_outage(*, outage: _DatabaseOutage, stop: asyncio.Event, **bar_and_market) -> object:
    """services.feed_publish_bar, tried again every DATABASE_RETRY_SECONDS while the database cannot be reached: the
    source is not read meanwhile, so no bar is skipped; a bar held through an outage is stored late, in order. The
    store is one transaction, so a try cut off by the outage left nothing behind. _Stopped if the feed is stopped
    while it waits."""
    while True:
        try:
            stored = await database_sync_to_async(services.feed_publish_bar)(**bar_and_market)
        except DATABASE_UNREACHABLE as exc:
            outage.failed(exc, during=f"storing the bar at {bar_and_market['bar'].timestamp}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=DATABASE_RETRY_SECONDS)
            if stop.is_set():
                raise _Stopped from exc
            continue
        outage.answered()
        return stored


class _DatabaseOutage:
    """A database outage as the feed tells it: one line when it starts, a summary every OUTAGE_SUMMARY_SECONDS while
    it lasts, one line when the database answers again (the bar store and the heartbeat both report here)."""

    def __init__(self, label: str, clock: Callable[[], float]):
        self.label, self.clock = label, clock
        self.started: float | None = None
        self.failures = 0
        self.line_at = 0.0

    def failed(self, exc: BaseException, *, during: str) -> None:
        now = self.clock()
        self.failures += 1
        if self.started is None:
            self.started = self.line_at = now
            logger.error("%s: the database cannot be reached (%s: %s, %s). The bar in hand is held and tried again "
                         "every %.0f s; no bar is skipped. One line every %.0f s until it answers.", self.label,
                         type(exc).__name__, str(exc).strip(), during, DATABASE_RETRY_SECONDS,
                         OUTAGE_SUMMARY_SECONDS)
        elif now - self.line_at >= OUTAGE_SUMMARY_SECONDS:
            self.line_at = now
            logger.error("%s: the database still cannot be reached after %.0f s (%d failed tries)", self.label,
                         now - self.started, self.failures)

    def answered(self) -> None:
        if self.started is not None:
            logger.warning("%s: the database answers again after %.0f s (%d failed tries); the feed goes on",
                           self.label, self.clock() - self.started, self.failures)
            self.started, self.failures = None, 0


def _check_history_end(instrument: Instrument, timeframe: str) -> None:
    # A bar stored in the future (before bar times were range-checked, say one dated 9999) makes every new bar
    # "not after the last stored bar": say so once, plainly, rather than only through the skip warnings.
    latest = selectors.bar_latest(instrument=instrument, timeframe=timeframe)
    _, latest_accepted = services.bar_time_bounds()
    if latest is not None and latest.timestamp > latest_accepted:
        logger.error(
            "%s %s feed: the last stored bar is dated %s, in the future: every new bar will be skipped as not after "
            "it until that bar is deleted (admin, Bars)", instrument, timeframe, latest.timestamp.isoformat(),
        )


class _SkipLog:
    """Logs skipped bars: the first few of each period one by one, the rest counted into one summary line."""

    def __init__(self, label: str, clock: Callable[[], float]):
        self.label, self.clock = label, clock
        self.period_start: float | None = None
        self.logged = self.unlogged = 0
        self.last = None

    def skipped(self, bar, exc: Exception) -> None:
        now = self.clock()
        if self.period_start is None or now - self.period_start >= SKIP_LOG_SECONDS:
            self.flush()
            self.period_start, self.logged = now, 0
        if self.logged < SKIP_LOG_BURST:
            self.logged += 1
            logger.warning("%s: bar at %s skipped: %s", self.label, bar.timestamp, exc)
        else:
            self.unlogged += 1
            self.last = (bar.timestamp, exc)

    def flush(self) -> None:
        if self.unlogged:
            timestamp, exc = self.last
            logger.warning("%s: %d more bar(s) skipped, not logged one by one; the last, at %s: %s",
                           self.label, self.unlogged, timestamp, exc)
            self.unlogged = 0


async def _beat(instrument: Instrument, timeframe: str, stop: asyncio.Event, outage: _DatabaseOutage) -> None:
    # A separate heartbeat so a slow source (one bar a minute) still shows as running.
    while not stop.is_set():
        try:
            await database_sync_to_async(services.feed_status_heartbeat)(instrument=instrument, timeframe=timeframe)
        except DATABASE_UNREACHABLE as exc:  # told with the outage, not a traceback every beat
            outage.failed(exc, during="the heartbeat")
        except Exception:  # one lost beat must not end the later ones
            logger.exception("%s %s feed: heartbeat failed", instrument, timeframe)
        else:
            outage.answered()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_SECONDS)
