"""The bundled bar sources: synthetic (continues the stored series), stored-bar replay, file replay."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

from trading import selectors, services
from trading.domain.bars import BarData, read_bar_file, validate_bars
from trading.domain.synthetic import SyntheticBarSource as _SyntheticBarSource
from trading.domain.synthetic import RegimeShift, SyntheticParams, generate_bars_with_state
from trading.models import Instrument

DEFAULT_START_PRICE = 18_000.0


class SyntheticSource(_SyntheticBarSource):
    """Generated bars that continue after the last stored bar of the market (or from now if there is none).

    With a planted signal, when the stored series is this generator's own output for the seed (the history
    `generate_bars --demo-signal` stored, plus what earlier runs of this feed added), the source regenerates it
    to recover the process state, the signal in force included, and continues it exactly. Otherwise (other
    bars, another seed) it starts the process afresh from the last close.
    """

    already_stored = False
    # Generated, not observed: at pace 0 it runs ahead of the wall clock on purpose, so the feed holds it to the
    # earliest bar time only (services.bar_store_closed).
    simulated = True

    @classmethod
    def continuing(cls, *, instrument: Instrument, timeframe: str, seed: int, now: datetime,
                   params: SyntheticParams = SyntheticParams(),
                   shift: RegimeShift | None = None) -> SyntheticSource:
        latest = selectors.bar_latest(instrument=instrument, timeframe=timeframe)
        tick_size = float(instrument.tick_size)
        state = _stored_series_state(instrument=instrument, timeframe=timeframe, seed=seed, params=params,
                                     tick_size=tick_size, latest=latest) if latest and params.planted else None
        source = cls(
            after=latest.timestamp if latest else now,
            last_close=float(latest.close) if latest else DEFAULT_START_PRICE,
            tick_size=tick_size,
            seed=seed,
            timeframe=timeframe,
            params=params,
            state=state,
            shift=shift,
        )
        source.continues_exactly = state is not None
        return source


def _stored_series_state(*, instrument, timeframe, seed, params, tick_size, latest):
    """The generator state after the stored series, if regenerating it reproduces its last bar; else None."""
    bars = selectors.bars_in_range(instrument=instrument, timeframe=timeframe)
    first = bars.first()
    stamps = pd.DatetimeIndex(list(bars.values_list("timestamp", flat=True)))
    try:
        frame, state = generate_bars_with_state(stamps, seed=seed, start_price=float(first.open),
                                                tick_size=tick_size, params=params, timeframe=timeframe)
    except ValueError:
        return None
    last = frame.iloc[-1]
    stored = (latest.timestamp, float(latest.open), float(latest.high), float(latest.low), float(latest.close),
              float(latest.volume))
    made = (last["timestamp"].to_pydatetime(), float(last["open"]), float(last["high"]), float(last["low"]),
            float(last["close"]), float(last["volume"]))
    return state if made == stored else None


class StoredBarSource:
    """Replays bars already in the database, oldest first, from `start` (inclusive) to `end` (exclusive)."""

    name = "stored"
    already_stored = True
    page_size = 500

    def __init__(self, *, instrument: Instrument, timeframe: str, start: datetime | None = None,
                 end: datetime | None = None):
        self.instrument, self.timeframe, self.start, self.end = instrument, timeframe, start, end

    def __iter__(self) -> Iterator[BarData]:
        # Keyset pages rather than one long cursor: the feed may pause for hours between bars.
        start = self.start
        first_page = True
        while True:
            bars = selectors.bars_in_range(instrument=self.instrument, timeframe=self.timeframe, start=start,
                                           end=self.end)
            if not first_page:
                bars = bars.filter(timestamp__gt=start)
            page = list(bars[: self.page_size])
            if not page:
                return
            for bar in page:
                yield BarData(bar.timestamp, float(bar.open), float(bar.high), float(bar.low), float(bar.close),
                              float(bar.volume))
            start, first_page = page[-1].timestamp, False


class FileBarSource:
    """Replays a CSV or Parquet file as if live; the whole file is validated before the first bar goes out."""

    name = "file"
    already_stored = False

    def __init__(self, *, path: str | Path, tz: str | None = None, columns: dict[str, str] | None = None,
                 date_format: str | None = None, tick_size: float | None = None):
        earliest, latest = services.bar_time_bounds()
        self.frame = validate_bars(
            read_bar_file(path, tz=tz, columns=columns, date_format=date_format),
            earliest=earliest, latest=latest, tick_size=tick_size,
        ).frame

    def __iter__(self) -> Iterator[BarData]:
        for row in self.frame.itertuples(index=False):
            yield BarData(row.timestamp.to_pydatetime(), row.open, row.high, row.low, row.close, row.volume)
