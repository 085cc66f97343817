"""Regime shifts of the synthetic source (`RegimeShift`): a volatility shock multiplies the realised volatility by its
factor, a trend adds its drift, both from the chosen bar on; the bars before it, and a normal source, are unchanged."""
import itertools
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from trading.domain.bars import frame_from_bars
from trading.domain.synthetic import (
    DEMO_SIGNAL,
    REGIME_SHIFTS,
    RegimeShift,
    SyntheticBarSource,
    SyntheticParams,
)

UTC = timezone.utc
NQ_TICK = 0.25
AFTER = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday: the first ~4,000 bars cross no weekend
PLANTED = SyntheticParams(**DEMO_SIGNAL)
# One regime, no volatility clustering and a flat day: every bar's sigma is exactly base_vol.
FLAT = SyntheticParams(
    log_vol_sd=0.0, regime_names=("normal",), regime_vol=(1.0,), regime_drift=(0.0,),
    regime_mean_minutes=(1.0,), regime_next=((0.0,),), asia_level=1.0, europe_level=1.0, premarket_level=1.0,
    cash_level=1.0, open_spike=0.0, close_spike=0.0, after_close_level=1.0, break_level=1.0,
    gap_vol_per_sqrt_hour=0.0,
)


def bars(n: int, *, params: SyntheticParams = SyntheticParams(), shift: RegimeShift | None = None,
         chunk: int = 500) -> pd.DataFrame:
    source = SyntheticBarSource(after=AFTER, last_close=18_000.0, tick_size=NQ_TICK, seed=3, params=params,
                                chunk=chunk, shift=shift)
    return frame_from_bars(itertools.islice(source, n))


def log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_the_regimes_offered_and_normal_is_the_default():
    assert REGIME_SHIFTS == ("normal", "volatility-shock", "trend")
    assert RegimeShift().kind == "normal" and not RegimeShift().active
    assert (RegimeShift().vol_factor, RegimeShift().trend_sigmas) == (4.0, 0.3)


@pytest.mark.parametrize("params", [SyntheticParams(), PLANTED], ids=["plain", "demo-signal"])
def test_a_normal_regime_changes_nothing(params):
    pd.testing.assert_frame_equal(bars(1_200, params=params, shift=RegimeShift()), bars(1_200, params=params))


@pytest.mark.parametrize("params", [SyntheticParams(), PLANTED], ids=["plain", "demo-signal"])
def test_a_volatility_shock_multiplies_the_realised_volatility_by_its_factor_from_its_bar_on(params):
    start = 1_111  # not on a chunk boundary
    shock = RegimeShift(kind="volatility-shock", after_bars=start)
    normal, shocked = bars(4_000, params=params), bars(4_000, params=params, shift=shock, chunk=500)

    pd.testing.assert_frame_equal(shocked.iloc[:start], normal.iloc[:start])
    # Same draws, each move scaled: the realised volatility (close to close) is 4x, and so is the bars' range.
    r_normal, r_shocked = log_returns(normal)[start:], log_returns(shocked)[start:]
    assert np.std(r_shocked) / np.std(r_normal) == pytest.approx(shock.vol_factor, rel=0.02)
    ranges = [(f["high"] - f["low"]).to_numpy()[start:].mean() for f in (normal, shocked)]
    # Within 10%: highs and lows are rounded outwards to the tick, and with the planted signal a spike bar that
    # closed at its open in the normal series (no signal) moves, and so drifts the next bars, in the shocked one.
    assert ranges[1] / ranges[0] == pytest.approx(shock.vol_factor, rel=0.1)
    # Volume follows the volatility level (elasticity 1).
    volume = shocked["volume"].to_numpy()[start:] / normal["volume"].to_numpy()[start:]
    assert np.median(volume) == pytest.approx(shock.vol_factor ** params.volume_vol_elasticity, rel=0.02)
    # Before the shock the two agree (the ratio is only the sampling noise of the same draws: exactly 1).
    assert np.std(log_returns(shocked)[:start - 1]) == np.std(log_returns(normal)[:start - 1])


def test_a_trend_adds_its_drift_in_units_of_the_bars_volatility():
    """With every bar's sigma = base_vol (FLAT), the trend moves the mean 1-bar log return by exactly
    trend_sigmas * base_vol, i.e. 0.3 of the realised per-bar volatility."""
    trend = RegimeShift(kind="trend", after_bars=500)
    normal, trending = bars(5_000, params=FLAT), bars(5_000, params=FLAT, shift=trend)

    pd.testing.assert_frame_equal(trending.iloc[:500], normal.iloc[:500])
    r_normal, r_trend = log_returns(normal)[499:], log_returns(trending)[499:]
    assert np.mean(r_trend - r_normal) == pytest.approx(trend.trend_sigmas * FLAT.base_vol, rel=0.01)
    assert np.std(r_normal) == pytest.approx(FLAT.base_vol, rel=0.05)
    standard_error = 1 / np.sqrt(len(r_trend))
    assert abs(np.mean(r_trend) / np.std(r_normal) - trend.trend_sigmas) < 3 * standard_error
    assert abs(np.mean(r_normal) / np.std(r_normal)) < 3 * standard_error


@pytest.mark.parametrize("params", [SyntheticParams(), PLANTED], ids=["plain", "demo-signal"])
def test_a_trend_on_the_realistic_process_drifts_up_persistently(params):
    normal, trending = bars(3_000, params=params), bars(3_000, params=params, shift=RegimeShift(kind="trend"))
    gap = np.log(trending["close"].to_numpy()) - np.log(normal["close"].to_numpy())
    one_tick = NQ_TICK / normal["close"].to_numpy()
    # The log-price gap only grows (up to the rounding of two closes to the tick) ...
    assert (np.diff(gap) > -2 * one_tick[1:]).all()
    # ... by about a quarter of the per-bar volatility a bar (0.3 of sigma_t, whose mean is below its RMS).
    ratio = np.mean(log_returns(trending)) / np.std(log_returns(normal))
    assert 0.2 < ratio < 0.32, ratio
    assert abs(np.mean(log_returns(normal)) / np.std(log_returns(normal))) < 0.06


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "crash"}, "unknown regime 'crash'; use one of normal, volatility-shock, trend"),
     ({"after_bars": -1}, "after_bars"), ({"after_bars": 1.5}, "after_bars"),
     ({"vol_factor": 0.0}, "vol_factor"), ({"trend_sigmas": float("nan")}, "trend_sigmas")],
)
def test_bad_regime_shifts_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RegimeShift(**kwargs)


def test_a_source_refuses_a_shift_that_is_not_a_regime_shift():
    with pytest.raises(ValueError, match="shift must be a RegimeShift"):
        SyntheticBarSource(after=AFTER, last_close=18_000.0, tick_size=NQ_TICK, seed=3, shift="trend")
