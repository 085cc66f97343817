"""Triple-barrier labels on hand-built price paths, the one rule for ties and timeouts, and the payoff ratio."""
import json
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.domain.features import average_true_range
from mlcore.domain.labels import LabelConfig, triple_barrier_labels
from trading.domain.synthetic import generate_bars, session_timestamps

# With ATR 2 and the config below: long take-profit at entry + 3, long stop at entry - 2 (short: mirrored).
ATR = 2.0
CONFIG = LabelConfig(tp_atr=1.5, sl_atr=1.0, horizon=3)


def _path(rows) -> pd.DataFrame:
    """Bars from (high, low, close) triples; the first is the entry bar."""
    high, low, close = (np.array(column, dtype=float) for column in zip(*rows))
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-01-02 14:30", periods=len(rows), freq="min", tz="UTC"),
        "open": close,
        "high": high,
        "low": low,
        "close": close,
        "volume": 1.0,
    })


def _labels(rows, config=CONFIG) -> pd.DataFrame:
    bars = _path(rows)
    return triple_barrier_labels(bars, np.full(len(bars), ATR), config)


def _first(rows, side="long") -> float:
    return _labels([*rows, *[(100.0, 100.0, 100.0)] * 3])[side].iat[0]


def test_take_profit_touched_before_the_stop_is_a_1():
    assert _first([(100, 100, 100), (101, 99, 100), (103, 100, 102), (103, 97, 98)]) == 1.0


def test_stop_touched_before_the_take_profit_is_a_0():
    assert _first([(100, 100, 100), (101, 98, 99), (104, 99, 103)]) == 0.0


def test_a_bar_touching_both_barriers_counts_as_the_stop_first():
    assert _first([(100, 100, 100), (103, 98, 101), (105, 100, 104)]) == 0.0


def test_a_timeout_without_either_barrier_is_a_0():
    assert _first([(100, 100, 100), (102.75, 98.25, 100), (102, 99, 101), (102.5, 98.5, 100)]) == 0.0


def test_touching_the_barrier_exactly_counts():
    assert _first([(100, 100, 100), (103, 99, 102)]) == 1.0
    assert _first([(100, 100, 100), (101, 98, 99)]) == 0.0


def test_the_entry_bar_itself_is_not_scanned():
    assert _first([(110, 90, 100), (101, 99, 100), (103, 100, 102)]) == 1.0


def test_a_gap_through_the_take_profit_still_counts_as_the_take_profit():
    assert _first([(100, 100, 100), (108, 106, 107)]) == 1.0


def test_the_short_side_mirrors_the_long_side():
    assert _first([(100, 100, 100), (101, 99, 100), (100, 97, 98)], "short") == 1.0  # 97 = 100 - 3
    assert _first([(100, 100, 100), (102, 99, 101), (100, 96, 97)], "short") == 0.0  # 102 = 100 + 2 first
    assert _first([(100, 100, 100), (102, 97, 100)], "short") == 0.0  # both in one bar
    assert _first([(100, 100, 100), (101.5, 97.5, 100)], "short") == 0.0  # timeout


def test_a_whole_path_gets_exactly_the_expected_labels_and_the_last_horizon_bars_are_nan():
    rows = [
        (100, 100, 100),  # 0: long tp 103 (bar 2), stop 98 (bar 3) -> 1; short tp 97 never, stop 102 (bar 2) -> 0
        (101, 99, 100),   # 1: long tp 103 (bar 2), stop 98 (bar 3) -> 1; short stop 102 (bar 2) -> 0
        (104, 101, 103),  # 2: long tp 106 never, stop 101 (bar 3) -> 0; short tp 100 (bar 3) -> 1
        (103, 97, 98),    # 3: long tp 101 (bar 5), stop 96 never -> 1; short tp 95 never, stop 100 (bar 5) -> 0
        (99, 97, 98),     # 4: long tp 101 (bar 5) -> 1; short stop 100 (bar 5) -> 0
        (102, 99, 101),   # 5..7: fewer than 3 bars follow -> NaN
        (102, 100, 101),
        (101, 100, 100),
    ]
    labels = _labels(rows)
    nan = np.nan
    assert np.array_equal(labels["long"].to_numpy(), [1, 1, 0, 1, 1, nan, nan, nan], equal_nan=True)
    assert np.array_equal(labels["short"].to_numpy(), [0, 0, 1, 0, 0, nan, nan, nan], equal_nan=True)
    assert list(labels.columns) == ["long", "short"]


def test_the_label_needs_a_full_horizon_ahead_even_if_a_barrier_was_already_hit():
    labels = _labels([(100, 100, 100), (110, 100, 105), (105, 105, 105)])
    assert np.isnan(labels["long"].to_numpy()).all()


def test_missing_or_zero_atr_gives_nan():
    bars = _path([(100, 100, 100), *[(104, 100, 103)] * 5])
    labels = triple_barrier_labels(bars, np.array([np.nan, 0.0, 2.0, 2.0, 2.0, 2.0]), CONFIG)
    assert np.isnan(labels["long"].iat[0]) and np.isnan(labels["long"].iat[1])
    assert labels["long"].iat[2] == 0.0


def test_labels_keep_the_bars_index():
    bars = _path([(100, 100, 100)] * 6)
    bars.index = range(10, 16)
    assert triple_barrier_labels(bars, np.full(6, ATR), CONFIG).index.equals(bars.index)


def test_payoff_ratio_is_take_profit_over_stop_loss():
    assert LabelConfig().payoff_ratio == 1.5
    assert LabelConfig(tp_atr=2.0, sl_atr=0.5, horizon=10).payoff_ratio == 4.0


def test_the_config_round_trips_through_json_with_its_payoff_ratio():
    config = LabelConfig(tp_atr=2.0, sl_atr=0.8, horizon=45)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["payoff_ratio"] == 2.5
    assert LabelConfig.from_dict(data) == config


@pytest.mark.parametrize("kwargs, message", [
    ({"tp_atr": 0.0}, "tp_atr must be a finite number > 0"),
    ({"sl_atr": -1.0}, "sl_atr must be a finite number > 0"),
    ({"sl_atr": float("nan")}, "sl_atr must be a finite number > 0"),
    ({"horizon": 0}, "horizon must be an integer >= 1"),
    ({"horizon": 2.5}, "horizon must be an integer >= 1"),
])
def test_invalid_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabelConfig(**kwargs)


def test_atr_of_the_wrong_length_or_nan_prices_are_refused():
    bars = _path([(100, 100, 100)] * 5)
    with pytest.raises(ValueError, match="atr has shape"):
        triple_barrier_labels(bars, np.full(4, ATR), CONFIG)
    bars.loc[2, "high"] = np.nan
    with pytest.raises(ValueError, match="high is nan at bar 2024-01-02 14:32:00"):
        triple_barrier_labels(bars, np.full(5, ATR), CONFIG)


def test_100k_bars_with_a_30_bar_horizon_take_well_under_a_second():
    bars = generate_bars(session_timestamps(datetime(2024, 1, 2, tzinfo=timezone.utc), 100_000), seed=3,
                         start_price=18000.0, tick_size=0.25)
    atr = average_true_range(bars)
    started = time.perf_counter()
    labels = triple_barrier_labels(bars, atr, LabelConfig(horizon=30))
    assert time.perf_counter() - started < 1.0
    assert labels.iloc[-30:].isna().all().all()
    assert 0.2 < labels["long"].mean() < 0.6


def _brute_force(high, low, close, atr, config):
    n, out = len(close), {"long": [], "short": []}
    for t in range(n):
        if t + config.horizon > n - 1 or not np.isfinite(atr[t]) or atr[t] <= 0:
            out["long"].append(np.nan)
            out["short"].append(np.nan)
            continue
        for side, sign in (("long", 1), ("short", -1)):
            take = close[t] + sign * config.tp_atr * atr[t]
            stop = close[t] - sign * config.sl_atr * atr[t]
            label = 0.0
            for k in range(t + 1, t + config.horizon + 1):
                hit_stop = low[k] <= stop if sign == 1 else high[k] >= stop
                hit_take = high[k] >= take if sign == 1 else low[k] <= take
                if hit_stop:
                    break
                if hit_take:
                    label = 1.0
                    break
            out[side].append(label)
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    horizon=st.integers(1, 12),
    tp=st.sampled_from([0.5, 1.0, 1.5, 2.0]),
    sl=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_labels_are_0_1_or_nan_and_agree_with_a_bar_by_bar_scan(seed, n, horizon, tp, sl):
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.integers(-3, 4, n)).astype(float)
    high = close + rng.integers(0, 3, n)
    low = close - rng.integers(0, 3, n)
    atr = rng.choice([np.nan, 0.0, 1.0, 2.0, 3.5], n)
    bars = pd.DataFrame({"high": high, "low": low, "close": close})
    config = LabelConfig(tp_atr=tp, sl_atr=sl, horizon=horizon)
    labels = triple_barrier_labels(bars, atr, config)
    values = labels.to_numpy()
    assert np.isin(values[~np.isnan(values)], (0.0, 1.0)).all()
    expected = _brute_force(high, low, close, atr, config)
    for side in ("long", "short"):
        assert np.array_equal(labels[side].to_numpy(), np.array(expected[side]), equal_nan=True)
