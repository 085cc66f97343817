"""Calibration: it repairs a miscalibrated classifier on held-out data, picks its method honestly, and stores
itself as plain JSON that rebuilds the same map."""
import json

import numpy as np
import pytest

from mlcore.domain.calibration import MIN_IMPROVEMENT, Calibrator, cross_validated_log_loss, fit_calibrator
from mlcore.domain.evaluation import binary_metrics


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _overconfident(n, seed):
    """True probabilities, outcomes drawn from them, and a classifier's overconfident p = sigmoid(2 logit p)."""
    rng = np.random.default_rng(seed)
    p_true = rng.beta(4, 4, n)
    y = (rng.random(n) < p_true).astype(float)
    return _sigmoid(2 * _logit(p_true)), y


def _stepped(n, seed):
    """A classifier whose score is informative only through a threshold: no sigmoid of its logit fits."""
    rng = np.random.default_rng(seed)
    p_raw = rng.uniform(0.05, 0.95, n)
    p_true = np.where(p_raw < 0.5, 0.3, 0.7)
    return p_raw, (rng.random(n) < p_true).astype(float)


@pytest.mark.parametrize("method", ["auto", "isotonic", "platt"])
def test_calibration_lowers_the_held_out_ece_and_log_loss_of_an_overconfident_classifier(method):
    fit_p, fit_y = _overconfident(4000, seed=1)
    test_p, test_y = _overconfident(20000, seed=2)
    calibrator = fit_calibrator(fit_p, fit_y, method=method, seed=0)
    before, after = binary_metrics(test_y, test_p), binary_metrics(test_y, calibrator.transform(test_p))
    assert before["ece"] > 0.05
    assert after["ece"] < before["ece"] / 3
    assert after["log_loss"] < before["log_loss"]


def test_auto_picks_platt_when_the_distortion_is_a_sigmoid_and_reports_both_scores():
    p, y = _overconfident(4000, seed=3)
    calibrator = fit_calibrator(p, y, seed=0)
    assert calibrator.method == "platt"
    assert set(calibrator.cv_log_loss) == {"identity", "isotonic", "platt"}
    assert calibrator.cv_log_loss["platt"] < calibrator.cv_log_loss["identity"] - MIN_IMPROVEMENT
    assert calibrator.cv_log_loss["platt"] <= calibrator.cv_log_loss["isotonic"]
    # Platt recovers the planted distortion: p_true = sigmoid(0.5 * logit(p_raw)).
    assert calibrator.a == pytest.approx(0.5, abs=0.08)
    assert calibrator.b == pytest.approx(0.0, abs=0.08)


def test_auto_picks_isotonic_when_no_sigmoid_fits():
    p, y = _stepped(6000, seed=4)
    calibrator = fit_calibrator(p, y, seed=0)
    assert calibrator.method == "isotonic"
    assert calibrator.cv_log_loss["isotonic"] < calibrator.cv_log_loss["platt"]


def test_auto_leaves_already_calibrated_probabilities_unchanged():
    """Outcomes drawn from the raw probabilities themselves: no fitted map gains MIN_IMPROVEMENT out of fold, so
    the identity is kept (and a fitted map's estimation noise is not added)."""
    rng = np.random.default_rng(8)
    p = rng.beta(4, 4, 20000)
    y = (rng.random(len(p)) < p).astype(float)
    calibrator = fit_calibrator(p, y, seed=0)
    assert calibrator.method == "identity"
    assert min(calibrator.cv_log_loss["platt"], calibrator.cv_log_loss["isotonic"]) > (
        calibrator.cv_log_loss["identity"] - MIN_IMPROVEMENT)
    assert np.array_equal(calibrator.transform(p), np.clip(p, 1e-6, 1 - 1e-6))
    rebuilt = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert rebuilt.method == "identity" and np.array_equal(rebuilt.transform(p), calibrator.transform(p))
    assert rebuilt.transform_one(0.3) == 0.3


def test_the_choice_is_reproducible_for_a_seed():
    p, y = _overconfident(1000, seed=5)
    assert cross_validated_log_loss(p, y, seed=7) == cross_validated_log_loss(p, y, seed=7)


@pytest.mark.parametrize("make", [_overconfident, _stepped])
def test_a_calibrator_rebuilt_from_its_json_gives_identical_outputs(make):
    p, y = make(3000, seed=6)
    calibrator = fit_calibrator(p, y, seed=0)
    rebuilt = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    grid = np.r_[np.linspace(0.0, 1.0, 1001), p]
    assert rebuilt.method == calibrator.method
    assert rebuilt.cv_log_loss == calibrator.cv_log_loss
    assert np.array_equal(rebuilt.transform(grid), calibrator.transform(grid))


def test_outputs_are_clipped_away_from_0_and_1_and_one_value_matches_the_array_path():
    p, y = _stepped(2000, seed=8)
    for method in ("isotonic", "platt"):
        calibrator = fit_calibrator(p, y, method=method)
        out = calibrator.transform([0.0, 1e-12, 0.5, 1.0])
        assert out.min() >= 1e-6 and out.max() <= 1 - 1e-6
        for value in (0.0, 0.123, 0.5, 0.87, 1.0):
            assert calibrator.transform_one(value) == calibrator.transform([value])[0]


def test_isotonic_output_is_monotone_and_interpolates_between_thresholds():
    calibrator = Calibrator(method="isotonic", thresholds=np.array([0.2, 0.6]), values=np.array([0.3, 0.5]))
    assert calibrator.transform([0.0, 0.2, 0.4, 0.6, 0.9]).tolist() == [0.3, 0.3, 0.4, 0.5, 0.5]


def test_platt_with_unit_slope_and_no_intercept_is_the_identity():
    calibrator = Calibrator(method="platt", a=1.0, b=0.0)
    grid = np.linspace(0.01, 0.99, 99)
    np.testing.assert_allclose(calibrator.transform(grid), grid, rtol=1e-12)


@pytest.mark.parametrize("p, y, message", [
    ([0.5] * 20, [1.0] * 20, "needs both classes"),
    ([0.5] * 19 + [np.nan], [0.0, 1.0] * 10, "finite probabilities"),
    ([0.5] * 20, [0.0, 1.0] * 9 + [np.nan, 1.0], "only 0 and 1"),
    ([0.5] * 5, [0.0, 1.0, 0.0, 1.0, 0.0], "at least 10 held-out samples"),
    ([0.5] * 20, [0.0, 1.0] * 5, "p_raw has 20 values, y has 10"),
    ([0.5] * 20, [0.0] * 19 + [1.0], "at least 2 examples of each class"),
])
def test_unusable_calibration_data_is_refused_with_the_reason(p, y, message):
    with pytest.raises(ValueError, match=message):
        fit_calibrator(p, y)


def test_unknown_methods_and_malformed_stored_calibrators_are_refused():
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        fit_calibrator([0.2, 0.8] * 10, [0.0, 1.0] * 10, method="beta")
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator.from_dict({"method": "spline"})
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibrator.from_dict({"method": "isotonic", "thresholds": [0.1, 0.5], "values": [0.6, 0.4]})


def test_platt_never_inverts_a_ranking_that_is_backwards_on_held_out_data():
    rng = np.random.default_rng(11)
    p_raw = rng.uniform(0.2, 0.8, 4000)
    y = (rng.uniform(size=4000) < 1.0 - p_raw).astype(float)  # held-out outcomes run against the ranking

    calibrator = fit_calibrator(p_raw, y, method="platt")

    assert calibrator.a == 0.0
    calibrated = calibrator.transform(np.array([0.2, 0.5, 0.8]))
    assert calibrated[0] == pytest.approx(calibrated[2])  # flat: the base rate for every input
    assert calibrated[1] == pytest.approx(y.mean(), abs=0.01)
