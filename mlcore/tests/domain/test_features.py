"""Features: no look-ahead, the live window equal to the batch bit for bit, clear errors on bad bars."""
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcore.domain.features import (
    FEATURE_NAMES,
    FEATURE_WINDOW,
    MOMENTUM_FEATURE,
    FeatureError,
    average_true_range,
    check_bars_usable,
    compute_features,
    features_for_window,
)
from trading.domain.synthetic import generate_bars, session_timestamps

UTC = timezone.utc


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(
        session_timestamps(datetime(2024, 3, 7, tzinfo=UTC), 3000), seed=11, start_price=18000.0, tick_size=0.25
    )


@pytest.fixture(scope="module")
def batch(bars) -> pd.DataFrame:
    return compute_features(bars)


def _simple_bars(close, *, start="2024-01-02 14:30", spread=1.0, volume=None) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    n = len(close)
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=n, freq="min", tz="UTC"),
        "open": open_,
        "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread,
        "close": close,
        "volume": np.full(n, 100.0) if volume is None else np.asarray(volume, dtype=float),
    })


def test_feature_names_are_unique_and_between_20_and_30():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 20 <= len(FEATURE_NAMES) <= 30
    assert MOMENTUM_FEATURE in FEATURE_NAMES


def test_compute_features_keeps_the_index_and_returns_float64_columns_in_order(bars, batch):
    assert list(batch.columns) == list(FEATURE_NAMES)
    assert batch.index.equals(bars.index)
    assert (batch.dtypes == np.float64).all()


def test_the_first_fully_defined_row_is_the_one_with_feature_window_bars_of_history(batch):
    values = batch.to_numpy()
    assert np.isnan(values[FEATURE_WINDOW - 2]).any()
    assert np.isfinite(values[FEATURE_WINDOW - 1:]).all()


def test_changing_bars_after_t_leaves_the_features_up_to_t_unchanged(bars, batch):
    rng = np.random.default_rng(5)
    for t in (FEATURE_WINDOW, 500, 1234, 2998):
        changed = bars.copy()
        later = changed.index > t
        factor = rng.uniform(0.9, 1.1, later.sum())
        for column in ("open", "high", "low", "close"):
            changed.loc[later, column] = changed.loc[later, column] * factor
        changed.loc[later, "volume"] = rng.integers(0, 10_000, later.sum()).astype(float)
        after = compute_features(changed)
        assert np.array_equal(after.to_numpy()[: t + 1], batch.to_numpy()[: t + 1], equal_nan=True)
        assert not np.array_equal(after.to_numpy()[t + 1:], batch.to_numpy()[t + 1:], equal_nan=True)


def test_the_live_window_gives_the_batch_values_bit_for_bit_at_every_bar(bars, batch):
    values = batch.to_numpy()
    for end in range(FEATURE_WINDOW, 1500):
        window = bars.iloc[end - FEATURE_WINDOW:end]
        assert np.array_equal(features_for_window(window), values[end - 1:end]), end


def test_a_window_of_several_rows_and_any_start_gives_the_batch_values_bit_for_bit(bars, batch):
    values = batch.to_numpy()
    rng = np.random.default_rng(1)
    for end in rng.integers(FEATURE_WINDOW + 15, len(bars) + 1, 200):
        for rows in (1, 2, 16):
            extra = int(rng.integers(0, 300))
            window = bars.iloc[max(0, end - FEATURE_WINDOW - rows + 1 - extra):end].reset_index(drop=True)
            assert np.array_equal(features_for_window(window, rows=rows), values[end - rows:end])


def test_features_for_window_returns_rows_by_features():
    window = _simple_bars(18000 + np.cumsum(np.tile([1.0, -0.75, 0.5], 40)))
    assert features_for_window(window, rows=16).shape == (16, len(FEATURE_NAMES))


def test_returns_are_log_returns_and_atr_pct_is_atr_over_close(bars, batch):
    close = bars["close"].to_numpy()
    t = 777
    assert batch["ret_1"].iat[t] == pytest.approx(np.log(close[t] / close[t - 1]), abs=1e-15)
    assert batch["ret_60"].iat[t] == pytest.approx(np.log(close[t] / close[t - 60]), abs=1e-14)
    assert batch["atr_pct"].iat[t] == pytest.approx(average_true_range(bars)[t] / close[t], rel=1e-12)


def test_windowed_features_match_an_independent_pandas_rolling_reference(bars, batch):
    c, h, lo, v = (bars[k] for k in ("close", "high", "low", "volume"))
    true_range = pd.concat([h, c.shift()], axis=1).max(axis=1) - pd.concat([lo, c.shift()], axis=1).min(axis=1)
    true_range.iloc[0] = np.nan
    atr = true_range.rolling(14).mean()
    r = np.log(c).diff()
    lv = np.log1p(v)
    move = c.diff()
    gains, losses = move.clip(lower=0).rolling(14).sum(), (-move).clip(lower=0).rolling(14).sum()
    macd = (c.rolling(12).mean() - c.rolling(26).mean()) / atr
    reference = {
        "rvol_20": np.sqrt((r**2).rolling(20).mean()),
        "rvol_60": np.sqrt((r**2).rolling(60).mean()),
        "range_pos_20": (c - lo.rolling(20).min()) / (h.rolling(20).max() - lo.rolling(20).min()),
        "range_width_60": (h.rolling(60).max() - lo.rolling(60).min()) / atr,
        "volume_z_60": (lv - lv.rolling(60).mean()) / lv.rolling(60).std(ddof=0),
        "volume_ratio_5_60": np.log1p(v.rolling(5).mean()) - np.log1p(v.rolling(60).mean()),
        "rsi_14": (gains - losses) / (gains + losses),
        "macd": macd,
        "macd_signal": macd.rolling(9).mean(),
        "ma_dist_60": (c - c.rolling(60).mean()) / atr,
        "efficiency_20": (c - c.shift(20)).abs() / move.abs().rolling(20).sum(),
        "body": (c - bars["open"]) / atr,
        "close_location": (c - lo) / (h - lo),
    }
    rows = slice(FEATURE_WINDOW - 1, None)
    for name, expected in reference.items():
        np.testing.assert_allclose(batch[name].iloc[rows], expected.iloc[rows], rtol=1e-7, atol=1e-9, err_msg=name)


def test_signed_volume_rz_is_the_moves_sign_times_a_median_mad_z_score_of_log_volume(bars, batch):
    lv = np.log1p(bars["volume"])
    median = lv.rolling(30).median()
    mad = (lv.rolling(30).apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True))
    expected = np.sign(bars["close"].diff()) * ((lv - median) / (1.4826 * mad)).clip(-10, 10)
    rows = slice(FEATURE_WINDOW - 1, None)
    np.testing.assert_allclose(batch["signed_volume_rz_30"].iloc[rows], expected.iloc[rows], rtol=1e-9, atol=1e-12)


def test_a_volume_spike_stands_out_in_the_robust_z_score_even_among_other_spikes():
    """Five 6x spikes in 30 bars inflate a mean/std z-score's spread; the median/MAD one barely moves."""
    rng = np.random.default_rng(0)
    n = 200
    volume = 500 * np.exp(0.25 * rng.standard_normal(n))
    volume[np.arange(151, 182, 6)] *= 6
    volume[182] *= 6  # a spike on a down bar
    close = 18000 + np.where(np.arange(n) % 2 == 0, 1.0, 2.0)  # up, down, up, ...
    batch = compute_features(_simple_bars(close, volume=volume))
    last_spike = 181  # an up bar
    assert close[last_spike] > close[last_spike - 1]
    assert batch["signed_volume_rz_30"].iat[last_spike] > 4
    assert batch["signed_volume_rz_30"].iat[last_spike - 3] < 3  # a down bar without a spike
    assert batch["signed_volume_rz_30"].iat[182] < -5  # a down bar: the sign of its move
    assert batch["volume_z_60"].iat[last_spike] < 3


def test_a_window_of_equal_volumes_gives_a_finite_robust_z_score():
    close = 18000 + np.arange(FEATURE_WINDOW + 5) % 3
    volume = np.full(len(close), 100.0)
    volume[-1] = 900.0
    values = compute_features(_simple_bars(close, volume=volume))["signed_volume_rz_30"].to_numpy()
    assert np.isfinite(values[FEATURE_WINDOW - 1:]).all()
    assert abs(values[-1]) == 10.0 and (values[FEATURE_WINDOW - 1:-1] == 0).all()


def test_bounded_features_stay_in_their_ranges(batch):
    defined = batch.iloc[FEATURE_WINDOW - 1:]
    for name in ("range_pos_20", "range_pos_60", "close_location", "efficiency_20"):
        assert defined[name].between(0.0, 1.0).all(), name
    assert defined["rsi_14"].between(-1.0, 1.0).all()
    for name in ("tod_sin", "tod_cos", "dow_sin", "dow_cos"):
        assert defined[name].between(-1.0, 1.0).all(), name


def test_time_features_use_the_new_york_clock_across_daylight_saving():
    # 09:30 in New York: 14:30 UTC in winter (EST), 13:30 UTC in summer (EDT). Both Tuesdays.
    winter = _simple_bars(18000 + np.arange(FEATURE_WINDOW) % 3, start="2024-01-02 13:30")
    summer = _simple_bars(18000 + np.arange(FEATURE_WINDOW) % 3, start="2024-07-02 12:30")
    names = list(FEATURE_NAMES)
    angle = 2 * np.pi * (9 * 60 + 30) / (24 * 60)
    tuesday = 2 * np.pi * 1 / 7
    for frame in (winter, summer):
        row = features_for_window(frame)[0]  # the last bar opens at 60 minutes past the start
        assert row[names.index("tod_sin")] == pytest.approx(np.sin(angle))
        assert row[names.index("tod_cos")] == pytest.approx(np.cos(angle))
        assert row[names.index("dow_sin")] == pytest.approx(np.sin(tuesday))
        assert row[names.index("dow_cos")] == pytest.approx(np.cos(tuesday))


def test_time_of_day_jumps_an_hour_when_new_york_springs_forward():
    # 2024-03-10: 06:59 UTC is 01:59 EST, 07:00 UTC is 03:00 EDT.
    frame = _simple_bars(18000 + np.arange(FEATURE_WINDOW + 1) % 3, start="2024-03-10 05:59")
    rows = features_for_window(frame, rows=2)
    names = list(FEATURE_NAMES)
    minutes = np.arctan2(rows[:, names.index("tod_sin")], rows[:, names.index("tod_cos")]) * 1440 / (2 * np.pi)
    assert np.round(minutes).tolist() == [1 * 60 + 59, 3 * 60]


def test_timestamps_in_any_resolution_give_the_same_features(bars):
    window = bars.iloc[-FEATURE_WINDOW:].copy()
    coarse = window.assign(timestamp=window["timestamp"].dt.as_unit("s"))
    assert np.array_equal(features_for_window(window), features_for_window(coarse))


def test_too_few_bars_is_refused_with_the_count_needed(bars):
    with pytest.raises(FeatureError, match=f"too few bars: 16 feature row\\(s\\) need the last {FEATURE_WINDOW + 15} "
                                           f"bars .* got {FEATURE_WINDOW}"):
        features_for_window(bars.iloc[:FEATURE_WINDOW], rows=16)
    with pytest.raises(FeatureError, match=f"too few bars: features need at least {FEATURE_WINDOW} bars.*got 10"):
        compute_features(bars.iloc[:10])
    with pytest.raises(FeatureError, match="too few bars"):
        check_bars_usable(bars.iloc[:0])


def test_a_nan_price_is_refused_naming_the_column_and_the_bar_time(bars):
    window = bars.iloc[-FEATURE_WINDOW:].copy()
    window.iloc[-3, window.columns.get_loc("close")] = np.nan
    when = window["timestamp"].iloc[-3].isoformat()
    with pytest.raises(FeatureError, match=re.escape(f"close is nan at bar {when}: prices and volumes must be finite")):
        features_for_window(window)
    with pytest.raises(FeatureError, match="close is nan"):
        compute_features(window)


def test_an_infinite_volume_is_refused(bars):
    window = bars.iloc[-FEATURE_WINDOW:].copy()
    window.iloc[5, window.columns.get_loc("volume")] = np.inf
    with pytest.raises(FeatureError, match="volume is inf at bar"):
        check_bars_usable(window)


def test_a_constant_price_series_is_refused_as_such():
    flat = _simple_bars(np.full(200, 18000.0), spread=0.0)
    with pytest.raises(FeatureError, match="constant price series: all 200 bars trade at 18000.0"):
        compute_features(flat)
    with pytest.raises(FeatureError, match="constant price series"):
        features_for_window(flat.iloc[-FEATURE_WINDOW:])


def test_a_flat_recent_stretch_is_refused_naming_the_feature_and_the_bar_time():
    close = np.r_[18000 + np.cumsum(np.tile([1.0, -0.5], 40)), np.full(20, 18020.0)]
    frame = _simple_bars(close)
    frame.loc[frame.index[-20:], ["open", "high", "low"]] = 18020.0
    when = frame["timestamp"].iloc[-1].isoformat()
    with pytest.raises(FeatureError, match=re.escape(f"feature range_width_60 is nan at bar {when} (ATR is 0")):
        features_for_window(frame)


def test_naive_or_unordered_timestamps_are_refused(bars):
    window = bars.iloc[-FEATURE_WINDOW:].copy()
    with pytest.raises(FeatureError, match="timezone-aware"):
        features_for_window(window.assign(timestamp=window["timestamp"].dt.tz_localize(None)))
    swapped = window.copy()
    swapped.iloc[[3, 4], swapped.columns.get_loc("timestamp")] = swapped["timestamp"].iloc[[4, 3]].to_numpy()
    with pytest.raises(FeatureError, match="strictly increasing"):
        features_for_window(swapped)


def test_rows_must_be_a_positive_integer(bars):
    with pytest.raises(FeatureError, match="rows must be a positive integer"):
        features_for_window(bars, rows=0)


@st.composite
def _valid_series(draw):
    n = draw(st.integers(FEATURE_WINDOW, FEATURE_WINDOW + 60))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.25, 1.0, 25.0]))
    rng = np.random.default_rng(seed)
    close = 10000.0 + np.cumsum(rng.choice([-2, -1, 0, 0, 1, 2], n) * scale)
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-11-01 20:00", periods=n, freq="min", tz="UTC"),  # crosses the DST end
        "open": open_,
        "high": np.maximum(open_, close) + rng.integers(1, 4, n) * scale,
        "low": np.minimum(open_, close) - rng.integers(0, 4, n) * scale,
        "close": close,
        "volume": rng.choice([0.0, 1.0, 50.0, 5000.0], n),
    })


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_series())
def test_features_are_finite_after_the_warm_up_on_any_valid_series_with_moving_bars(frame):
    values = compute_features(frame).to_numpy()
    assert np.isfinite(values[FEATURE_WINDOW - 1:]).all()
    assert np.array_equal(features_for_window(frame), values[-1:])
