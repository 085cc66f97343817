"""The planted-signal generator: valid bars, a visible signal, and a label edge of the size it claims (none at 0)."""
import numpy as np
import pytest

from mlcore.domain.features import FEATURE_WINDOW, compute_features
from mlcore.domain.labels import LabelConfig
from mlcore.domain.planted import planted_probability, planted_rates, planted_signal_bars

CONFIG = LabelConfig()  # 1.5 ATR take-profit, 1 ATR stop, 30 bars


@pytest.fixture(scope="module")
def reference():
    """The generator's true rates at edge 0.2 and 0 (Monte Carlo, 400,000 bars each, its own seed)."""
    return {edge: planted_probability(edge=edge, config=CONFIG) for edge in (0.0, 0.2)}


def _tolerance(a_count: int, b_count: int, rate: float = 0.5) -> float:
    """Four standard errors of a difference between two independent rates."""
    return 4 * np.sqrt(rate * (1 - rate) * (1 / a_count + 1 / b_count))


def test_the_same_seed_gives_the_same_bars_and_signals():
    first, second = planted_signal_bars(500, seed=4, edge=0.3), planted_signal_bars(500, seed=4, edge=0.3)
    assert first[0].equals(second[0]) and np.array_equal(first[1], second[1])
    assert not planted_signal_bars(500, seed=5, edge=0.3)[0].equals(first[0])


def test_planted_bars_keep_the_bar_contract_on_the_tick_grid():
    bars, signal = planted_signal_bars(20_000, seed=1, edge=0.3, tick_size=0.25)
    assert list(bars.columns) == ["row", "timestamp", "open", "high", "low", "close", "volume"]
    assert str(bars["timestamp"].dt.tz) == "UTC" and bars["timestamp"].is_monotonic_increasing
    prices = bars[["open", "high", "low", "close"]].to_numpy()
    assert (prices > 0).all() and np.array_equal(prices / 0.25, np.round(prices / 0.25))
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] >= 0).all()
    assert signal.dtype == np.int8 and set(np.unique(signal)) == {-1, 0, 1}
    assert np.array_equal(bars["open"].to_numpy()[1:], bars["close"].to_numpy()[:-1])


def test_the_signal_is_visible_at_the_signal_bars_close():
    bars, signal = planted_signal_bars(20_000, seed=2, edge=0.3)
    features = compute_features(bars)
    on = (signal != 0) & (np.arange(len(bars)) >= FEATURE_WINDOW)
    assert (features["volume_z_60"][on] > 2.5).mean() > 0.95
    assert (features["volume_z_60"][~on].iloc[FEATURE_WINDOW:] > 2.5).mean() < 0.02
    direction = np.sign(bars["close"] - bars["open"]).to_numpy()
    assert np.array_equal(direction[signal != 0], signal[signal != 0])


def test_with_edge_zero_the_prices_ignore_the_signal():
    bars, signal = planted_signal_bars(200_000, seed=3, edge=0.0)
    log_close = np.log(bars["close"].to_numpy())
    ahead = log_close[30:] - log_close[:-30]  # the return over the next 30 bars
    after = signal[:-30]
    sd = ahead.std() / np.sqrt((after == 1).sum())
    assert abs(ahead[after == 1].mean()) < 4 * sd and abs(ahead[after == -1].mean()) < 4 * sd
    rates = planted_rates(bars, signal, CONFIG)
    assert abs(rates.bullish - rates.neutral) < _tolerance(rates.n_bullish, rates.n)
    assert abs(rates.bearish - rates.neutral) < _tolerance(rates.n_bearish, rates.n)


def test_the_monte_carlo_reference_shows_no_edge_at_zero_and_a_clear_one_at_0_2(reference):
    none, some = reference[0.0], reference[0.2]
    assert abs(none.bullish_shift) < 0.03 and abs(none.bearish - none.neutral) < 0.03
    assert some.bullish_shift > 0.15 and some.neutral - some.bearish > 0.15


def test_a_fresh_series_shows_the_planted_shift_that_the_reference_predicts(reference):
    bars, signal = planted_signal_bars(200_000, seed=7, edge=0.2)
    rates, truth = planted_rates(bars, signal, CONFIG), reference[0.2]
    tolerance = _tolerance(rates.n_bullish, truth.n_bullish)
    assert rates.bullish == pytest.approx(truth.bullish, abs=tolerance)
    assert rates.bearish == pytest.approx(truth.bearish, abs=_tolerance(rates.n_bearish, truth.n_bearish))
    assert rates.bullish_shift == pytest.approx(truth.bullish_shift, abs=tolerance + 0.01)


def test_the_short_side_mirrors_the_planted_signal():
    bars, signal = planted_signal_bars(100_000, seed=8, edge=0.3)
    short = planted_rates(bars, signal, CONFIG, side="short")
    assert short.bearish - short.neutral > 0.15 and short.neutral - short.bullish > 0.15


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"edge": -0.1}, "edge must be >= 0"),
    ({"edge": float("nan")}, "edge must be a finite number"),
    ({"tick_size": 0.0}, "tick_size must be > 0"),
    ({"spike_rate": 1.0}, r"spike_rate must be in \[0, 1\)"),
])
def test_invalid_generator_settings_are_refused(kwargs, message):
    arguments = {"n": 100, "seed": 1, "edge": 0.1, **kwargs}
    n = arguments.pop("n")
    with pytest.raises(ValueError, match=message):
        planted_signal_bars(n, **arguments)
