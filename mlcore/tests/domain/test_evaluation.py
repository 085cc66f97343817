"""Evaluation: metrics on known values, purged walk-forward splits, the baselines, and an honest edge verdict."""
import math

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from mlcore.domain.evaluation import (
    BASELINES,
    baseline_probabilities,
    binary_metrics,
    edge_verdict,
    expected_calibration_error,
    purged_block_splits,
    walk_forward_splits,
)
from mlcore.domain.features import FEATURE_NAMES, MOMENTUM_FEATURE, average_true_range, compute_features
from mlcore.domain.labels import LabelConfig, triple_barrier_labels
from mlcore.domain.planted import planted_signal_bars


def test_binary_metrics_on_a_hand_checked_example():
    y = [0, 1, 1, 0]
    p = [0.2, 0.8, 0.6, 0.4]
    metrics = binary_metrics(y, p)
    assert metrics["accuracy"] == 1.0
    assert metrics["log_loss"] == pytest.approx(-(2 * math.log(0.8) + 2 * math.log(0.6)) / 4)
    assert metrics["brier"] == pytest.approx((0.04 + 0.04 + 0.16 + 0.16) / 4)
    assert metrics["roc_auc"] == 1.0
    assert metrics["ece"] == pytest.approx((0.2 + 0.2 + 0.4 + 0.4) / 4)
    assert (metrics["n"], metrics["base_rate"], metrics["mean_p"]) == (4, 0.5, pytest.approx(0.5))


def test_a_probability_of_one_half_predicts_the_positive_class():
    assert binary_metrics([1, 0], [0.5, 0.49])["accuracy"] == 1.0


def test_roc_auc_is_nan_when_only_one_class_is_present_and_the_rest_still_works():
    metrics = binary_metrics([1, 1, 1], [0.9, 0.6, 1.0])
    assert math.isnan(metrics["roc_auc"])
    assert math.isfinite(metrics["log_loss"]) and metrics["accuracy"] == 1.0


def test_ece_uses_ten_equal_width_bins_with_the_last_one_closed():
    # 1.0 falls in [0.9, 1.0]; 0.95 too: one bin with mean p 0.975 and rate 0.5.
    assert expected_calibration_error([1, 0], [1.0, 0.95]) == pytest.approx(0.475)
    # 0.1 opens the second bin; 0.0999 stays in the first.
    assert expected_calibration_error([0, 1], [0.0999, 0.1]) == pytest.approx((0.0999 + 0.9) / 2)


def test_ece_of_a_calibrated_forecaster_is_close_to_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.01


def test_bad_metric_inputs_are_refused():
    with pytest.raises(ValueError, match="only 0 and 1"):
        binary_metrics([0, np.nan], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite probabilities"):
        binary_metrics([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="y has 2 values, p has 3"):
        binary_metrics([0, 1], [0.5, 0.5, 0.5])


@pytest.mark.parametrize("n, n_folds, gap, min_train", [(1000, 5, 30, 300), (101, 3, 0, 10), (5000, 4, 60, 1000)])
def test_walk_forward_folds_are_ordered_contiguous_purged_and_cover_the_tail(n, n_folds, gap, min_train):
    splits = walk_forward_splits(n, n_folds=n_folds, gap=gap, min_train=min_train)
    assert len(splits) == n_folds
    tests = np.concatenate([test for _, test in splits])
    assert np.array_equal(tests, np.arange(min_train + gap, n))  # ordered, contiguous, no overlap, to the end
    sizes = [len(test) for _, test in splits]
    assert max(sizes) - min(sizes) <= 1
    for train, test in splits:
        assert train[0] == 0 and np.array_equal(train, np.arange(len(train)))  # expanding from the start
        assert len(train) >= min_train
        assert test[0] - train[-1] - 1 == gap  # exactly `gap` samples purged between them
        assert not np.intersect1d(train, test).size


def test_with_the_horizon_as_gap_no_training_label_sees_the_test_folds_bars():
    horizon = 30
    for train, test in walk_forward_splits(2000, n_folds=5, gap=horizon, min_train=500):
        # The label of sample i reads bars i+1 .. i+H; the test fold's features read bars up to its start.
        assert train[-1] + horizon < test[0]


def test_purged_block_splits_test_every_block_once_and_purge_gap_samples_on_both_sides():
    bounds, gap = [0, 400, 700, 1000], 30
    splits = purged_block_splits(bounds, gap=gap)
    assert np.array_equal(np.concatenate([test for _, test in splits]), np.arange(1000))
    for (train, test), start, stop in zip(splits, bounds[:-1], bounds[1:]):
        assert np.array_equal(test, np.arange(start, stop))
        expected = np.r_[np.arange(0, max(start - gap, 0)), np.arange(min(stop + gap, 1000), 1000)]
        assert np.array_equal(train, expected)
        # No training label (bars i+1 .. i+gap) reaches into the block, and no block label into a training bar.
        assert not ((train < start) & (train + gap >= start)).any()
        assert not ((train >= stop) & (train < stop + gap)).any()


def test_purged_block_splits_refuse_bad_bounds():
    with pytest.raises(ValueError, match="at least 2 blocks"):
        purged_block_splits([0, 100], gap=3)
    with pytest.raises(ValueError, match="increase strictly"):
        purged_block_splits([0, 50, 50, 100], gap=3)
    with pytest.raises(ValueError, match="no training samples"):
        purged_block_splits([0, 10, 20], gap=15)


def test_walk_forward_refuses_too_few_samples_with_the_arithmetic():
    with pytest.raises(ValueError, match=r"too few samples for walk-forward evaluation: 100 samples, but 80 "
                                         r"\(min_train\) \+ 30 \(gap\) \+ at least 1 per test fold x 5 folds = 115"):
        walk_forward_splits(100, n_folds=5, gap=30, min_train=80)
    with pytest.raises(ValueError, match="n_folds must be an integer >= 1"):
        walk_forward_splits(100, n_folds=0, gap=3, min_train=10)


def test_baselines_learn_from_the_training_data_only():
    rng = np.random.default_rng(0)
    train_X = rng.standard_normal((4000, 3))
    train_y = (rng.random(4000) < np.where(train_X[:, 1] > 0, 0.7, 0.3)).astype(float)
    test_X = np.array([[0.0, 2.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    out = baseline_probabilities(train_X, train_y, test_X, momentum_col=1, seed=0)
    assert set(out) == set(BASELINES)
    assert np.all(out["majority"] == pytest.approx(train_y.mean()))
    assert out["momentum"][0] == pytest.approx(0.7, abs=0.03) and out["momentum"][1] == pytest.approx(0.3, abs=0.03)
    assert out["momentum"][2] == pytest.approx(train_y.mean())  # a zero sign never seen in training: base rate
    assert out["logistic"][0] > 0.6 > 0.4 > out["logistic"][1]


def test_baselines_survive_a_training_set_with_one_class():
    out = baseline_probabilities(np.ones((10, 2)), np.zeros(10), np.ones((3, 2)), momentum_col=0, seed=0)
    assert (out["logistic"] == out["majority"]).all() and (out["majority"] < 1e-5).all()


def _metrics(log_loss, roc_auc):
    return {"log_loss": log_loss, "roc_auc": roc_auc}


def test_no_edge_when_a_baseline_has_the_lower_log_loss_naming_it_and_both_figures():
    verdict = edge_verdict(
        _metrics(0.6931, 0.51),
        {"majority": _metrics(0.6925, 0.5), "momentum": _metrics(0.6940, 0.50), "logistic": _metrics(0.6950, 0.49)},
    )
    assert verdict["has_edge"] is False
    assert verdict["statement"] == (
        "No edge: the meta-learner's out-of-sample log loss 0.6931 is not better than the majority baseline's 0.6925."
    )


def test_no_edge_when_the_improvement_is_below_the_margin():
    verdict = edge_verdict(_metrics(0.6915, 0.55), {"majority": _metrics(0.6925, 0.5)})
    assert verdict["has_edge"] is False
    assert "by only 0.0010, less than the required 0.0020" in verdict["statement"]


def test_no_edge_when_the_model_ranks_worse_than_a_baseline():
    verdict = edge_verdict(_metrics(0.60, 0.55), {"majority": _metrics(0.69, 0.5), "logistic": _metrics(0.65, 0.58)})
    assert verdict["has_edge"] is False
    assert "ROC AUC 0.5500 is below the logistic baseline's 0.5800" in verdict["statement"]


def test_an_edge_needs_a_lower_log_loss_than_every_baseline_and_at_least_the_best_auc():
    verdict = edge_verdict(
        _metrics(0.6500, 0.62), {"majority": _metrics(0.6900, 0.5), "logistic": _metrics(0.6700, 0.58)},
        model_name="LightGBM member",
    )
    assert verdict["has_edge"] is True
    assert verdict["statement"].startswith("Edge: the LightGBM member's out-of-sample log loss 0.6500 beats every")
    assert verdict["best_baseline_by_log_loss"] == "logistic"
    assert verdict["log_loss_improvement"] == pytest.approx(0.02)


def _walk_forward_verdict(edge: float, *, seed: int) -> dict:
    """Features, labels, purged walk-forward folds, a gradient-boosted model and the baselines, end to end."""
    config = LabelConfig(horizon=30)
    bars, _ = planted_signal_bars(9000, seed=seed, edge=edge, spike_rate=0.06)
    features = compute_features(bars).to_numpy()
    labels = triple_barrier_labels(bars, average_true_range(bars), config)["long"].to_numpy()
    keep = np.isfinite(features).all(axis=1) & ~np.isnan(labels)
    X, y = features[keep], labels[keep]
    model_p, baseline_p, truth = [], {name: [] for name in BASELINES}, []
    for train, test in walk_forward_splits(len(y), n_folds=3, gap=config.horizon, min_train=3000):
        model = HistGradientBoostingClassifier(max_iter=50, max_depth=3, learning_rate=0.05, random_state=seed)
        with threadpool_limits(limits=1):  # OpenMP threads only fight over a busy machine at this size
            model.fit(X[train], y[train])
        model_p.append(model.predict_proba(X[test])[:, 1])
        momentum_col = FEATURE_NAMES.index(MOMENTUM_FEATURE)
        for name, p in baseline_probabilities(X[train], y[train], X[test], momentum_col=momentum_col,
                                              seed=seed).items():
            baseline_p[name].append(p)
        truth.append(y[test])
    y_all = np.concatenate(truth)
    return edge_verdict(
        binary_metrics(y_all, np.concatenate(model_p)),
        {name: binary_metrics(y_all, np.concatenate(p)) for name, p in baseline_p.items()},
        model_name="gradient-boosted model",
    )


def test_on_a_random_walk_the_walk_forward_verdict_is_no_edge():
    verdict = _walk_forward_verdict(0.0, seed=3)
    assert verdict["has_edge"] is False
    assert verdict["statement"].startswith("No edge: the gradient-boosted model's out-of-sample log loss")


def test_with_a_strong_planted_signal_the_walk_forward_verdict_finds_the_edge():
    # Seeds 0-9 at this strength: 9 of 10 clear both tests (seed 0 beats the log loss by only 0.0029 and
    # trails the AUC); this one by 0.047 in log loss and 0.03 in AUC.
    verdict = _walk_forward_verdict(0.6, seed=7)
    assert verdict["has_edge"] is True, verdict["statement"]
