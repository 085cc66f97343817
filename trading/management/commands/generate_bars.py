"""Generate synthetic session bars for an instrument and store them through the ingestion service."""
from argparse import ArgumentTypeError
from datetime import datetime, timedelta, timezone

import pandas as pd
from django.core.management.base import BaseCommand, CommandError

from minhos_site.api_fields import control_character_problem
from trading import selectors, services
from trading.domain.synthetic import DEMO_SIGNAL, SyntheticParams, generate_bars, session_timestamps_between
from trading.domain.timeframes import TIMEFRAMES, timeframe_delta

DEFAULT_START_PRICE = 18_000.0


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ArgumentTypeError(f"must be a positive whole number of days, got {text!r}")
    return int(text)


def _utc_datetime(text: str) -> datetime:
    problem = control_character_problem(text)
    if problem:  # Python's ISO parser reads "2026-03-02T14:30:00\x00Z" as a time
        raise ArgumentTypeError(f"not an ISO datetime: {problem}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ArgumentTypeError(f"not an ISO datetime: {text!r} (e.g. 2024-03-06T00:00:00Z)") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Command(BaseCommand):
    help = (
        "Generate seeded synthetic bars on the CME Globex session grid for the DAYS calendar days before END "
        "and store them (idempotent: the same arguments store the same bars)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True, help="instrument symbol, e.g. NQ")
        parser.add_argument("--days", required=True, type=_positive_int, help="calendar days before --end")
        parser.add_argument("--seed", required=True, type=int, help="random seed (>= 0)")
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument(
            "--end", type=_utc_datetime, default=None,
            help="ISO datetime the bars end before (UTC if no offset); default now, floored to the timeframe",
        )
        parser.add_argument(
            "--start-price", type=float, default=None,
            help=f"first open; default the last stored close before the range, else {DEFAULT_START_PRICE:g}",
        )
        parser.add_argument(
            "--demo-signal", action="store_true",
            help=f"plant the demo's learnable pattern (on about {DEMO_SIGNAL['signal_rate']:.0%}% of bars a volume spike "
                 f"whose direction drifts the next {DEMO_SIGNAL['signal_persist']} bars the same way), as `start` "
                 "does; made up, it says nothing about real markets",
        )

    def handle(self, *args, symbol, days, seed, timeframe, end, start_price, demo_signal=False, **options):
        try:
            instrument = selectors.instrument_get(symbol=symbol)
        except selectors.UnknownInstrument as exc:
            raise CommandError(str(exc)) from exc
        if end is None:
            end = pd.Timestamp.now(tz="UTC").floor(timeframe_delta(timeframe)).to_pydatetime()
        start = end - timedelta(days=days)
        if start_price is None:
            # The bar before the range, not the newest one: re-running the same command must give the same bars.
            previous = selectors.bars_in_range(instrument=instrument, timeframe=timeframe, end=start).last()
            start_price = float(previous.close) if previous else DEFAULT_START_PRICE
        try:
            timestamps = session_timestamps_between(start, end, timeframe=timeframe)
            frame = generate_bars(
                timestamps, seed=seed, start_price=start_price, tick_size=float(instrument.tick_size),
                timeframe=timeframe, params=SyntheticParams(**DEMO_SIGNAL) if demo_signal else SyntheticParams(),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report = services.bars_ingest(instrument=instrument, timeframe=timeframe, frame=frame)
        self.stdout.write(str(report))
        if demo_signal:
            self.stdout.write("These bars carry the demo's planted pattern (volume spikes whose direction drifts "
                              "the following bars): a made-up edge for the demo, not a property of real markets.")
