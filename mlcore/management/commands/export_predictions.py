"""`manage.py export_predictions --symbol NQ --timeframe 1m --out predictions.parquet`: every prediction of a market
with its outcome, one row each, oldest bar first, as CSV or Parquet for analysis in pandas."""
import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from mlcore import selectors
from trading import selectors as trading_selectors
from trading.domain.timeframes import TIMEFRAMES

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class Command(BaseCommand):
    help = ("Export a market's predictions with their outcomes (bar_time, version, side, p_long, p_short, "
            "outcome_long, outcome_short, realised_return, ...) to CSV or Parquet, oldest bar first.")

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True, help="Instrument symbol, e.g. NQ.")
        parser.add_argument("--timeframe", required=True, help=f"One of {', '.join(TIMEFRAMES)}.")
        parser.add_argument("--out", required=True, help="The file to write (replaced whole if it exists).")
        parser.add_argument("--format", choices=sorted(set(FORMATS.values())),
                            help="csv or parquet; by default from the file's extension (.csv, .parquet).")
        parser.add_argument("--since", help="Only bars at or after this time: ISO 8601 with an offset or Z.")
        parser.add_argument("--until", help="Only bars before this time: ISO 8601 with an offset or Z.")

    def handle(self, *args, symbol, timeframe, out, format, since, until, **options):
        path = Path(out).expanduser()
        kind = format or FORMATS.get(path.suffix.lower())
        if kind is None:
            raise CommandError(f"cannot tell the format of {out!r} from its extension: name it .csv or .parquet, "
                               "or give --format")
        since_at, until_at = _aware("--since", since), _aware("--until", until)
        if since_at is not None and until_at is not None and since_at >= until_at:
            raise CommandError("--until must be later than --since (since is inclusive, until exclusive)")
        if timeframe not in TIMEFRAMES:
            raise CommandError(f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}")
        try:
            trading_selectors.instrument_get(symbol=symbol)
        except trading_selectors.UnknownInstrument as exc:
            raise CommandError(str(exc)) from None
        _check_folder(path)

        frame = selectors.prediction_export_frame(symbol=symbol, timeframe=timeframe, since=since_at, until=until_at)
        _write_whole(frame, path, kind)
        self.stdout.write(f"Wrote {len(frame)} predictions of {symbol} {timeframe} to {path} ({kind}).")


def _aware(option: str, value: str | None):
    if value is None:
        return None
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"{option} {value!r} is not an ISO 8601 time, e.g. 2024-01-02T14:30:00Z")
    if moment.tzinfo is None:
        raise CommandError(f"{option} {value!r} has no UTC offset: add Z or e.g. -05:00 (times are not guessed)")
    return moment


def _check_folder(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"cannot write {path}: the folder {folder} does not exist")
    if path.is_dir():
        raise CommandError(f"cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"cannot write {path}: the folder {folder} is not writable")


def _write_whole(frame, path: Path, kind: str) -> None:
    """Written to a temporary file beside the target, then renamed over it: a reader never sees half a file, and a
    failure leaves the target as it was."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.close(handle)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        if kind == "csv":
            frame.to_csv(temporary, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        else:
            frame.to_parquet(temporary, index=False)
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _file_mode(path: Path) -> int:
    """The replaced file's mode, or what a plain open() would give a new one (mkstemp makes it private)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
