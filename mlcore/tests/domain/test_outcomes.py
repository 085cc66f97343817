"""Live outcomes by the labels' own triple-barrier rule: hand-built paths, and agreement with the labels."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.domain.labels import LabelConfig, barrier_outcome, triple_barrier_labels

CONFIG = LabelConfig(tp_atr=1.5, sl_atr=1.0, horizon=4)


def test_the_long_take_profit_first_and_the_short_stop_on_the_same_bar():
    # Entry 100, ATR 2: long take-profit 103, stop 98; short take-profit 97, stop 102.
    out = barrier_outcome(100.0, 2.0, high=[101, 103.5, 100], low=[99.5, 100, 95], close=[100, 103, 96],
                          config=CONFIG)
    assert out["long"].outcome == "take_profit" and out["long"].exit_offset == 2
    assert out["long"].realised_return == pytest.approx(3 / 100)
    assert out["short"].outcome == "stop" and out["short"].exit_offset == 2
    assert out["short"].realised_return == pytest.approx(-2 / 100)


def test_both_barriers_on_one_bar_count_as_the_stop():
    out = barrier_outcome(100.0, 2.0, high=[104], low=[97], close=[100], config=CONFIG)
    assert out["long"].outcome == "stop" and out["short"].outcome == "stop"


def test_a_timeout_realises_the_last_close_and_a_short_gains_when_the_price_falls():
    out = barrier_outcome(100.0, 2.0, high=[100.5] * 4, low=[99.5] * 4, close=[100, 100, 99, 99.5], config=CONFIG)
    assert out["long"].outcome == "timeout" and out["long"].exit_offset == 4
    assert out["long"].realised_return == pytest.approx(-0.005)
    assert out["short"].realised_return == pytest.approx(0.005)


def test_an_open_side_with_fewer_bars_than_the_horizon_is_pending():
    out = barrier_outcome(100.0, 2.0, high=[100.5, 100.5], low=[99.5, 99.5], close=[100, 100], config=CONFIG)
    assert out == {"long": None, "short": None}


def test_a_gap_through_the_stop_realises_the_stop_level_not_the_gap():
    out = barrier_outcome(100.0, 2.0, high=[95], low=[90], close=[91], config=CONFIG)
    assert out["long"].outcome == "stop" and out["long"].realised_return == pytest.approx(-0.02)


@pytest.mark.parametrize("entry, atr", [(0.0, 1.0), (100.0, 0.0), (100.0, float("nan"))])
def test_an_unusable_entry_or_atr_is_refused(entry, atr):
    with pytest.raises(ValueError):
        barrier_outcome(entry, atr, [1], [1], [1], CONFIG)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 8))
def test_outcomes_agree_with_the_labels_wherever_the_labels_resolve(seed, horizon):
    rng = np.random.default_rng(seed)
    n = 40
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    high = close + rng.uniform(0, 1.5, n)
    low = close - rng.uniform(0, 1.5, n)
    atr = rng.uniform(0.5, 2.0, n)
    config = LabelConfig(tp_atr=1.5, sl_atr=1.0, horizon=horizon)
    labels = triple_barrier_labels(pd.DataFrame({"high": high, "low": low, "close": close}), atr, config)
    for t in range(n - horizon):
        out = barrier_outcome(close[t], atr[t], high[t + 1:], low[t + 1:], close[t + 1:], config)
        for side in ("long", "short"):
            assert labels[side].iloc[t] == (1.0 if out[side].outcome == "take_profit" else 0.0)
