"""A pure random walk (the planted generator with edge 0: volume spikes that say nothing): the pipeline reports no
edge on either side, and its calibrated probabilities stay at the base rate instead of inventing signals."""
import math

import numpy as np
import pytest

from mlcore.domain.features import average_true_range
from mlcore.domain.labels import SIDES, triple_barrier_labels
from mlcore.domain.planted import REFERENCE_SEED, planted_signal_bars
from mlcore.training import TrainConfig, train_model

from . import assert_fold_matches_report, evaluation_fold

N_BARS = 20_000
SPIKE_RATE = 0.05  # as in the planted-signal test, so the two differ only in the edge
SERIES_SEED = 21
CONFIG = TrainConfig(preset="fast", seed=SERIES_SEED)
REFERENCE_BARS = 400_000
# A model without information should not move p around: the spread of its calibrated probabilities stays below
# this (the planted-signal model's is ~0.1). At p ~ 0.4 and b = 1.5 a change of 0.02 in p moves Kelly's fraction
# by 0.033.
MAX_SPREAD = 0.02


@pytest.fixture(scope="module")
def bars():
    return planted_signal_bars(N_BARS, seed=SERIES_SEED, edge=0.0, spike_rate=SPIKE_RATE)[0]


@pytest.fixture(scope="module")
def trained(bars):
    return train_model(bars, CONFIG)


@pytest.fixture(scope="module")
def fold(bars):
    return evaluation_fold(bars, CONFIG)


@pytest.fixture(scope="module")
def reference(fold):
    """side -> (true base rate, standard deviation of the base rate of a fold as long as the evaluation fold),
    from 400,000 bars of the same generator on an independent seed. The labels of neighbouring bars share most of
    their 30-bar future, so that deviation is about twice the independent-samples figure (~0.014, not 0.007)."""
    reference_bars = planted_signal_bars(REFERENCE_BARS, seed=REFERENCE_SEED, edge=0.0, spike_rate=SPIKE_RATE)[0]
    labels = triple_barrier_labels(reference_bars, average_true_range(reference_bars), CONFIG.label)
    block = len(fold.bar_index)
    out = {}
    for side in SIDES:
        y = labels[side].dropna().to_numpy()
        blocks = y[: len(y) // block * block].reshape(-1, block).mean(axis=1)
        out[side] = (float(y.mean()), float(blocks.std(ddof=1)))
    return out


def test_the_rebuilt_evaluation_fold_is_the_one_the_report_scored(trained, fold):
    assert_fold_matches_report(trained, fold)


def test_no_edge_is_reported_on_either_side(trained):
    for side in SIDES:
        verdict = trained.report[side]["verdict"]
        assert verdict["has_edge"] is False, verdict["statement"]
        assert verdict["statement"].startswith(f"No edge: the {side} meta-learner's out-of-sample log loss")
    assert trained.has_edge is False
    assert trained.statement.startswith("Long: No edge:")
    assert " Short: No edge:" in trained.statement


@pytest.mark.parametrize("side", SIDES)
def test_the_calibrated_probabilities_stay_at_the_base_rate(trained, fold, reference, side):
    """On unseen bars the calibrated p hardly varies, and its mean is the base rate: within 3 standard deviations
    of the true one (the calibrator learns it from one fold), and within 3 x sqrt(2) of the evaluation fold's own
    (two folds' base rates differ by that much by chance alone); with ~5,000-bar folds both are ~0.04-0.06."""
    p = fold.probabilities(trained, side)["calibrated"]
    y = fold.labels[side]
    true_rate, fold_sd = reference[side]
    assert p.std() <= MAX_SPREAD, p.std()
    low, high = np.quantile(p, [0.01, 0.99])
    assert high - low <= 2.5 * MAX_SPREAD, (low, high)
    assert abs(p.mean() - true_rate) <= 3 * fold_sd, (p.mean(), true_rate, fold_sd)
    assert abs(p.mean() - y.mean()) <= 3 * math.sqrt(2) * fold_sd, (p.mean(), y.mean(), fold_sd)
