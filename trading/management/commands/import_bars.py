"""Import a CSV or Parquet file of bars for one instrument and timeframe through the ingestion service."""
from argparse import ArgumentTypeError
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from trading import selectors, services
from trading.domain.bars import BarFileError, InvalidBars
from trading.domain.timeframes import TIMEFRAMES

MAX_ROWS_SHOWN = 50


def _column_mapping(text: str) -> dict[str, str]:
    """`timestamp=Time,volume=Qty` -> {"timestamp": "Time", "volume": "Qty"}."""
    mapping: dict[str, str] = {}
    for pair in text.split(","):
        target, sep, source = pair.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            raise ArgumentTypeError(f"expected bar_column=FileColumn pairs separated by commas, got {pair.strip()!r}")
        if target in mapping:
            raise ArgumentTypeError(f"{target} is mapped twice")
        mapping[target] = source
    return mapping


def _tick_size(text: str) -> Decimal:
    try:
        tick = Decimal(text.strip())
    except InvalidOperation:
        raise ArgumentTypeError(f"not a number: {text!r} (e.g. 0.25)") from None
    if not tick.is_finite() or tick <= 0 or tick != tick.quantize(Decimal("0.000001")):
        raise ArgumentTypeError(f"a tick size is a positive number with at most 6 decimals, got {text!r}")
    return tick


class _Progress:
    """A tqdm bar on stderr, drawn only on a terminal and only once the number of bars to store is known."""

    def __init__(self, stderr, desc: str):
        self._stderr, self._desc, self._bar = stderr, desc, None

    def start(self, total: int) -> None:
        # Updates come per stored chunk (100,000 rows), so every one is drawn.
        self._bar = tqdm(total=total, unit="bar", desc=self._desc, file=self, leave=False, mininterval=0, miniters=1,
                         disable=not self._stderr.isatty())

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, text: str) -> None:
        # tqdm redraws with carriage returns; OutputWrapper would add a newline and the error colour to each write.
        self._stderr.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self._stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.close()


class Command(BaseCommand):
    help = (
        "Import bars from a CSV or Parquet file. Column names are recognised in common spellings (or given with "
        "--columns); timestamp layouts too (or given with --date-format); naive times need --tz. An invalid row "
        "stops the import and nothing is written, unless --skip-invalid. Re-importing the same file changes nothing; "
        "a stored bar that the file changes is listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="a .csv, .csv.gz or .parquet file")
        parser.add_argument("--symbol", required=True, help="instrument symbol, e.g. NQ")
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument(
            "--tz", default=None,
            help="time zone of timestamps that carry no offset, e.g. UTC or America/Chicago (offsets in the data win)",
        )
        parser.add_argument(
            "--date-format", default=None,
            help="strftime layout of the timestamps when it cannot be told from the file, e.g. '%%d/%%m/%%Y' or "
                 "'%%m/%%d/%%Y %%H:%%M' (with separate date and time columns: the date's layout)",
        )
        parser.add_argument(
            "--columns", type=_column_mapping, default=None,
            help="map bar columns to the file's columns, e.g. --columns timestamp=Time,volume=Qty",
        )
        parser.add_argument(
            "--create", action="store_true",
            help="create the instrument if unknown (default tick size and point value: check them in the admin)",
        )
        parser.add_argument(
            "--tick-size", type=_tick_size, default=None,
            help=("with --create: the created instrument's tick size (default: 0.01, or the finest decimal step the "
                  "file's prices need); every price must be on it"),
        )
        parser.add_argument(
            "--skip-invalid", action="store_true", help="store the valid rows and report each invalid one"
        )

    def handle(self, *args, path, symbol, timeframe, tz, columns, create, skip_invalid, date_format=None,
               tick_size=None, **options):
        if tick_size is not None and not create:
            raise CommandError("--tick-size is the tick of an instrument --create makes; pass --create with it")
        try:
            with _Progress(self.stderr, f"{symbol} {timeframe}") as progress:
                report = services.bars_import_file(
                    path=path, symbol=symbol, timeframe=timeframe, tz=tz, columns=columns, date_format=date_format,
                    create=create, tick_size=tick_size, skip_invalid=skip_invalid, progress=progress.update,
                    progress_total=progress.start,
                )
        except InvalidBars as exc:
            self._write_rows(self.stderr, exc.errors, prefix="")
            out_of_range = any(e.kind == "time_range" for e in exc.errors)
            off_tick = any(e.kind == "off_tick" for e in exc.errors)
            raise CommandError(
                f"{len(exc.errors)} invalid row(s) in {path}; nothing was written "
                "(--skip-invalid stores the valid rows and skips these)"
                + (". The accepted range of bar times is set by MINHOS_BAR_EARLIEST and MINHOS_BAR_MAX_AHEAD_SECONDS"
                   if out_of_range else "")
                + (". Prices must be on the instrument's tick" + (
                    " (an instrument --create makes gets --tick-size)" if create else
                    " (a ratio-adjusted or computed series is on none: import it under a symbol of its own with "
                    "--create, which gives it the tick its prices need)")
                   if off_tick else "")
            ) from exc
        except services.TickSizeMismatch as exc:
            raise CommandError(str(exc)) from exc
        except BarFileError as exc:
            raise CommandError(str(exc)) from exc
        except selectors.BacktestMarket as exc:
            raise CommandError(str(exc)) from exc
        except selectors.UnknownInstrument as exc:
            raise CommandError(
                f"{exc}; pass --create to add it (with a default tick size and point value to check in the admin)"
            ) from exc
        except ValidationError as exc:
            raise CommandError(f"cannot create instrument {symbol!r}: {' '.join(exc.messages)}") from exc
        except ValueError as exc:  # unknown timeframe from a caller that bypasses the choices
            raise CommandError(str(exc)) from exc
        self._write_rows(self.stdout, report.rejected, prefix="skipped ")
        for bar in report.changed:
            self.stdout.write(f"changed {bar}")
        if report.updated > len(report.changed):
            self.stdout.write(f"... and {report.updated - len(report.changed)} more changed")
        self.stdout.write(str(report))

    def _write_rows(self, out, errors, *, prefix: str) -> None:
        for error in errors[:MAX_ROWS_SHOWN]:
            out.write(f"{prefix}{error}")
        if len(errors) > MAX_ROWS_SHOWN:
            out.write(f"... and {len(errors) - MAX_ROWS_SHOWN} more")
