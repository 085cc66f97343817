"""The bundled bar sources: synthetic (continues the stored series), stored-bar replay, file replay."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from trading import selectors
from trading.domain.bars import BarData, read_bar_file, validate_bars
from trading.domain.synthetic import SyntheticBarSource as _SyntheticBarSource
from trading.models import Instrument

DEFAULT_START_PRICE = 18_000.0


class SyntheticSource(_SyntheticBarSource):
    """Generated bars that continue after the last stored bar of the market (or from now if there is none)."""

    already_stored = False

    @classmethod
    def continuing(cls, *, instrument: Instrument, timeframe: str, seed: int, now: datetime) -> SyntheticSource:
        latest = selectors.bar_latest(instrument=instrument, timeframe=timeframe)
        return cls(
            after=latest.timestamp if latest else now,
            last_close=float(latest.close) if latest else DEFAULT_START_PRICE,
            tick_size=float(instrument.tick_size),
            seed=seed,
            timeframe=timeframe,
        )


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

    def __init__(self, *, path: str | Path, tz: str | None = None, columns: dict[str, str] | None = None):
        self.frame = validate_bars(read_bar_file(path, tz=tz, columns=columns)).frame

    def __iter__(self) -> Iterator[BarData]:
        for row in self.frame.itertuples(index=False):
            yield BarData(row.timestamp.to_pydatetime(), row.open, row.high, row.low, row.close, row.volume)
