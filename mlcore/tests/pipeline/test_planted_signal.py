"""A planted signal of known strength: the pipeline (fast preset) finds it out of sample, and says how sure it is.

The series: `planted_signal_bars` with a volume spike on 5% of the bars and edge 0.5. After a bullish spike the long
take-profit comes first at the planted rate (Monte Carlo, `planted_probability`: 0.785), against 0.43 on bars
without a signal and 0.10 after a bearish spike (the short side mirrors it). Why these settings:
- at the generator's default 2% spikes the signal bars are ~1% of the data, and at 25,000 bars the fast preset's
  members do not pick the spike x direction interaction up at all (p after a bullish spike 0.395 vs 0.397);
- at edge 0.3 (planted rate 0.65) the long verdict was "Edge" on 3 of 4 series seeds, and p after a bullish spike
  rose by as little as 0.03 over the no-signal bars; at 0.5 every assertion below held on series seeds 11-14.
Everything below is measured on the last walk-forward fold (~6,600 bars, ~180 of them after each kind of spike),
which no layer of the model has seen.

What it took for the calibrated p after a spike to reach the planted rate (it was 0.58-0.61, 28-51% of the lift):
the drift after a spike lasts 30 bars and spikes come every ~20, so almost every bar sits in the drift of an
earlier spike, and the tree members added that earlier drift (seen through the returns) to a new spike's effect:
after a bullish spike that followed a bearish one, p was 0.36 against a realised 0.85. A robust, signed volume
z-score (`signed_volume_rz_30`) makes the spike one split, and the LSTM, which sees the last 20 rows, learns that
a new spike replaces the old drift; the meta-learner and calibrator, now cross-fitted on the outputs of members
like the shipped ones (`mlcore.training`), weight it accordingly.
"""
import math

import numpy as np
import pytest

from mlcore.domain.evaluation import expected_calibration_error
from mlcore.domain.labels import SIDES
from mlcore.domain.planted import planted_probability, planted_signal_bars
from mlcore.training import TrainConfig, train_model

from . import assert_fold_matches_report, evaluation_fold

N_BARS = 30_000
EDGE = 0.5
SPIKE_RATE = 0.05
SERIES_SEED = 11
CONFIG = TrainConfig(preset="fast", seed=SERIES_SEED)
# The signal that raises each side's take-profit-first rate: bullish for long, bearish for short.
RAISING = {"long": 1, "short": -1}
# Standard errors a sampled rate may stray from its planted value before a test calls it a miss.
Z = 3.0


@pytest.fixture(scope="module")
def series():
    return planted_signal_bars(N_BARS, seed=SERIES_SEED, edge=EDGE, spike_rate=SPIKE_RATE)


@pytest.fixture(scope="module")
def planted():
    """side -> the generator's true rates (Monte Carlo on 400,000 bars of an independent seed)."""
    return {side: planted_probability(edge=EDGE, config=CONFIG.label, side=side, spike_rate=SPIKE_RATE)
            for side in SIDES}


@pytest.fixture(scope="module")
def trained(series):
    return train_model(series[0], CONFIG)


@pytest.fixture(scope="module")
def fold(series):
    return evaluation_fold(series[0], CONFIG)


@pytest.fixture(scope="module")
def signal(series, fold):
    """The signal visible at each evaluation bar's close."""
    return series[1][fold.bar_index]


def _planted_rate(rates, signal_value: int) -> tuple[float, int]:
    return (rates.bullish, rates.n_bullish) if signal_value == 1 else (rates.bearish, rates.n_bearish)


def _tolerance(rate: float, n: int, reference_n: int) -> float:
    """Z standard errors of the gap between a rate measured on n bars and the Monte Carlo rate (on reference_n)."""
    return Z * math.sqrt(rate * (1 - rate) * (1 / n + 1 / reference_n))


def test_the_rebuilt_evaluation_fold_is_the_one_the_report_scored(trained, fold):
    assert_fold_matches_report(trained, fold)


@pytest.mark.parametrize("side", SIDES)
def test_on_unseen_bars_the_realised_rate_after_the_signal_is_the_planted_rate(planted, fold, signal, side):
    """The labels of the evaluation fold carry the planted signal (~180 signal bars: tolerance ~0.09)."""
    on = signal == RAISING[side]
    rate, reference_n = _planted_rate(planted[side], RAISING[side])
    realised = fold.labels[side][on].mean()
    tolerance = _tolerance(rate, int(on.sum()), reference_n)
    assert on.sum() >= 100
    assert abs(realised - rate) <= tolerance, (realised, rate, tolerance)


def test_the_long_side_has_an_edge_over_every_baseline(trained):
    report = trained.report["long"]
    verdict = report["verdict"]
    assert verdict["has_edge"] is True, verdict["statement"]
    assert verdict["statement"].startswith("Edge: the long meta-learner's out-of-sample log loss")
    assert trained.has_edge is True
    assert trained.statement.startswith("Long: Edge:")
    meta, baselines = report["meta"], report["baselines"]
    assert meta["accuracy"] >= baselines["majority"]["accuracy"] + 0.05
    assert meta["roc_auc"] >= 0.7
    assert meta["roc_auc"] >= max(b["roc_auc"] for name, b in baselines.items() if name != "majority")


@pytest.mark.parametrize("side", SIDES)
def test_the_calibrated_probability_moves_with_the_signal_and_does_not_overstate_it(
        trained, planted, fold, signal, side):
    """After the signal that favours this side, p is clearly higher than on bars without a signal (by more than
    Z standard errors of the two means), after the opposite one clearly lower, and neither goes past the planted
    rate by more than sampling noise."""
    p = fold.probabilities(trained, side)["calibrated"]
    none = p[signal == 0]
    for signal_value, direction in ((RAISING[side], 1), (-RAISING[side], -1)):
        on = p[signal == signal_value]
        standard_error = math.sqrt(on.var() / len(on) + none.var() / len(none))
        shift = direction * (on.mean() - none.mean())
        assert shift >= Z * standard_error, (side, signal_value, on.mean(), none.mean(), standard_error)
        rate, reference_n = _planted_rate(planted[side], signal_value)
        # Never more extreme than the truth (plus the noise of a rate estimated on a fold of this size).
        assert direction * (on.mean() - rate) <= _tolerance(rate, len(on), reference_n), (side, signal_value)


@pytest.mark.parametrize("side", SIDES)
def test_the_calibrated_probability_after_the_signal_is_the_planted_rate(trained, planted, fold, signal, side):
    """Calibrated to the truth on unseen bars: the mean calibrated p after the signal is the planted rate, within
    Z standard errors of a rate estimated on as many bars as the fold holds (~0.09: the calibrator, fitted on a
    fold of the same size, can know the rate no better than that)."""
    on = signal == RAISING[side]
    p = fold.probabilities(trained, side)["calibrated"][on]
    rate, reference_n = _planted_rate(planted[side], RAISING[side])
    assert abs(p.mean() - rate) <= _tolerance(rate, int(on.sum()), reference_n), (p.mean(), rate)


def _block_bootstrap_sd(y, p_after, p_before, *, block: int = 100, reps: int = 300, seed: int = 0) -> float:
    """Standard deviation of ECE(after) - ECE(before) over block-bootstrap resamples of the fold (blocks of
    consecutive bars, so the 30-bar overlap of the labels is kept inside a block)."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0, len(y) - block + 1, block)
    diffs = []
    for _ in range(reps):
        index = (rng.choice(starts, len(starts))[:, None] + np.arange(block)).ravel()
        diffs.append(expected_calibration_error(y[index], p_after[index])
                     - expected_calibration_error(y[index], p_before[index]))
    return float(np.std(diffs, ddof=1))


@pytest.mark.parametrize("side", SIDES)
def test_calibration_does_not_raise_the_held_out_ece_beyond_sampling_noise(trained, fold, side):
    """The report's ECE after calibration is at most the raw meta-learner's plus two block-bootstrap standard
    deviations of their difference. Not "lower": that does not hold in general. The raw meta-learner is a logistic
    regression fitted on cross-fitted member outputs, close to calibrated already, and the calibrator, fitted on
    its cross-fitted outputs, leaves it unchanged unless a map gains at least MIN_IMPROVEMENT in cross-validation
    (near-identity maps raised the held-out ECE beyond this noise when they were always applied)."""
    calibration = trained.report[side]["calibration"]
    p = fold.probabilities(trained, side)
    y = fold.labels[side]
    assert calibration["ece_before"] == expected_calibration_error(y, p["meta_raw"])
    assert calibration["ece_after"] == expected_calibration_error(y, p["calibrated"])
    noise = _block_bootstrap_sd(y, p["calibrated"], p["meta_raw"])
    assert calibration["ece_after"] <= calibration["ece_before"] + 2 * noise, (calibration, noise)
