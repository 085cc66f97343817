"""Writes of trading data: the one ingestion path for bars (files, generator, feeds), feed status, demo user."""
from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import realtime, selectors
from ..bulk import ChangedBar, upsert_bars
from ..domain.bars import BarData, RowError, frame_from_bars, read_bar_file, tick_size_inferred, validate_bars
from ..domain.timeframes import timeframe_delta
from ..events import bar_closed
from ..models import Bar, BarWorkflow, FeedStatus, Instrument

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    symbol: str
    timeframe: str
    received: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    sorted_input: bool = True
    seconds: float = 0.0
    snapped: int = 0  # rows with a price moved onto the instrument's tick (float noise such as 16890.250000001)
    rounded: int = 0  # rows with a price or volume rounded to the decimals the database keeps
    tick_size: str = ""
    changed: list[ChangedBar] = field(default_factory=list)  # the first of the `updated` bars, what changed in each

    @property
    def stored(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def __str__(self) -> str:
        order = "" if self.sorted_input else " (input was out of order; sorted)"
        adjusted = "".join((
            f"; {self.snapped} row(s) with prices snapped to the {self.tick_size} tick" if self.snapped else "",
            f"; {self.rounded} row(s) with values rounded to the stored decimals" if self.rounded else "",
        ))
        return (
            f"{self.symbol} {self.timeframe}: {self.received} rows read, {self.inserted} inserted, "
            f"{self.updated} updated, {self.unchanged} unchanged, {len(self.rejected)} rejected"
            f" in {self.seconds:.2f}s{order}{adjusted}"
        )


class OutOfOrderBar(ValueError):
    """A live bar that is not newer than the last stored one."""


def bars_ingest(
    *,
    instrument: Instrument,
    timeframe: str,
    frame: pd.DataFrame,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_total: Callable[[int], None] | None = None,
) -> IngestReport:
    """Validate a bar frame and upsert it in one transaction: all of it or, on an invalid row, nothing.

    Raises trading.domain.bars.InvalidBars (every bad row with its number) unless skip_invalid.
    `progress_total` hears the number of valid rows once, before `progress` hears each stored chunk's size.
    """
    started = time.perf_counter()
    timeframe_delta(timeframe)  # unknown timeframe -> ValueError naming it
    earliest, latest = bar_time_bounds()
    validated = validate_bars(frame, skip_invalid=skip_invalid, earliest=earliest, latest=latest,
                              tick_size=float(instrument.tick_size))
    if progress_total:
        progress_total(len(validated.frame))
    with transaction.atomic():
        counts = upsert_bars(
            instrument_id=instrument.pk, timeframe=timeframe, frame=validated.frame, progress=progress
        )
    return IngestReport(
        symbol=instrument.symbol,
        timeframe=timeframe,
        received=len(frame),
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        rejected=validated.rejected,
        sorted_input=validated.was_sorted,
        seconds=time.perf_counter() - started,
        snapped=validated.snapped,
        rounded=validated.rounded,
        tick_size=f"{Decimal(str(instrument.tick_size)).normalize():f}",
        changed=counts.changed,
    )


def bar_time_bounds(*, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The plausible range of bar times: MINHOS_BAR_EARLIEST to now + MINHOS_BAR_MAX_AHEAD_SECONDS (UTC)."""
    try:
        earliest = pd.Timestamp(settings.MINHOS_BAR_EARLIEST)
        ahead = timedelta(seconds=float(settings.MINHOS_BAR_MAX_AHEAD_SECONDS))
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"MINHOS_BAR_EARLIEST must be an ISO date or time and MINHOS_BAR_MAX_AHEAD_SECONDS a number ({exc})"
        ) from exc
    earliest = earliest.tz_localize("UTC") if earliest.tzinfo is None else earliest.tz_convert("UTC")
    return earliest.to_pydatetime(), (now or timezone.now()) + ahead


def bars_import_file(
    *,
    path: str | Path,
    symbol: str,
    timeframe: str,
    tz: str | None = None,
    columns: dict[str, str] | None = None,
    date_format: str | None = None,
    create: bool = False,
    tick_size: str | Decimal | None = None,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_total: Callable[[int], None] | None = None,
) -> IngestReport:
    """Import a CSV or Parquet file of bars for one instrument and timeframe. With `create`, an unknown instrument is
    created with `tick_size`, by default the coarsest the file's prices are on (0.01 unless they need a finer
    decimal: `tick_size_inferred`), and the file's prices must be on that tick."""
    timeframe_delta(timeframe)
    if not create:
        selectors.instrument_get(symbol=symbol)  # an unknown symbol fails before a long read
    frame = read_bar_file(path, tz=tz, columns=columns, date_format=date_format)
    # One transaction with the bars: a refused file must not leave a newly created instrument behind.
    with transaction.atomic():
        instrument = instrument_get_or_create(symbol=symbol, create=create, tick_size=tick_size,
                                              inferred_tick=lambda: tick_size_inferred(frame))
        return bars_ingest(
            instrument=instrument, timeframe=timeframe, frame=frame, skip_invalid=skip_invalid,
            progress=progress, progress_total=progress_total,
        )


DEFAULT_TICK_SIZE = Decimal("0.01")


class TickSizeMismatch(ValueError):
    """A tick size given for an instrument that exists with another: it is not changed by an import."""


def instrument_get_or_create(
    *, symbol: str, create: bool = False, tick_size: str | Decimal | None = None,
    inferred_tick: Callable[[], str] | None = None,
) -> Instrument:
    """The instrument, or with create a new one with `tick_size` (else `inferred_tick()`, else 0.01) and $1 per
    point, to check in the admin. A `tick_size` that differs from an existing instrument's is refused
    (TickSizeMismatch), not applied."""
    try:
        instrument = selectors.instrument_get(symbol=symbol)
    except selectors.UnknownInstrument as exc:
        if not create or isinstance(exc, selectors.BacktestMarket):  # a backtest's market is no one's to import into
            raise
    else:
        if tick_size is not None and Decimal(str(tick_size)) != instrument.tick_size:
            raise TickSizeMismatch(
                f"{symbol} exists with tick size {instrument.tick_size.normalize():f}; a tick size is given only for "
                "an instrument the import creates (change it in the admin)")
        return instrument
    if tick_size is None and inferred_tick is not None:
        tick_size = inferred_tick()
    tick = DEFAULT_TICK_SIZE if tick_size is None else Decimal(str(tick_size))
    instrument = Instrument(symbol=symbol, name=symbol, tick_size=tick, point_value="1")
    instrument.full_clean()  # a bad symbol or tick is refused with the validator's message
    instrument.save()
    # Said once the instrument exists for good: inside the import's transaction, a refused file rolls it back.
    transaction.on_commit(lambda: logger.warning(
        "created instrument %s with tick size %s and a default point value; check them in the admin", symbol,
        f"{tick.normalize():f}"))
    return instrument


def bar_store_closed(*, instrument: Instrument, timeframe: str, bar: BarData, simulated: bool = False) -> Bar | None:
    """Store one bar from a live feed and announce it once committed.

    A repeat of the last stored bar with the same values is ignored (None); a bar older than the
    last stored one, or a different bar at its time, is refused: late bars must not trigger decisions.
    A bar outside the plausible time range is refused (`bar_time_bounds`); a `simulated` source (the synthetic
    generator, which at pace 0 runs ahead of the wall clock on purpose) is held to the earliest bound only.
    """
    timeframe_delta(timeframe)
    earliest, latest = bar_time_bounds()
    frame = validate_bars(  # raises InvalidBars with the reason
        frame_from_bars([bar]), earliest=earliest, latest=None if simulated else latest,
        tick_size=float(instrument.tick_size),
    ).frame
    row = frame.iloc[0]
    with transaction.atomic():
        latest = (
            Bar.objects.select_for_update()
            .filter(instrument=instrument, timeframe=timeframe)
            .order_by("-timestamp")
            .first()
        )
        timestamp = row["timestamp"].to_pydatetime()
        if latest is not None and timestamp <= latest.timestamp:
            if timestamp == latest.timestamp and _same_values(latest, row):
                return None
            raise OutOfOrderBar(
                f"{instrument.symbol} {timeframe} bar at {timestamp.isoformat()} is not after the last stored bar "
                f"at {latest.timestamp.isoformat()}"
            )
        upsert_bars(instrument_id=instrument.pk, timeframe=timeframe, frame=frame)
        stored = Bar.objects.select_related("instrument").get(
            instrument=instrument, timeframe=timeframe, timestamp=timestamp
        )
        # The outbox of the decision workflow: written with the bar, so the bar is decided even if the message that
        # starts its workflow is lost (trading.workflow).
        now = timezone.now()
        BarWorkflow.objects.create(bar=stored, instrument=instrument, timeframe=timeframe, timestamp=timestamp,
                                   stored_at=now, touched_at=now)
        transaction.on_commit(lambda: bar_emit_closed(bar=stored))
    return stored


def _same_values(bar: Bar, row: pd.Series) -> bool:
    # Compared at the stored precision: a repeat of a bar with more decimals than the column keeps is still a repeat.
    return all(
        abs(float(getattr(bar, c)) - round(float(row[c]), Bar._meta.get_field(c).decimal_places)) < 1e-9
        for c in ("open", "high", "low", "close", "volume")
    )


def bar_emit_closed(*, bar: Bar) -> None:
    """Announce a stored bar as closed (feeds after storing it; the stored-bar replay without storing): trading's
    receiver shows it and starts its decision workflow."""
    # One failing subscriber must neither stop the feed nor starve the other subscribers.
    for receiver, result in bar_closed.send_robust(sender=Bar, bar=bar):
        if isinstance(result, Exception):
            logger.error("bar_closed receiver %r failed for %s", receiver, bar, exc_info=result)


def feed_status_start(*, instrument: Instrument, timeframe: str, source: str, pace_seconds: float) -> FeedStatus:
    now = timezone.now()
    status, _ = FeedStatus.objects.update_or_create(
        instrument=instrument,
        timeframe=timeframe,
        defaults={
            "source": source,
            "running": True,
            "started_at": now,
            "heartbeat_at": now,
            "pace_seconds": pace_seconds,
            "bars_emitted": 0,
        },
    )
    return status


def feed_publish_bar(
    *, instrument: Instrument, timeframe: str, bar: BarData, already_stored: bool, simulated: bool = False
) -> Bar | None:
    """One bar from a feed source: stored and announced (or, for a replay, looked up and announced).

    Its arrival is recorded in the same transaction, before it is announced: the bar's workflow (inline in embedded
    mode) reads the market's data freshness from it, and must not read the previous bar's arrival instead."""
    with transaction.atomic():
        if already_stored:
            stored = Bar.objects.select_related("instrument").get(
                instrument=instrument, timeframe=timeframe, timestamp=bar.timestamp
            )
            transaction.on_commit(lambda: bar_emit_closed(bar=stored))
        else:
            stored = bar_store_closed(instrument=instrument, timeframe=timeframe, bar=bar, simulated=simulated)
        if stored is not None:
            feed_status_record_bar(instrument=instrument, timeframe=timeframe, bar=stored)
    return stored


def feed_status_heartbeat(*, instrument: Instrument, timeframe: str) -> None:
    FeedStatus.objects.filter(instrument=instrument, timeframe=timeframe).update(heartbeat_at=timezone.now())


def feed_status_record_bar(*, instrument: Instrument, timeframe: str, bar: Bar) -> None:
    now = timezone.now()
    FeedStatus.objects.filter(instrument=instrument, timeframe=timeframe).update(
        heartbeat_at=now, last_bar_received_at=now, last_bar_timestamp=bar.timestamp, running=True,
        bars_emitted=F("bars_emitted") + 1,
    )


def feed_status_stop(*, instrument: Instrument, timeframe: str) -> None:
    FeedStatus.objects.filter(instrument=instrument, timeframe=timeframe).update(running=False, heartbeat_at=timezone.now())


DEMO_USERNAME = "demo"


def demo_user_ensure() -> tuple[object, str | None]:
    """The demo login for the embedded mode: (user, password) when just created, (user, None) if it existed."""
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    user = User.objects.create_user(username=DEMO_USERNAME, password=password, is_staff=True, is_superuser=True)
    return user, password


def market_push(*, symbol: str, timeframe: str, message_type: str, payload: dict) -> None:
    """Push a message to the dashboards watching a market (other apps use this, not the channel layer)."""
    realtime.broadcast(symbol, timeframe, message_type, payload)
