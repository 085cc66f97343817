"""Arguments shared by the commands that start a feed (run_feed, start), and the source they describe."""
import argparse
import math
from datetime import datetime

from django.core.management.base import CommandError
from django.utils import timezone

from minhos_site.api_fields import control_character_problem
from trading import selectors
from trading.domain.bars import BarFileError, InvalidBars
from trading.domain.synthetic import DEMO_SIGNAL, REGIME_SHIFTS, RegimeShift, SyntheticParams
from trading.domain.timeframes import TIMEFRAMES
from trading.feeds.sources import FileBarSource, StoredBarSource, SyntheticSource

SOURCES = ("synthetic", "stored", "file")


DEMO_SIGNAL_HELP = (
    f"synthetic source: plant the demo's learnable pattern in the generated bars (on about "
    f"{DEMO_SIGNAL['signal_rate']:.0%}% of bars a volume spike whose direction drifts the next "
    f"{DEMO_SIGNAL['signal_persist']} bars the same way), so a model finds a real edge and the decision loop has "
    "confident predictions to show. The pattern is made up: it says nothing about real markets"
)


def _bar_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of bars >= 0, got {text!r}")
    return value


def add_feed_arguments(parser, *, default_pace: float = 1.0, demo_signal: bool = False) -> None:
    parser.add_argument("--symbol", default="NQ", help="instrument symbol (default NQ)")
    parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
    parser.add_argument("--source", default="synthetic", choices=SOURCES,
                        help="synthetic: continue the stored series with generated bars; stored: replay stored "
                             "bars from --from; file: replay --file as if live")
    parser.add_argument("--pace", type=float, default=default_pace, help="seconds between bars (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic source")
    parser.add_argument("--from", dest="start", help="stored source: first bar time (ISO 8601 with offset)")
    parser.add_argument("--file", help="file source: CSV or Parquet path")
    parser.add_argument("--tz", help="file source: time zone of naive timestamps")
    parser.add_argument("--date-format", help="file source: strftime layout of the timestamps, e.g. %%d/%%m/%%Y")
    parser.add_argument("--max-bars", type=int, help="stop after this many bars")
    parser.add_argument("--demo-signal", action=argparse.BooleanOptionalAction, default=demo_signal,
                        help=f"{DEMO_SIGNAL_HELP} (default {'on' if demo_signal else 'off'})")
    default_shift = RegimeShift()
    parser.add_argument("--regime", default="normal", choices=REGIME_SHIFTS,
                        help="synthetic source: a market the stored history never showed, to see drift monitoring "
                             f"react: volatility-shock ({default_shift.vol_factor:g}x the usual volatility and more "
                             f"volume) or trend (a persistent upward drift of {default_shift.trend_sigmas:g} sigma a "
                             "bar); default normal")
    parser.add_argument("--regime-after", type=_bar_count, default=0, metavar="N",
                        help="synthetic source: start the --regime after N bars of this feed (default 0: at once)")


def synthetic_params(options) -> SyntheticParams:
    """The synthetic process the options ask for: with or without the demo's planted pattern."""
    return SyntheticParams(**DEMO_SIGNAL) if options.get("demo_signal") else SyntheticParams()


def regime_shift(options) -> RegimeShift:
    """The regime shift the options ask for (normal: none), or a CommandError."""
    try:
        return RegimeShift(kind=options.get("regime") or "normal", after_bars=options.get("regime_after") or 0)
    except ValueError as exc:
        raise CommandError(f"--regime / --regime-after: {exc}") from None


def _aware(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    problem = control_character_problem(text)
    if problem:  # Python's ISO parser reads "2026-03-02T14:30:00\x00Z" as a time
        raise CommandError(f"{name}: not an ISO 8601 time: {problem}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{name}: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise CommandError(f"{name}: give a UTC offset or Z, e.g. {text}Z")
    return value


def build_source(options):
    """The instrument and the source the options describe, or a CommandError saying what is wrong."""
    try:
        instrument = selectors.instrument_get(symbol=options["symbol"])
    except selectors.BacktestMarket as exc:
        raise CommandError(str(exc)) from None
    except selectors.UnknownInstrument as exc:
        raise CommandError(f"{exc}; create it in the admin or import bars with --create") from None
    if not (math.isfinite(options["pace"]) and options["pace"] >= 0):
        raise CommandError(f"--pace must be a finite number of seconds >= 0, got {options['pace']}")
    timeframe, kind = options["timeframe"], options["source"]
    belongs_to = {"start": ("--from", "stored"), "file": ("--file", "file"), "tz": ("--tz", "file"),
                  "date_format": ("--date-format", "file")}
    for key, (flag, source_kind) in belongs_to.items():
        if options.get(key) is not None and kind != source_kind:
            raise CommandError(f"{flag} applies to --source {source_kind} only (this feed's source is {kind})")
    shift = regime_shift(options)
    if kind != "synthetic" and (shift.active or shift.after_bars):
        raise CommandError(f"--regime and --regime-after apply to --source synthetic only (this feed's source is "
                           f"{kind})")
    if kind == "synthetic":
        source = SyntheticSource.continuing(instrument=instrument, timeframe=timeframe, seed=options["seed"],
                                            now=timezone.now(), params=synthetic_params(options), shift=shift)
    elif kind == "stored":
        source = StoredBarSource(instrument=instrument, timeframe=timeframe, start=_aware(options["start"], "--from"))
    else:
        if not options["file"]:
            raise CommandError("--source file needs --file PATH")
        try:
            source = FileBarSource(path=options["file"], tz=options["tz"], date_format=options.get("date_format"),
                                   tick_size=float(instrument.tick_size))
        except (BarFileError, InvalidBars) as exc:
            raise CommandError(str(exc)) from None
    return instrument, source
