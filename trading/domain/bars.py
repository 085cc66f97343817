"""The bar data contract: reading bar files into a frame, and validating bars before anything is stored.

A bar frame has the columns `timestamp` (UTC-aware), `open`, `high`, `low`, `close`, `volume` (floats)
and `row`, the 1-based data-row number in the source (the header line is not counted), used in messages.
A frame read from a file may also carry `raw_<column>` (the original cells, quoted in messages) and
`timestamp_error` (why a local time could not be placed, e.g. inside a daylight-saving gap).
"""
from __future__ import annotations

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
    frame: pd.DataFrame  # valid bars sorted by timestamp, duplicates removed
    rejected: list[RowError] = field(default_factory=list)
    was_sorted: bool = True


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


def map_columns(columns: Iterable[str], explicit: dict[str, str] | None = None) -> dict[str, str]:
    """Map source column names to bar columns. Returns {source_name: bar_column}.

    A separate date and time column pair (e.g. "Date","Time") maps to "date" and "time" for later joining.
    """
    columns = list(columns)
    mapping: dict[str, str] = {}
    explicit = explicit or {}
    for target, source in explicit.items():
        if target not in BAR_COLUMNS:
            raise BarFileError(f"--columns names {target!r}; use any of {', '.join(BAR_COLUMNS)}")
        if source not in columns:
            raise BarFileError(f"--columns maps {target} to {source!r}, which is not in the file ({', '.join(columns)})")
        mapping[source] = target
    normalised = {_normalise(c): c for c in columns if c not in mapping}
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
    missing = [c for c in BAR_COLUMNS if c not in taken]
    if missing:
        raise BarFileError(
            f"missing column(s) {', '.join(missing)}; the file has {', '.join(map(str, columns))}. "
            "Map them with --columns, e.g. --columns timestamp=Time,volume=Qty"
        )
    return mapping


def read_bar_file(path: str | Path, *, tz: str | None = None, columns: dict[str, str] | None = None) -> pd.DataFrame:
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
            # Numbers parse natively; a column with a bad cell comes back as text and is coerced cell by cell,
            # so one bad cell becomes a row error instead of failing the whole read. Time columns stay text:
            # as numbers, "093000" would lose its leading zero and 20240102 would pass for a Unix epoch.
            header = pd.read_csv(path, nrows=0, skipinitialspace=True).columns
            text_columns = [s for s, t in map_columns(header, columns).items() if t in ("timestamp", "date", "time")]
            raw = pd.read_csv(path, skipinitialspace=True, dtype={c: str for c in text_columns})
        else:
            raise BarFileError(f"{path.name}: unsupported file type; use .csv, .csv.gz or .parquet")
    except BarFileError as exc:
        raise _naming(path, exc) from None
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise BarFileError(f"{path.name}: cannot be read ({exc})") from exc
    if raw.empty:
        raise BarFileError(f"{path.name}: no data rows")
    try:
        return frame_from_table(raw, tz=tz, columns=columns)
    except BarFileError as exc:
        raise _naming(path, exc) from None


def _naming(path: Path, exc: BarFileError) -> BarFileError:
    message = str(exc)
    return exc if message.startswith(f"{path.name}:") else BarFileError(f"{path.name}: {message}")


def frame_from_table(raw: pd.DataFrame, *, tz: str | None = None, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Rename and parse a raw table into a bar frame; unparseable cells become NaN/NaT and are reported later."""
    mapping = map_columns(raw.columns, columns)
    table = raw[list(mapping)].rename(columns=mapping)
    if "date" in table.columns:
        stamps = table["date"].astype(str).str.strip() + " " + table["time"].astype(str).str.strip()
        stamps.name = "timestamp"
        table = table.drop(columns=["date", "time"]).assign(timestamp=stamps)
    table = table.reset_index(drop=True)
    frame = pd.DataFrame({"row": np.arange(1, len(table) + 1, dtype=np.int64)})
    frame["timestamp"] = parse_timestamps(table["timestamp"], tz=tz)
    # Original cells are kept only where they may need quoting in an error message (text columns).
    frame["raw_timestamp"] = table["timestamp"]
    if tz is not None and not pd.api.types.is_datetime64_any_dtype(table["timestamp"]):
        frame["timestamp_error"] = _local_time_errors(table["timestamp"], frame["timestamp"], tz)
    for column in (*PRICE_COLUMNS, "volume"):
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            frame[column] = values.astype("float64")
        else:
            frame[column] = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").astype("float64")
            frame["raw_" + column] = values
    return frame


def parse_timestamps(values: pd.Series, *, tz: str | None) -> pd.Series:
    """Parse to UTC. Offsets in the data win; naive times need `tz`; integers are Unix epochs (s or ms)."""
    _check_zone(tz)
    if _is_yyyymmdd(values):
        values = values.astype("Int64").astype(str)
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) or _looks_numeric(values):
        numbers = pd.to_numeric(values, errors="coerce")
        unit = "ms" if numbers.abs().max() > 1e11 else "s"
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    else:
        text = values.astype(str).str.strip()
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
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


def _is_yyyymmdd(values: pd.Series) -> bool:
    # Eight-digit whole numbers are dates such as 20240102: as epoch seconds they would fall in 1970.
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    numbers = values.dropna()
    return bool(len(numbers)) and bool(numbers.between(10_000_000, 99_999_999).all() and (numbers % 1 == 0).all())


def _looks_numeric(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).str.strip().head(20)
    return bool(len(sample)) and sample.str.fullmatch(r"\d{9,13}(?:\.\d*)?").all()


# Tried in order when ISO 8601 (which also covers 20240102 093000 and 2024.01.02 09:30) does not fit.
# Explicit formats only: pandas' "mixed" would read Dukascopy's day-first 02.01.2024 as 1 February.
NAIVE_FORMATS = (
    "%d.%m.%Y %H:%M:%S.%f",  # Dukascopy "Gmt time"
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",  # US exports (TradeStation, NinjaTrader, Excel)
    "%m/%d/%Y %H:%M",
)


def _to_datetime_naive(text: pd.Series) -> pd.Series:
    best = pd.to_datetime(text, errors="coerce", format="ISO8601")
    wanted = int(text.notna().sum())
    for fmt in NAIVE_FORMATS:
        if int(best.notna().sum()) == wanted:
            break
        parsed = pd.to_datetime(text, errors="coerce", format=fmt)
        if parsed.notna().sum() > best.notna().sum():
            best = parsed
    return best


def _check_zone(tz: str | None) -> None:
    if tz is None:
        return
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as exc:
        raise BarFileError(
            f"unknown time zone {tz!r}; use an IANA name such as UTC, America/New_York or America/Chicago"
        ) from exc


def _local_time_errors(text: pd.Series, parsed: pd.Series, tz: str) -> pd.Series:
    """For local times that could not be placed: which daylight-saving problem it was (None elsewhere)."""
    errors = pd.Series(None, index=parsed.index, dtype=object)
    failed = parsed.isna() & text.notna()
    if not failed.any():
        return errors
    naive = _to_datetime_naive(text[failed].astype(str).str.strip())
    for i, local in naive.dropna().items():
        if pd.isna(local.tz_localize(tz, ambiguous=True, nonexistent="NaT")):
            errors[i] = f"local time {str(text[i]).strip()!r} does not exist in {tz} (skipped when clocks go forward)"
        elif local.tz_localize(tz, ambiguous=True) != local.tz_localize(tz, ambiguous=False):
            errors[i] = (
                f"local time {str(text[i]).strip()!r} is ambiguous in {tz} (it occurs twice when clocks go back "
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


def validate_bars(frame: pd.DataFrame, *, skip_invalid: bool = False) -> ValidatedBars:
    """Check every contract rule on every row.

    Raises InvalidBars listing every bad row unless `skip_invalid`, which drops them and reports each.
    Valid rows come back sorted by time; a timestamp seen again later in the input is a duplicate.
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
        return repr(str(raw[column].iat[i])) if raw[column] is not None else "NaN"

    local_errors = frame.get("timestamp_error")
    if local_errors is not None:
        flag(local_errors.notna().to_numpy(), lambda i: str(local_errors.iat[i]))
    if raw["timestamp"] is not None:
        flag(ts.isna().to_numpy() & raw["timestamp"].isna().to_numpy(), lambda i: "timestamp is missing")
    flag(ts.isna().to_numpy(), lambda i: f"unparseable timestamp {raw_text('timestamp', i)}")
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
    return ValidatedBars(frame=good.reset_index(drop=True), rejected=rejected, was_sorted=was_sorted)
