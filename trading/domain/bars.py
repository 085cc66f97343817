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
import pyarrow as pa
import pyarrow.compute as pc

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
    # "time_range" for a timestamp outside the accepted range (a setting an edge may name); not compared.
    kind: str = field(default="", compare=False)

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

    Without `date_format` (strftime-style), ISO 8601 and the common layouts are recognised (`_to_datetime_naive`), the
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
        has_offset = _matches(text, _OFFSET)
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


# The layouts tried after ISO 8601 (which already reads 2024-01-02 09:30, 1999/01/04, 2024.01.02 and 19990104):
# a date, then optionally a time. Day and month in either order are told apart by the file as a whole.
DAY_MONTH_SEPARATORS = ("/", "-", ".")
YEAR_FIRST_DATES = ("%Y/%m/%d", "%Y-%m-%d", "%Y.%m.%d", "%Y%m%d")
TIME_SUFFIXES = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p", " %I:%M%p", " %I:%M:%S%p",
                 " %H%M", " %H%M%S", "T%H:%M", "T%H:%M:%S", "T%H:%M:%S.%f")
LAYOUT_SAMPLE = 200  # cells a layout is looked for in; the layouts found are then applied to every cell
_TIME_DIRECTIVES = re.compile(r"%[HIMSpfTXcRzZ]")


def _to_datetime_naive(text: pd.Series, date_format: str | None = None) -> pd.Series:
    """Naive (or, with %z in `date_format`, UTC) datetimes; NaT where a cell fits no layout."""
    index = text.index
    text = text.reset_index(drop=True)  # positions: row numbers in messages
    if date_format is not None:
        if _TIME_DIRECTIVES.search(date_format):
            utc = "%z" in date_format  # offsets may differ between rows: UTC is the common ground
            parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=utc)
        else:  # a date layout: the times after it are read as usual
            parsed = _layouts(text, [date_format + suffix for suffix in TIME_SUFFIXES])
        return parsed.set_axis(index)
    parsed = _unit(pd.to_datetime(text, errors="coerce", format="ISO8601"))
    if parsed.isna().any():
        parsed = _layouts(text, [d + t for d in YEAR_FIRST_DATES for t in TIME_SUFFIXES], parsed, day_month=True)
    return parsed.set_axis(index)


def _unit(values: pd.Series) -> pd.Series:
    # One resolution for results of different parsers; microseconds hold any year from 0001 to 9999.
    return values.astype("datetime64[us]")


def _layouts(text: pd.Series, formats: list[str], parsed: pd.Series | None = None, *,
             day_month: bool = False) -> pd.Series:
    """Fill the cells still NaT with the first of `formats` that reads them (and, with `day_month`, with day-month
    or month-day dates in the order the file shows). Layouts are looked for in a sample of the cells left, then
    applied to all of them in whole-column passes: no Python work per cell."""
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]") if parsed is None else parsed
    left = parsed.isna() & text.notna() & (text.astype(str) != "")
    while left.any():
        sample = text[left].head(LAYOUT_SAMPLE)
        before = int(left.sum())
        for fmt in _fitting(sample, formats):
            _fill(parsed, left, pd.to_datetime(text[left], format=fmt, errors="coerce"))
        if day_month and left.any():
            for sep in DAY_MONTH_SEPARATORS:
                day_first = _fitting(sample, [f"%d{sep}%m{sep}%Y{t}" for t in TIME_SUFFIXES])
                month_first = _fitting(sample, [f"%m{sep}%d{sep}%Y{t}" for t in TIME_SUFFIXES])
                if day_first or month_first:
                    suffixes = {f[8:] for f in day_first + month_first}  # the time layouts after "%d/%m/%Y"
                    _fill(parsed, left, _day_month(text[left], sep, sorted(suffixes)))
        if int(left.sum()) == before:  # the rest fit nothing: row errors
            break
    return parsed


def _fitting(sample: pd.Series, formats: list[str]) -> list[str]:
    return [f for f in formats if pd.to_datetime(sample, format=f, errors="coerce").notna().any()]


def _fill(parsed: pd.Series, left: pd.Series, found: pd.Series) -> None:
    found = found.dropna()
    parsed[found.index] = _unit(found)
    left[found.index] = False


def _read_all(text: pd.Series, formats: list[str]) -> pd.Series:
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    for fmt in formats:
        rest = out.isna()
        out[rest] = _unit(pd.to_datetime(text[rest], format=fmt, errors="coerce"))
    return out


def _day_month(text: pd.Series, sep: str, suffixes: list[str]) -> pd.Series:
    """Day-month-year or month-day-year dates, in the order the file as a whole shows."""
    day_first_layout, month_first_layout = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    s = re.escape(sep)
    numbers = pc.extract_regex(_arrow(text), rf"^(?P<first>\d{{1,2}}){s}(?P<second>\d{{1,2}}){s}\d{{4}}")
    first, second = (
        np.nan_to_num(pc.cast(pc.struct_field(numbers, name), pa.float64()).to_numpy(zero_copy_only=False), nan=0.0)
        for name in ("first", "second")
    )
    day_only = (first > 12) & (first <= 31) & (second >= 1) & (second <= 12)
    month_only = (second > 12) & (second <= 31) & (first >= 1) & (first <= 12)
    if day_only.any() and month_only.any():
        a, b = text.index[day_only.argmax()], text.index[month_only.argmax()]
        raise BarFileError(
            f"dates are day-first in some rows ({quote(text[a])} in row {a + 1}) and month-first in others "
            f"({quote(text[b])} in row {b + 1}); pass --date-format with the layout the file uses, "
            f"e.g. --date-format '{day_first_layout}'"
        )
    differ = (first >= 1) & (first <= 12) & (second >= 1) & (second <= 12) & (first != second)
    if day_only.any() or (sep == "." and not month_only.any()):  # dotted dates are day-first by convention
        layout = day_first_layout
    elif month_only.any() or not differ.any():
        layout = month_first_layout
    else:
        raise BarFileError(
            f"dates such as {quote(text[text.index[differ.argmax()]])} could be day-first or month-first and no date "
            f"in the file has a day above 12 to tell which; pass --date-format '{day_first_layout}' (day first) or "
            f"--date-format '{month_first_layout}' (month first)"
        )
    return _read_all(text, [layout + t for t in suffixes])


def _arrow(text: pd.Series) -> pa.ChunkedArray | pa.Array:
    # Regular expressions over a whole column in Arrow's engine: pandas runs some of them in Python, cell by cell.
    return pa.array(text.to_numpy(dtype=object, na_value=None), type=pa.string(), from_pandas=True)


def _matches(text: pd.Series, pattern: str) -> pd.Series:
    found = pc.match_substring_regex(_arrow(text), pattern).fill_null(False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=text.index, dtype=bool)


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
    naive = _to_datetime_naive(cells.where(~_matches(cells, _OFFSET)), date_format)
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
    any other is refused (kind "off_tick"): the instrument cannot trade at it, and stored it would be a bar no fill
    could match. A tick at the stored precision (10^-PRICE_DECIMALS: a back-adjusted or computed series) cannot be
    told from rounding, so there, as without a `tick_size`, a price is rounded to PRICE_DECIMALS when that moves it by at most
    MAX_ROUNDING of itself, else refused. Volumes are rounded to VOLUME_DECIMALS. The rows changed are counted.
    """
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    if n and getattr(frame["timestamp"].dt, "tz", None) is None:
        raise BarFileError("bar timestamps must be timezone-aware (UTC); localise them first")

    kinds: dict[int, str] = {}

    def flag(mask, make_reason, kind=""):
        mask = np.asarray(mask, dtype=bool) & pd.isna(reasons)
        for i in np.flatnonzero(mask):
            reasons[i] = make_reason(i)
            if kind:
                kinds[int(i)] = kind

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
            f"timestamp {ts.iat[i].isoformat()} is before {earliest.isoformat()}, the earliest accepted"),
            kind="time_range")
    if latest is not None:
        latest = pd.Timestamp(latest)
        flag((ts > latest).to_numpy(), lambda i: (
            f"timestamp {ts.iat[i].isoformat()} is after {latest.isoformat()}, the latest accepted (a bar from the "
            "future would block every later bar)"), kind="time_range")
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
    snapped, rounded, kept, off_tick = _as_stored(frame, tick_size)
    for column in PRICE_COLUMNS:
        values, stored = frame[column].to_numpy(dtype="float64"), kept[column]
        if tick_size and not _at_stored_precision(tick_size):
            flag(off_tick[column], lambda i, col=column, vals=values: _off_tick_reason(col, vals[i], tick_size),
                 kind="off_tick")
            continue
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
    row_numbers = frame["row"].to_numpy()
    rejected = [RowError(int(row_numbers[i]), str(reasons[i]), kinds.get(int(i), "")) for i in np.flatnonzero(bad)]
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


def _at_stored_precision(tick_size: float) -> bool:
    return tick_size <= 10.0 ** -PRICE_DECIMALS * (1 + 1e-9)


def _price_text(value: float) -> str:
    return f"{value:.{PRICE_DECIMALS}f}".rstrip("0").rstrip(".")


def _off_tick_reason(column: str, value: float, tick_size: float) -> str:
    below = math.floor(value / tick_size) * tick_size
    return (f"{column} {_fmt(value)} is not on the instrument's {_price_text(tick_size)} tick (the nearest are "
            f"{_price_text(below)} and {_price_text(below + tick_size)})")


# The ticks an import may give an instrument it creates without being told one: cents, then each finer decimal.
INFERRED_TICKS = tuple(f"{10.0 ** -places:.{places}f}" for places in range(2, PRICE_DECIMALS + 1))


def tick_size_inferred(frame: pd.DataFrame) -> str:
    """The tick of an instrument an import creates without one: 0.01 when every price of the file is on cents (float
    noise aside), else the coarsest decimal step its prices need, down to the stored precision. A file of 4-decimal
    FX quotes or split-adjusted closes is then imported as it is, rather than refused as off a tick nobody chose;
    the tick is stated, to check in the admin. Values that are not finite positive prices are left to validation."""
    prices = np.concatenate([frame[column].to_numpy(dtype="float64") for column in PRICE_COLUMNS])
    with np.errstate(invalid="ignore"):
        prices = prices[np.isfinite(prices) & (prices > 0)]
    for text in INFERRED_TICKS:
        tick = float(text)
        on_tick = np.round(prices / tick) * tick
        if np.all(np.abs(prices - on_tick) <= np.minimum(FLOAT_NOISE * prices, tick / 100)):
            return text
    return INFERRED_TICKS[-1]


def _as_stored(
    frame: pd.DataFrame, tick_size: float | None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(rows with a price snapped to the tick, rows with a value rounded, the values as the database keeps them,
    per price column the finite positive prices that are off the tick by more than float noise).

    Float noise is 2^-23 of the price (float32's precision, the coarsest a vendor exports) and at most 1% of a tick,
    far below the tick: 8800.2500000001 is 8800.25, 8800.001235 on a 0.01 tick is off it."""
    n = len(frame)
    snapped, rounded, kept, off_tick = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), {}, {}
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
                off_tick[column] = ~near & np.isfinite(values) & (values > 0)
            snapped |= near & (stored != values)
            rounded |= ~near & (stored != values) & np.isfinite(values)
            kept[column] = stored
        volume = frame["volume"].to_numpy(dtype="float64")
        kept["volume"] = np.round(volume, VOLUME_DECIMALS)
        rounded |= (kept["volume"] != volume) & np.isfinite(volume)
    return snapped, rounded, kept, off_tick
