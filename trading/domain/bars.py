"""The bar data contract: reading bar files into a frame, and validating bars before anything is stored.

A bar frame has the columns `timestamp` (UTC-aware), `open`, `high`, `low`, `close`, `volume` (floats)
and `row`, the 1-based data-row number in the source (the header line is not counted), used in messages.
A frame read from a file may also carry `raw_<column>` (the original cells, quoted in messages) and
`timestamp_error` (why a local time could not be placed, e.g. inside a daylight-saving gap).
"""
from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = ("timestamp", *PRICE_COLUMNS, "volume")

# Common spellings in vendor exports, after normalising (lower case, spaces/dashes to "_", <> stripped).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "datetime", "date_time", "time", "ts", "dt", "date", "gmt_time", "local_time",
                  "open_time", "bar_time", "time_utc", "timestamp_utc"),
    "open": ("open", "o", "open_price", "first"),
    "high": ("high", "h", "high_price", "max"),
    "low": ("low", "l", "low_price", "min"),
    "close": ("close", "c", "close_price", "last", "settle"),
    "volume": ("volume", "vol", "v", "total_volume", "tick_volume", "tickvol", "qty", "quantity"),
}


# The Bar columns' decimal places (trading.models.Bar): what the database keeps of a price and of a volume.
PRICE_DECIMALS = 6
VOLUME_DECIMALS = 4
# Float noise: a price this close to a tick (relative to the price) is that tick. 2^-23 is float32's precision,
# the coarsest float a vendor exports (Yahoo's 314.3399963378906 is 314.34); float64 noise is far smaller.
FLOAT_NOISE = 2.0 ** -23
# Rounding a price to the stored decimals may move it by at most one basis point of itself: nothing for prices
# above 0.005, and a refusal for prices too small for the column (0.00001234 would become 0.000012).
MAX_ROUNDING = 1e-4
# A bar file's lines are short; a longer one is refused before pandas holds it (a 50 MB field peaked near 1 GB).
MAX_LINE_BYTES = 1 << 20
QUOTE_CHARS = 40


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A value as quoted in a message, cut to `limit` characters: a 50 MB cell must not become a 50 MB message."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


class BarFileError(ValueError):
    """The file as a whole cannot be read as bars (unreadable, missing columns, no time zone...)."""


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


class InvalidBars(ValueError):
    """At least one row breaks the contract; nothing may be written."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} invalid row(s): {shown}{more}")


@dataclass
class ValidatedBars:
    frame: pd.DataFrame  # valid bars sorted by timestamp, duplicates removed, prices as they will be stored
    rejected: list[RowError] = field(default_factory=list)
    was_sorted: bool = True
    snapped: int = 0  # rows with a price moved onto the instrument's tick (float noise)
    rounded: int = 0  # rows with a price or volume rounded to the stored decimals


@dataclass(frozen=True)
class BarData:
    """One closed bar, as a feed source yields it. `timestamp` is the bar's open time, UTC-aware."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().strip("<>").strip().lower())


def _unnamed(name: object) -> bool:
    # pandas names a blank header cell "Unnamed: 0"; a frame written with its index has one first.
    return bool(re.fullmatch(r"Unnamed: \d+(?:_level_\d+)?", str(name)))


def _listed(columns: Iterable[object]) -> str:
    return ", ".join(quote(c)[1:-1] for c in columns)


def map_columns(columns: Iterable[str], explicit: dict[str, str] | None = None) -> dict[str, str]:
    """Map source column names to bar columns. Returns {source_name: bar_column}.

    A separate date and time column pair (e.g. "Date","Time") maps to "date" and "time" for later joining.
    A first column without a name (a pandas index written to CSV) holds the timestamps when no other column does.
    """
    columns = list(columns)
    mapping: dict[str, str] = {}
    explicit = explicit or {}
    for target, source in explicit.items():
        if target not in BAR_COLUMNS:
            raise BarFileError(f"--columns names {quote(target)}; use any of {', '.join(BAR_COLUMNS)}")
        if source not in columns:
            raise BarFileError(
                f"--columns maps {target} to {quote(source)}, which is not in the file ({_listed(columns)})"
            )
        mapping[source] = target
    normalised = {_normalise(c): c for c in columns if c not in mapping and not _unnamed(c)}
    taken = set(mapping.values())
    if "timestamp" not in taken and "date" in normalised and "time" in normalised:
        mapping[normalised.pop("date")] = "date"
        mapping[normalised.pop("time")] = "time"
        taken.add("timestamp")
    for target, aliases in COLUMN_ALIASES.items():
        if target in taken:
            continue
        for alias in aliases:
            if alias in normalised:
                mapping[normalised.pop(alias)] = target
                taken.add(target)
                break
    if "timestamp" not in taken and columns and _unnamed(columns[0]) and columns[0] not in mapping:
        mapping[columns[0]] = "timestamp"
        taken.add("timestamp")
    missing = [c for c in BAR_COLUMNS if c not in taken]
    if missing:
        raise BarFileError(
            f"missing column(s) {', '.join(missing)}; the file has {_listed(columns)}. "
            "Map them with --columns, e.g. --columns timestamp=Time,volume=Qty"
        )
    return mapping


def read_bar_file(
    path: str | Path, *, tz: str | None = None, columns: dict[str, str] | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet file into a raw bar frame (values not yet validated)."""
    path = Path(path)
    if not path.exists():
        raise BarFileError(f"{path}: no such file")
    _check_zone(tz)
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            raw = pd.read_parquet(path)
        elif suffixes.endswith((".csv", ".csv.gz", ".txt")):
            opener = gzip.open if suffixes.endswith(".gz") else open
            header_line = _check_line_lengths(path, opener)
            # Comma-separated unless the header says otherwise (MetaTrader writes tabs, some locales semicolons).
            sep = next((d for d in ("\t", ";") if "," not in header_line and d in header_line), ",")
            # Numbers parse natively; a column with a bad cell comes back as text and is coerced cell by cell,
            # so one bad cell becomes a row error instead of failing the whole read. Time columns stay text:
            # as numbers, "093000" would lose its leading zero and 20240102 would pass for a Unix epoch.
            header = pd.read_csv(path, nrows=0, sep=sep, skipinitialspace=True).columns
            text_columns = [s for s, t in map_columns(header, columns).items() if t in ("timestamp", "date", "time")]
            raw = pd.read_csv(path, sep=sep, skipinitialspace=True, dtype={c: str for c in text_columns})
        else:
            raise BarFileError(f"{path.name}: unsupported file type; use .csv, .csv.gz or .parquet")
    except BarFileError as exc:
        raise _naming(path, exc) from None
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise BarFileError(f"{path.name}: cannot be read ({quote(exc, 200)[1:-1]})") from exc
    if raw.empty:
        raise BarFileError(f"{path.name}: no data rows")
    try:
        return frame_from_table(raw, tz=tz, columns=columns, date_format=date_format)
    except BarFileError as exc:
        raise _naming(path, exc) from None


def _check_line_lengths(path: Path, opener, limit: int = MAX_LINE_BYTES) -> str:
    """Refuse a line longer than `limit` bytes, naming its row, reading a block at a time. Returns the header line."""
    header, lines, current = None, 0, 0  # lines ended so far; bytes of the line in progress
    with opener(path, "rb") as handle:
        while block := handle.read(limit):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A)
            if header is None:
                header = block[: ends[0] if len(ends) else len(block)]
            if len(ends):
                lengths = np.diff(ends, prepend=-1) - 1
                lengths[0] += current
                too_long = np.flatnonzero(lengths > limit)
                if len(too_long):
                    _line_too_long(lines + int(too_long[0]), limit)
                lines += len(ends)
                current = len(block) - int(ends[-1]) - 1
            else:
                current += len(block)
            if current > limit:
                _line_too_long(lines, limit)
    return (header or b"").decode("utf-8", errors="replace")


def _line_too_long(line: int, limit: int) -> None:
    where = "the header line" if line == 0 else f"row {line}"
    raise BarFileError(
        f"{where} is longer than {limit // 1024} KiB; a bar file's lines are short (is this a bar file?)"
    )


def _naming(path: Path, exc: BarFileError) -> BarFileError:
    message = str(exc)
    return exc if message.startswith(f"{path.name}:") else BarFileError(f"{path.name}: {message}")


def frame_from_table(
    raw: pd.DataFrame, *, tz: str | None = None, columns: dict[str, str] | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """Rename and parse a raw table into a bar frame; unparseable cells become NaN/NaT and are reported later."""
    mapping = map_columns(raw.columns, columns)
    table = raw[list(mapping)].rename(columns=mapping)
    if "date" in table.columns:
        stamps = table["date"].astype(str).str.strip() + " " + table["time"].astype(str).str.strip()
        stamps.name = "timestamp"
        table = table.drop(columns=["date", "time"]).assign(timestamp=stamps)
    table = table.reset_index(drop=True)
    frame = pd.DataFrame({"row": np.arange(1, len(table) + 1, dtype=np.int64)})
    frame["timestamp"] = parse_timestamps(table["timestamp"], tz=tz, date_format=date_format)
    # Original cells are kept only where they may need quoting in an error message (text columns).
    frame["raw_timestamp"] = table["timestamp"]
    if tz is not None and not pd.api.types.is_datetime64_any_dtype(table["timestamp"]):
        frame["timestamp_error"] = _local_time_errors(table["timestamp"], frame["timestamp"], tz, date_format)
    for column in (*PRICE_COLUMNS, "volume"):
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            frame[column] = values.astype("float64")
        else:
            frame[column] = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").astype("float64")
            frame["raw_" + column] = values
    return frame


def parse_timestamps(values: pd.Series, *, tz: str | None, date_format: str | None = None) -> pd.Series:
    """Parse to UTC. Offsets in the data win; naive times need `tz`; integers are Unix epochs (s or ms).

    Without `date_format` (strftime-style), ISO 8601 and the common layouts are recognised (`DATE_LAYOUTS`), the
    order of day and month read from the file as a whole. A date without a time is that day's 00:00 in `tz`.
    """
    _check_zone(tz)
    if _is_yyyymmdd(values):
        values = values.astype("Int64").astype(str)
    if date_format is not None and not pd.api.types.is_datetime64_any_dtype(values):
        parsed = _to_datetime_naive(_as_text(values), date_format)
    elif pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) or _looks_numeric(values):
        numbers = pd.to_numeric(values, errors="coerce")
        unit = "ms" if numbers.abs().max() > 1e11 else "s"
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    else:
        text = _as_text(values)
        has_offset = text.str.contains(_OFFSET, regex=True, na=False)
        if has_offset.any():
            parsed_aware = pd.to_datetime(text.where(has_offset), utc=True, errors="coerce", format="ISO8601")
            if has_offset.all():
                return parsed_aware
            naive = _to_datetime_naive(text.where(~has_offset))
            if naive.isna().all():  # the rest are blank or garbage: row errors, not naive times
                return parsed_aware
            if tz is None:
                raise BarFileError("some timestamps carry a UTC offset and others do not; pass --tz for the naive ones")
            return parsed_aware.where(has_offset, _localise(naive, tz))
        parsed = _to_datetime_naive(text)
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert("UTC")
    if tz is None:
        raise BarFileError(
            "timestamps have no time zone; pass --tz with the zone they are in (e.g. --tz UTC or --tz America/Chicago)"
        )
    return _localise(parsed, tz)


# A UTC offset after a time of day (not the year of 04-01-1999).
_OFFSET = r"\d:?\d\d(?::?\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d:?\d\d)$"


def _as_text(values: pd.Series) -> pd.Series:
    return values.where(values.isna(), values.astype(str).str.strip())


def _is_yyyymmdd(values: pd.Series) -> bool:
    # Eight-digit whole numbers are dates such as 20240102: as epoch seconds they would fall in 1970.
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    numbers = values.dropna()
    return bool(len(numbers)) and bool(numbers.between(10_000_000, 99_999_999).all() and (numbers % 1 == 0).all())


def _looks_numeric(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).str.strip().head(20)
    return bool(len(sample)) and sample.str.fullmatch(r"\d{9,13}(?:\.\d*)?").all()


# The date part of a timestamp cell, after ISO 8601 (which also reads 1999/01/04, 2024.01.02 and 19990104).
# None: day and month in either order, told apart by the file as a whole (a first number above 12 is a day).
DATE_LAYOUTS: tuple[tuple[str, str | None], ...] = (
    (r"\d{4}([-/.])\d{1,2}\1\d{1,2}", "%Y{sep}%m{sep}%d"),
    (r"()\d{8}", "%Y%m%d"),
    (r"\d{1,2}([-/.])\d{1,2}\1\d{4}", None),  # 1/4/1999, 04.01.1999, 01-04-1999
)
# The time part, after the date and a space (blank spaces before AM/PM removed). No time part: 00:00.
TIME_LAYOUTS: tuple[tuple[str, str], ...] = (
    (r"\d{1,2}:\d{2}", "%H:%M"),
    (r"\d{1,2}:\d{2}:\d{2}", "%H:%M:%S"),
    (r"\d{1,2}:\d{2}:\d{2}\.\d{1,9}", "%H:%M:%S.%f"),
    (r"\d{1,2}:\d{2}[AaPp][Mm]", "%I:%M%p"),
    (r"\d{1,2}:\d{2}:\d{2}[AaPp][Mm]", "%I:%M:%S%p"),
    (r"\d{4}", "%H%M"),
    (r"\d{6}", "%H%M%S"),
)
_TIME_DIRECTIVES = re.compile(r"%[HIMSpfTXcRzZ]")


def _to_datetime_naive(text: pd.Series, date_format: str | None = None) -> pd.Series:
    """Naive (or, with %z in `date_format`, UTC) datetimes; NaT where a cell fits no layout."""
    index = text.index
    text = text.reset_index(drop=True)
    if date_format is not None:
        if _TIME_DIRECTIVES.search(date_format):
            utc = "%z" in date_format  # offsets may differ between rows: UTC is the common ground
            parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=utc)
        else:
            parsed = _dates_and_times(text, date_format=date_format)
        return parsed.set_axis(index)
    best = pd.to_datetime(text, errors="coerce", format="ISO8601")
    rest = best.isna() & text.notna() & (text.astype(str) != "")
    if rest.any():
        other = _dates_and_times(text[rest])
        best = _unit(best).where(~rest, _unit(other).reindex(best.index))
    return best.set_axis(index)


def _unit(values: pd.Series) -> pd.Series:
    # One resolution for results of different parsers; microseconds hold any year from 0001 to 9999.
    return values.astype("datetime64[us]")


def _dates_and_times(text: pd.Series, *, date_format: str | None = None) -> pd.Series:
    """Cells made of a date and an optional time, each in one of the layouts (or the date in `date_format`)."""
    tokens = len(date_format.split()) if date_format else 1
    parts = text.astype(str).str.strip().str.split(n=tokens, expand=True, regex=None)
    parts = parts.reindex(columns=range(tokens + 1)).astype(object)
    parts = parts.where(parts.notna(), "")
    date_part = parts[list(range(tokens))].agg(" ".join, axis=1) if tokens > 1 else parts[0]
    time_part = parts[tokens].str.replace(r"\s+", "", regex=True)
    if date_format:
        dates = pd.to_datetime(date_part, format=date_format, errors="coerce")
    else:
        dates = _dates(date_part)
    return _unit(dates) + _clock_times(time_part)


def _dates(date_part: pd.Series) -> pd.Series:
    dates = pd.Series(pd.NaT, index=date_part.index, dtype="datetime64[us]")
    for pattern, layout in DATE_LAYOUTS:
        separators = date_part.str.extract(f"^{pattern}$", expand=False)  # the one group: the separator
        matched = separators.notna() & dates.isna()
        for sep in separators[matched].unique():
            rows = matched & (separators == sep)
            fmt = _day_month_order(date_part[rows], sep) if layout is None else layout.format(sep=sep)
            dates[rows] = _unit(pd.to_datetime(date_part[rows], format=fmt, errors="coerce"))
    return dates


def _day_month_order(dates: pd.Series, sep: str) -> str:
    """The format of day-month-year or month-day-year dates, decided by the file's dates as a whole."""
    numbers = dates.str.extract(r"^(\d+)\D(\d+)\D").astype(int)
    first, second = numbers[0], numbers[1]
    day_first_only = (first > 12) & (first <= 31) & (second <= 12)
    month_first_only = (second > 12) & (second <= 31) & (first <= 12)
    day_first, month_first = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    if day_first_only.any() and month_first_only.any():
        a, b = dates[day_first_only].index[0], dates[month_first_only].index[0]
        raise BarFileError(
            f"dates are day-first in some rows ({quote(dates[a])} in row {a + 1}) and month-first in others "
            f"({quote(dates[b])} in row {b + 1}); pass --date-format with the layout the file uses, "
            f"e.g. --date-format '{day_first}'"
        )
    if day_first_only.any() or sep == ".":  # dotted dates are day-first by convention (04.01.1999)
        return day_first if not month_first_only.any() else month_first
    if month_first_only.any() or (first == second).all():
        return month_first
    example = dates[first != second].iloc[0]
    raise BarFileError(
        f"dates such as {quote(example)} could be day-first or month-first and no date in the file has a day above "
        f"12 to tell which; pass --date-format '{day_first}' (day first) or --date-format '{month_first}' "
        "(month first)"
    )


def _clock_times(time_part: pd.Series) -> pd.Series:
    """Time of day as a duration: 0 where there is none, NaT where it fits no layout."""
    times = pd.Series(pd.Timedelta(0), index=time_part.index, dtype="timedelta64[us]")
    given = time_part != ""
    times[given] = pd.NaT
    midnight = pd.Timestamp("1900-01-01")
    for pattern, fmt in TIME_LAYOUTS:
        rows = given & time_part.str.fullmatch(pattern)
        if rows.any():
            clock = pd.to_datetime(time_part[rows], format=fmt, errors="coerce")
            times[rows] = (clock - midnight).astype("timedelta64[us]")
    return times


def _check_zone(tz: str | None) -> None:
    if tz is None:
        return
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:
        raise BarFileError(
            f"unknown time zone {tz!r}; use an IANA name such as UTC, America/New_York or America/Chicago"
        ) from exc


def _local_time_errors(text: pd.Series, parsed: pd.Series, tz: str, date_format: str | None = None) -> pd.Series:
    """For local times that could not be placed: which daylight-saving problem it was (None elsewhere)."""
    errors = pd.Series(None, index=parsed.index, dtype=object)
    failed = parsed.isna() & text.notna()
    if not failed.any():
        return errors
    # Every naive cell is read again, not only the failed ones: the order of day and month is the file's.
    cells = _as_text(text)
    naive = _to_datetime_naive(cells.where(~cells.str.contains(_OFFSET, regex=True, na=False)), date_format)
    if getattr(naive.dt, "tz", None) is not None:
        return errors
    for i, local in naive[failed].dropna().items():
        if pd.isna(local.tz_localize(tz, ambiguous=True, nonexistent="NaT")):
            errors[i] = f"local time {quote(cells[i])} does not exist in {tz} (skipped when clocks go forward)"
        elif local.tz_localize(tz, ambiguous=True) != local.tz_localize(tz, ambiguous=False):
            errors[i] = (
                f"local time {quote(cells[i])} is ambiguous in {tz} (it occurs twice when clocks go back "
                "and the rows around it do not show which)"
            )
    return errors


def _localise(parsed: pd.Series, tz: str) -> pd.Series:
    try:
        return parsed.dt.tz_localize(tz, ambiguous="infer", nonexistent="NaT").dt.tz_convert("UTC")
    except Exception:
        # "infer" needs ordered data around a DST fall-back; otherwise such rows become errors.
        try:
            return parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
        except Exception as exc:
            raise BarFileError(f"unknown time zone {tz!r} ({exc})") from exc


def frame_from_bars(bars: Iterable[BarData]) -> pd.DataFrame:
    """A bar frame from BarData objects (feeds, tests)."""
    bars = list(bars)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([b.timestamp for b in bars], utc=True),
            **{c: np.array([getattr(b, c) for b in bars], dtype="float64") for c in (*PRICE_COLUMNS, "volume")},
        }
    )
    frame.insert(0, "row", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def _fmt(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(value)


def validate_bars(
    frame: pd.DataFrame,
    *,
    skip_invalid: bool = False,
    earliest: datetime | None = None,
    latest: datetime | None = None,
    tick_size: float | None = None,
) -> ValidatedBars:
    """Check every contract rule on every row, and bring the prices to what the database keeps.

    Raises InvalidBars listing every bad row unless `skip_invalid`, which drops them and reports each.
    Valid rows come back sorted by time; a timestamp seen again later in the input is a duplicate.
    A timestamp before `earliest` or after `latest` is refused (a bar dated 9999 would block every later one).
    Prices: one within float noise of a multiple of `tick_size` becomes that multiple (16890.250000001 -> 16890.25);
    any other is rounded to PRICE_DECIMALS when that moves it by at most MAX_ROUNDING of itself, else refused.
    Volumes are rounded to VOLUME_DECIMALS. The rows changed either way are counted in the result.
    """
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    if n and getattr(frame["timestamp"].dt, "tz", None) is None:
        raise BarFileError("bar timestamps must be timezone-aware (UTC); localise them first")

    def flag(mask, make_reason):
        mask = np.asarray(mask, dtype=bool) & pd.isna(reasons)
        for i in np.flatnonzero(mask):
            reasons[i] = make_reason(i)

    ts = frame["timestamp"]
    raw = {c: frame.get("raw_" + c) for c in ("timestamp", *PRICE_COLUMNS, "volume")}

    def raw_text(column, i):
        return quote(raw[column].iat[i]) if raw[column] is not None else "NaN"

    local_errors = frame.get("timestamp_error")
    if local_errors is not None:
        flag(local_errors.notna().to_numpy(), lambda i: str(local_errors.iat[i]))
    if raw["timestamp"] is not None:
        flag(ts.isna().to_numpy() & raw["timestamp"].isna().to_numpy(), lambda i: "timestamp is missing")
    flag(ts.isna().to_numpy(), lambda i: f"unparseable timestamp {raw_text('timestamp', i)}")
    if earliest is not None:
        earliest = pd.Timestamp(earliest)
        flag((ts < earliest).to_numpy(), lambda i: (
            f"timestamp {ts.iat[i].isoformat()} is before {earliest.isoformat()}, the earliest accepted"))
    if latest is not None:
        latest = pd.Timestamp(latest)
        flag((ts > latest).to_numpy(), lambda i: (
            f"timestamp {ts.iat[i].isoformat()} is after {latest.isoformat()}, the latest accepted (a bar from the "
            "future would block every later bar)"))
    for column in (*PRICE_COLUMNS, "volume"):
        values = frame[column].to_numpy(dtype="float64")
        missing = np.isnan(values)
        if raw[column] is not None and missing.any():
            text = raw[column].astype(str).str.strip().str.lower()
            blank = (text.isin(["", "nan", "na", "n/a", "null", "none"]) | raw[column].isna()).to_numpy()
            flag(missing & blank, lambda i, c=column: f"{c} is missing or NaN")
            flag(missing, lambda i, c=column: f"unparseable {c} {raw_text(c, i)}")
        else:
            flag(missing, lambda i, c=column: f"{c} is missing or NaN")
        flag(np.isinf(values), lambda i, c=column, v=values: f"{c} is infinite ({_fmt(v[i])})")
    o, h, lo, c, v = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        for column, values in (("open", o), ("high", h), ("low", lo), ("close", c)):
            flag(values <= 0, lambda i, col=column, vals=values: f"non-positive {col} {_fmt(vals[i])}")
    snapped, rounded, kept = _as_stored(frame, tick_size)
    for column in PRICE_COLUMNS:
        values, stored = frame[column].to_numpy(dtype="float64"), kept[column]
        with np.errstate(invalid="ignore"):
            too_fine = np.abs(stored - values) > MAX_ROUNDING * np.abs(values)
        flag(too_fine, lambda i, col=column, vals=values, st=stored: (
            f"{col} {_fmt(vals[i])} has more decimals than the {PRICE_DECIMALS} stored and would be stored as "
            f"{st[i]:.{PRICE_DECIMALS}f}"))
    frame = frame.assign(**kept)
    # The rules below hold for the values as stored (rounding keeps order, so they held before too, or not at all).
    o, h, lo, c, v = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        flag(h < o, lambda i: f"high {_fmt(h[i])} below open {_fmt(o[i])}")
        flag(h < c, lambda i: f"high {_fmt(h[i])} below close {_fmt(c[i])}")
        flag(lo > o, lambda i: f"low {_fmt(lo[i])} above open {_fmt(o[i])}")
        flag(lo > c, lambda i: f"low {_fmt(lo[i])} above close {_fmt(c[i])}")
        flag(v < 0, lambda i: f"negative volume {_fmt(v[i])}")
        # The database keeps 12 integer digits for prices and 16 for volume.
        for column, values, limit in (("open", o, 1e12), ("high", h, 1e12), ("low", lo, 1e12), ("close", c, 1e12),
                                      ("volume", v, 1e16)):
            flag(values >= limit, lambda i, col=column, vals=values, lim=limit: (
                f"{col} {_fmt(vals[i])} is too large (must be below {lim:.0e})"))

    # Duplicates: among otherwise valid rows, the first occurrence in file order is kept.
    valid_ts = ts.where(pd.isna(reasons))
    repeated = valid_ts.duplicated(keep="first").to_numpy()
    present = valid_ts.notna().to_numpy()
    dup_mask = repeated & present
    if dup_mask.any():
        # Positions, not index labels, and the arrays built once: a file may hold many duplicates.
        stamps, rows = ts.to_numpy(), frame["row"].to_numpy()
        first_row_of = dict(zip(stamps[~repeated & present], rows[~repeated & present]))
        flag(
            dup_mask,
            lambda i: f"duplicate timestamp {ts.iat[i].isoformat()} (first at row {first_row_of[stamps[i]]})",
        )

    bad = ~pd.isna(reasons)
    rejected = [RowError(int(r), str(reason)) for r, reason in zip(frame["row"].to_numpy()[bad], reasons[bad])]
    if rejected and not skip_invalid:
        raise InvalidBars(rejected)
    good = frame.loc[~bad, ["row", *BAR_COLUMNS]]
    was_sorted = bool(good["timestamp"].is_monotonic_increasing)
    if not was_sorted:
        good = good.sort_values("timestamp", kind="stable")
    return ValidatedBars(
        frame=good.reset_index(drop=True), rejected=rejected, was_sorted=was_sorted,
        snapped=int((snapped & ~bad).sum()), rounded=int((rounded & ~bad).sum()),
    )


def _as_stored(frame: pd.DataFrame, tick_size: float | None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(rows with a price snapped to the tick, rows with a value rounded, the values as the database keeps them)."""
    n = len(frame)
    snapped, rounded, kept = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), {}
    with np.errstate(invalid="ignore", over="ignore"):
        for column in PRICE_COLUMNS:
            values = frame[column].to_numpy(dtype="float64")
            stored = np.round(values, PRICE_DECIMALS)
            near = np.zeros(n, dtype=bool)
            if tick_size:
                tick = float(tick_size)
                on_tick = np.round(np.round(values / tick) * tick, PRICE_DECIMALS)
                near = np.abs(values - on_tick) <= np.minimum(FLOAT_NOISE * np.abs(values), tick / 100)
                stored = np.where(near, on_tick, stored)
            snapped |= near & (stored != values)
            rounded |= ~near & (stored != values) & np.isfinite(values)
            kept[column] = stored
        volume = frame["volume"].to_numpy(dtype="float64")
        kept["volume"] = np.round(volume, VOLUME_DECIMALS)
        rounded |= (kept["volume"] != volume) & np.isfinite(volume)
    return snapped, rounded, kept
