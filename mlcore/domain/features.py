"""The feature row of each bar, from that bar and the bars before it only; one numpy core for training and live use.

Every feature of bar t is a function of a fixed window of bars ending at t (at most FEATURE_WINDOW bars), and
each windowed quantity is computed per window on its own (a reduction over a sliding-window view), never as a
running sum or an exponential average. So a feature does not depend on where the series starts: the live path
(`features_for_window` on the last few bars) gives bit-for-bit the values of the batch path (`compute_features`
on the whole history, or `features_for_windows`, which also says which windows the live path accepts). All call
`_feature_matrix`.

Definitions (c close, o open, h high, l low, v volume, r the one-bar log return ln c_t - ln c_{t-1}):

    ret_k            ln c_t - ln c_{t-k} for k in 1, 5, 15, 30, 60
    rvol_w           sqrt(mean of r^2 over the last w returns), w in 20, 60
    rvol_ratio       rvol_20 / rvol_60
    atr_pct          ATR_t / c_t; ATR = simple mean of the true range over ATR_WINDOW (14) bars
    range_pos_w      (c - lowest low) / (highest high - lowest low) over the last w bars, 0.5 if that range is 0
    range_width_60   (highest high - lowest low over 60 bars) / ATR
    volume_z_60      z-score of ln(1 + v_t) within the last 60 bars (0 when they are all equal)
    volume_ratio_5_60  ln(1 + mean v over 5 bars) - ln(1 + mean v over 60 bars)
    signed_volume_rz_30  sign(c_t - c_{t-1}) * robust z of ln(1 + v_t) within the last 30 bars: (x - median) /
                     (1.4826 * MAD), clipped to [-10, 10]. Robust: the median and MAD barely move when a few bars
                     of the window are volume spikes themselves, where a mean/std z-score (volume_z_60) is
                     compressed by them. Signed by the bar's move, so "heavy buying" and "heavy selling" are one
                     split of a tree rather than an interaction it has to find.
    rsi_14           Cutler's RSI rescaled to [-1, 1]: (gains - losses) / (gains + losses) over 14 closes, 0 if flat
    macd             (SMA_12(c) - SMA_26(c)) / ATR;  macd_signal = SMA_9(macd);  macd_hist = macd - macd_signal
    ma_dist_w        (c - SMA_w(c)) / ATR, w in 20, 60
    efficiency_20    |c_t - c_{t-20}| / sum of |c_i - c_{i-1}| over the 20 moves (Kaufman), 0 if flat
    body             (c - o) / ATR
    close_location   (c - l) / (h - l) within the bar, 0.5 for a bar without range
    tod_sin/cos      minute of the New York day on the unit circle (the exchange's clock, DST included)
    dow_sin/cos      New York day of the week on the unit circle

Features divided by ATR are undefined (NaN) where ATR is 0, i.e. after 14 bars without any range; the live path
refuses such a row with a FeatureError rather than invent a value.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

ATR_WINDOW = 14
RETURN_LAGS = (1, 5, 15, 30, 60)
EXCHANGE_TZ = "America/New_York"

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_15", "ret_30", "ret_60",
    "rvol_20", "rvol_60", "rvol_ratio",
    "atr_pct",
    "range_pos_20", "range_pos_60", "range_width_60",
    "volume_z_60", "volume_ratio_5_60",
    "signed_volume_rz_30",
    "rsi_14", "macd", "macd_signal", "macd_hist",
    "ma_dist_20", "ma_dist_60", "efficiency_20",
    "body", "close_location",
    "tod_sin", "tod_cos", "dow_sin", "dow_cos",
)  # fmt: skip
N_FEATURES = len(FEATURE_NAMES)
# The column a "momentum sign" baseline should use.
MOMENTUM_FEATURE = "ret_15"
# Bars of history for the last row to be fully defined: ret_60 and rvol_60 need 60 earlier closes.
FEATURE_WINDOW = 61
ROBUST_WINDOW = 30  # bars in the median / MAD of the robust volume z-score
ROBUST_Z_CLIP = 10.0

_ATR_SCALED = frozenset({"range_width_60", "macd", "macd_signal", "macd_hist", "ma_dist_20", "ma_dist_60", "body"})
_PRICE_COLUMNS = ("open", "high", "low", "close")
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NS_PER_MINUTE = 60 * 1_000_000_000
_NS_PER_DAY = 24 * 60 * _NS_PER_MINUTE


class FeatureError(ValueError):
    """Bars from which no trustworthy feature row can be computed; the message says what is wrong and where."""


# ---------------------------------------------------------------------------------------------- public API


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for every bar (batch: training, back-tests). Warm-up rows are NaN; same index as `bars`."""
    arrays = _arrays(bars)
    _check_arrays(*arrays, minimum=FEATURE_WINDOW)
    matrix = _feature_matrix(*arrays)
    return pd.DataFrame(matrix, index=bars.index, columns=list(FEATURE_NAMES))


def features_for_window(bars: pd.DataFrame, rows: int = 1) -> np.ndarray:
    """Features of the last `rows` bars of a window (live inference), shape (rows, N_FEATURES).

    Needs at least FEATURE_WINDOW + rows - 1 bars; only that many trailing bars are read. Raises FeatureError
    if a value is NaN or infinite, naming the feature and the bar time.
    """
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise FeatureError(f"rows must be a positive integer, got {rows!r}")
    needed = FEATURE_WINDOW + int(rows) - 1
    if len(bars) < needed:
        raise FeatureError(
            f"too few bars: {rows} feature row(s) need the last {needed} bars "
            f"(FEATURE_WINDOW={FEATURE_WINDOW} + {rows - 1}), got {len(bars)}"
        )
    arrays = _arrays(bars, tail=needed)
    _check_arrays(*arrays, minimum=needed)
    matrix = _feature_matrix(*arrays)[-rows:]
    if not np.isfinite(matrix).all():
        ts = arrays[0][-rows:]
        row, col = np.argwhere(~np.isfinite(matrix))[0]
        name = FEATURE_NAMES[col]
        why = " (ATR is 0: the last 14 bars have no range)" if name in _ATR_SCALED else ""
        raise FeatureError(f"feature {name} is {matrix[row, col]} at bar {_stamp(ts[row])}{why}")
    return matrix


def features_for_windows(bars: pd.DataFrame, rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`features_for_window` for the window ending at every bar at once (back-tests replaying the live path).

    Returns (matrix, usable): `matrix` is `compute_features` of all the bars, (n, N_FEATURES), NaN where undefined;
    `usable[t]` is True when `features_for_window(bars.iloc[t - needed + 1 : t + 1], rows)` (needed = FEATURE_WINDOW
    + rows - 1) returns instead of raising, and then it returns exactly `matrix[t - rows + 1 : t + 1]` (every
    feature reads a fixed window of bars on its own). False for t < needed - 1. Bars without the columns or
    timezone-aware timestamps every window needs raise FeatureError, as every window would.
    """
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise FeatureError(f"rows must be a positive integer, got {rows!r}")
    needed = FEATURE_WINDOW + int(rows) - 1
    ts, o, h, lo, c, v = _arrays(bars)
    n = len(c)
    usable = np.zeros(n, dtype=bool)
    if n < needed:
        return np.full((n, N_FEATURES), np.nan), usable
    matrix = _feature_matrix(ts, o, h, lo, c, v)
    # Each of `_check_arrays`' refusals, as "some bar of the window fails it".
    bad_bar = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v))
    bad_bar |= ~((lo > 0) & (v >= 0))
    unordered = np.zeros(n, dtype=bool)
    unordered[1:] = ~(ts[1:] > ts[:-1])  # bar t does not follow bar t - 1; a window holds t's pair from its 2nd bar
    with np.errstate(invalid="ignore"):
        top, bottom = _window_reduce(h, needed, np.maximum), _window_reduce(lo, needed, np.minimum)
        flat = top[needed - 1:] - bottom[needed - 1:] <= 0
    unusable_row = ~np.isfinite(matrix).all(axis=1)
    ok = (
        (_window_count(bad_bar, needed) == 0)
        & (_window_count(unordered, needed - 1)[1:] == 0)  # the pairs (t - needed + 2 .. t)
        & ~flat
        & (_window_count(unusable_row, rows)[needed - rows:] == 0)  # the window's last `rows` rows
    )
    usable[needed - 1:] = ok
    return matrix, usable


def check_bars_usable(bars: pd.DataFrame) -> None:
    """Raise FeatureError unless `bars` can give at least one feature row: enough bars, finite prices and
    volumes, increasing UTC timestamps, and a price series that moves at all."""
    _check_arrays(*_arrays(bars), minimum=FEATURE_WINDOW)


def average_true_range(bars: pd.DataFrame, window: int = ATR_WINDOW) -> np.ndarray:
    """ATR per bar: the simple mean of the true range over `window` bars (NaN for the first `window` bars).

    The same definition the features, the labels and the bracket distances use.
    """
    high, low, close = (bars[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close"))
    return _atr(high, low, close, window)


# ---------------------------------------------------------------------------------------------- the numpy core


def _feature_matrix(ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                    v: np.ndarray) -> np.ndarray:
    """Features of every bar of the arrays, shape (n, N_FEATURES), NaN where the history is too short."""
    n = len(c)
    out = np.empty((n, N_FEATURES))
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.log(c)
        for k in RETURN_LAGS:
            out[:, col[f"ret_{k}"]] = _lagged_diff(lc, k)
        r1 = out[:, col["ret_1"]]
        r2 = r1 * r1
        rvol_20 = np.sqrt(_window_mean(r2, 20))
        rvol_60 = np.sqrt(_window_mean(r2, 60))
        out[:, col["rvol_20"]] = rvol_20
        out[:, col["rvol_60"]] = rvol_60
        out[:, col["rvol_ratio"]] = np.where(rvol_60 > 0, rvol_20 / rvol_60, np.nan)

        atr = _atr(h, lo, c, ATR_WINDOW)
        safe_atr = np.where(atr > 0, atr, np.nan)
        out[:, col["atr_pct"]] = atr / c

        for w in (20, 60):
            top, bottom = _window_reduce(h, w, np.maximum), _window_reduce(lo, w, np.minimum)
            span = top - bottom
            position = np.where(span > 0, (c - bottom) / span, np.where(np.isnan(span), np.nan, 0.5))
            out[:, col[f"range_pos_{w}"]] = position
            if w == 60:
                out[:, col["range_width_60"]] = span / safe_atr

        lv = np.log1p(v)
        out[:, col["volume_z_60"]] = _window_zscore(lv, 60)
        out[:, col["volume_ratio_5_60"]] = np.log1p(_window_mean(v, 5)) - np.log1p(_window_mean(v, 60))
        direction = np.sign(_lagged_diff(c, 1))
        robust = _window_robust_zscore(lv, ROBUST_WINDOW)
        out[:, col["signed_volume_rz_30"]] = direction * robust

        move = _lagged_diff(c, 1)
        gains = _window_mean(np.maximum(move, 0.0), 14)
        losses = _window_mean(np.maximum(-move, 0.0), 14)
        total = gains + losses
        out[:, col["rsi_14"]] = np.where(total > 0, (gains - losses) / total, np.where(np.isnan(total), np.nan, 0.0))

        macd = (_window_mean(c, 12) - _window_mean(c, 26)) / safe_atr
        signal = _window_mean(macd, 9)
        out[:, col["macd"]] = macd
        out[:, col["macd_signal"]] = signal
        out[:, col["macd_hist"]] = macd - signal
        out[:, col["ma_dist_20"]] = (c - _window_mean(c, 20)) / safe_atr
        out[:, col["ma_dist_60"]] = (c - _window_mean(c, 60)) / safe_atr

        path = _window_reduce(np.abs(move), 20, np.add)
        net = np.abs(_lagged_diff(c, 20))
        out[:, col["efficiency_20"]] = np.where(path > 0, net / path, np.where(np.isnan(path), np.nan, 0.0))

        out[:, col["body"]] = (c - o) / safe_atr
        bar_range = h - lo
        out[:, col["close_location"]] = np.where(bar_range > 0, (c - lo) / bar_range, 0.5)

    local = ts + _new_york_offsets(ts)
    minute = (local // _NS_PER_MINUTE) % (24 * 60)
    weekday = (local // _NS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    day_angle = minute * (2.0 * np.pi / (24 * 60))
    week_angle = weekday * (2.0 * np.pi / 7)
    out[:, col["tod_sin"]] = np.sin(day_angle)
    out[:, col["tod_cos"]] = np.cos(day_angle)
    out[:, col["dow_sin"]] = np.sin(week_angle)
    out[:, col["dow_cos"]] = np.cos(week_angle)
    return out


def _lagged_diff(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) > k:
        out[k:] = x[k:] - x[:-k]
    return out


def _window_reduce(x: np.ndarray, w: int, ufunc) -> np.ndarray:
    """ufunc.reduce over each window of w values ending at t; NaN for t < w - 1.

    Each window is reduced on its own (numpy reduces every row of the view the same way), so the value at t
    depends only on x[t-w+1..t], not on how long the array is.
    """
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        out[w - 1:] = ufunc.reduce(_windows(x, w), axis=-1)
    return out


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """Read-only (n - w + 1, w) view of the windows of x; like sliding_window_view at a tenth of its overhead."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    return np.ndarray((len(x) - w + 1, w), dtype=np.float64, buffer=x, strides=(x.itemsize, x.itemsize))


def _window_count(flags: np.ndarray, w: int) -> np.ndarray:
    """How many of the w flags ending at t are set, for t = w - 1 .. n - 1 (n - w + 1 values)."""
    total = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return total[w:] - total[:-w]


def _window_mean(x: np.ndarray, w: int) -> np.ndarray:
    return _window_reduce(x, w, np.add) / w


def _window_zscore(x: np.ndarray, w: int) -> np.ndarray:
    """z-score of x_t within its window; 0 when the window is flat (rounding can leave a tiny variance there)."""
    mean = _window_mean(x, w)
    variance = _window_mean(x * x, w) - mean * mean
    flat = variance <= 1e-12 * np.maximum(mean * mean, 1.0)
    return np.where(flat & ~np.isnan(variance), 0.0, (x - mean) / np.sqrt(variance))


def _window_robust_zscore(x: np.ndarray, w: int) -> np.ndarray:
    """(x_t - median) / (1.4826 * MAD) within the w values ending at t, clipped to +-ROBUST_Z_CLIP; NaN for t < w - 1.

    A window whose MAD is 0 (at least half its values equal) gives 0 for a value at the median and the clip
    value, signed, for any other.
    """
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        windows = _windows(x, w)
        median = np.median(windows, axis=-1)
        scale = 1.4826 * np.median(np.abs(windows - median[:, None]), axis=-1)
        deviation = x[w - 1:] - median
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(scale > 0, deviation / scale, np.sign(deviation) * ROBUST_Z_CLIP)
        out[w - 1:] = np.clip(z, -ROBUST_Z_CLIP, ROBUST_Z_CLIP)
    return out


def _atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    true_range = np.full(len(close), np.nan)
    if len(close) > 1:
        previous = close[:-1]
        true_range[1:] = np.maximum(high[1:], previous) - np.minimum(low[1:], previous)
    return _window_mean(true_range, window)


# ---------------------------------------------------------------------------------------------- time of day


def _new_york_offsets(ts: np.ndarray) -> np.ndarray:
    """UTC offset of New York (ns) at each UTC instant (ns), from a cached table of the year's transitions."""
    years = ts.astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970
    first, last = int(years.min()), int(years.max())
    if first == last:
        bounds, offsets = _ny_year(first)
        return offsets[np.searchsorted(bounds, ts, side="right")]
    out = np.empty(len(ts), dtype=np.int64)
    for year in np.unique(years):
        mask = years == year
        bounds, offsets = _ny_year(int(year))
        out[mask] = offsets[np.searchsorted(bounds, ts[mask], side="right")]
    return out


@lru_cache(maxsize=512)
def _ny_year(year: int) -> tuple[np.ndarray, np.ndarray]:
    """The instants (UTC ns) in a UTC year where New York's offset changes, and the offset in each stretch."""
    hours = pd.date_range(pd.Timestamp(year=year, month=1, day=1, tz="UTC"), periods=367 * 24, freq="h")
    utc = hours.as_unit("ns").asi8
    offsets = hours.tz_convert(EXCHANGE_TZ).tz_localize(None).as_unit("ns").asi8 - utc
    # Offsets change on whole UTC hours, so an hourly grid finds every change exactly.
    changes = np.flatnonzero(np.diff(offsets)) + 1
    return utc[changes], offsets[np.r_[0, changes]]


# ---------------------------------------------------------------------------------------------- input checks


def _arrays(bars: pd.DataFrame, tail: int | None = None) -> tuple[np.ndarray, ...]:
    """(timestamps in UTC ns, open, high, low, close, volume) as numpy arrays, the last `tail` bars only if given."""
    missing = [c for c in ("timestamp", *_PRICE_COLUMNS, "volume") if c not in bars.columns]
    if missing:
        raise FeatureError(f"bars lack column(s) {', '.join(missing)}")
    stamps = bars["timestamp"].array
    if getattr(stamps, "tz", None) is None:
        raise FeatureError("bar timestamps must be timezone-aware (UTC)")
    start = 0 if tail is None else len(bars) - tail
    ts = stamps.asi8[start:] * _NS_PER_UNIT[stamps.unit]
    values = [bars[c].to_numpy(dtype=np.float64)[start:] for c in (*_PRICE_COLUMNS, "volume")]
    return (ts, *values)


def _check_arrays(ts, o, h, lo, c, v, *, minimum: int) -> None:
    n = len(c)
    if n < minimum:
        raise FeatureError(f"too few bars: features need at least {minimum} bars of history, got {n}")
    for name, values in zip((*_PRICE_COLUMNS, "volume"), (o, h, lo, c, v)):
        finite = np.isfinite(values)
        if not finite.all():
            i = int(np.argmin(finite))
            raise FeatureError(f"{name} is {values[i]} at bar {_stamp(ts[i])}: prices and volumes must be finite")
    positive = (lo > 0).all() and (v >= 0).all()
    if not positive:
        i = int(np.argmax((lo <= 0) | (v < 0)))
        raise FeatureError(f"bar {_stamp(ts[i])} has a non-positive price or a negative volume")
    if n > 1 and not (ts[1:] > ts[:-1]).all():
        i = int(np.argmin(ts[1:] > ts[:-1])) + 1
        raise FeatureError(f"timestamps must be strictly increasing: bar {_stamp(ts[i])} follows {_stamp(ts[i - 1])}")
    if h.max() - lo.min() <= 0:
        raise FeatureError(
            f"constant price series: all {n} bars trade at {c[0]}; returns, ranges and ATR are zero, "
            "so the features are undefined"
        )


def _stamp(ns) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()
