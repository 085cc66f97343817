"""Live metrics against hand-computed values and scikit-learn, and verdicts that do not flip with sample size."""
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from monitoring.domain import metrics as m


def calibrated_sample(n, seed=0, low=0.3, high=0.9):
    rng = np.random.default_rng(seed)
    p = rng.uniform(low, high, n)
    return (rng.uniform(size=n) < p).astype(float), p


def test_metrics_of_a_hand_made_window():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    p = np.array([0.9, 0.2, 0.65, 0.55, 0.45, 0.7, 0.3, 0.1])
    out = m.window_metrics(y, p, min_count=1)["metrics"]
    assert out["accuracy"]["value"] == pytest.approx(6 / 8)  # 0.7 on a 0 and 0.3 on a 1 are the misses
    assert out["brier"]["value"] == pytest.approx(np.mean((p - y) ** 2))
    assert out["log_loss"]["value"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    # ECE by hand: buckets 0.1 {0.1:0}, 0.2 {0.2:0}, 0.3 {0.3:1}, 0.4 {0.45:0}, 0.5 {0.55:1}, 0.6 {0.65:1},
    # 0.7 {0.7:0}, 0.9 {0.9:1}: sum of |hits - sum p| / n.
    by_hand = (0.1 + 0.2 + 0.7 + 0.45 + 0.45 + 0.35 + 0.7 + 0.1) / 8
    assert out["ece"]["value"] == pytest.approx(by_hand)


def test_metrics_agree_with_scikit_learn():
    y, p = calibrated_sample(3000, seed=1)
    out = m.window_metrics(y, p)["metrics"]
    assert out["brier"]["value"] == pytest.approx(brier_score_loss(y, p))
    assert out["log_loss"]["value"] == pytest.approx(log_loss(y, p))
    assert out["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))


def test_the_reliability_table_agrees_with_scikit_learns_calibration_curve():
    y, p = calibrated_sample(5000, seed=2, low=0.0, high=1.0)
    table = m.reliability_table(y, p)
    rate, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    ours = [(row["realised_rate"], row["mean_predicted"]) for row in table if row["count"]]
    assert np.allclose([r for r, _ in ours], rate) and np.allclose([q for _, q in ours], predicted)
    assert sum(row["count"] for row in table) == 5000
    assert all(row["rate_low"] <= row["realised_rate"] <= row["rate_high"] for row in table if row["count"])


def test_no_verdict_under_the_minimum_count_and_the_page_can_say_so():
    y, p = calibrated_sample(30)
    out = m.window_metrics(y, p, expected={"accuracy": 0.9, "n": 1000}, min_count=50)
    assert out["sufficient"] is False and out["min_count"] == 50
    assert {entry["verdict"] for entry in out["metrics"].values()} == {"insufficient"}


def test_a_calibrated_window_is_as_expected_and_a_broken_one_is_worse():
    y, p = calibrated_sample(2000, seed=3)
    expected = m.window_metrics(y, p)["metrics"]
    reference = {name: expected[name]["value"] for name in ("accuracy", "log_loss", "brier", "ece", "roc_auc")}
    reference |= {"n": 2000, "base_rate": float(y.mean())}
    fresh_y, fresh_p = calibrated_sample(2000, seed=4)
    same = m.window_metrics(fresh_y, fresh_p, expected=reference)
    assert same["metrics"]["log_loss"]["verdict"] == "as expected"
    assert same["metrics"]["accuracy"]["verdict"] == "as expected"
    assert same["calibration_test"]["p_value"] > 0.01
    # Outcomes no longer follow the probabilities: a coin flip whatever p says.
    rng = np.random.default_rng(5)
    broken = m.window_metrics((rng.uniform(size=2000) < 0.5).astype(float), fresh_p, expected=reference)
    assert broken["metrics"]["log_loss"]["verdict"] == "worse"
    assert broken["metrics"]["roc_auc"]["verdict"] == "worse"
    assert broken["calibration_test"]["p_value"] < 1e-6
    assert broken["hit_rate"]["p_value"] < 0.5  # the shortfall direction only: p-values near 0 are shortfalls


@pytest.mark.parametrize("n", [60, 200, 1000, 5000])
def test_a_calibrated_model_is_not_called_worse_at_any_sample_size(n):
    y, p = calibrated_sample(n, seed=n)
    reference = {"accuracy": 0.6, "log_loss": m.window_metrics(*calibrated_sample(20000, seed=99))["metrics"]
                 ["log_loss"]["value"], "n": 20000}
    out = m.window_metrics(y, p, expected=reference)
    assert out["metrics"]["log_loss"]["verdict"] in ("as expected", "better")


def test_the_hit_rate_test_measures_a_shortfall_against_the_promised_rate():
    p = np.full(400, 0.7)
    promised = m.hit_rate_test((np.arange(400) < 280).astype(float), p)  # 70% hits: exactly as promised
    assert promised["expected_rate"] == pytest.approx(0.7) and promised["z"] == pytest.approx(0.0)
    short = m.hit_rate_test((np.arange(400) < 240).astype(float), p)  # 60% hits
    sd = math.sqrt(400 * 0.7 * 0.3)
    assert short["z"] == pytest.approx((240 - 280) / sd)
    assert short["p_value"] < 0.001


def test_the_expected_hit_rate_of_pending_predictions_is_the_mean_probability():
    out = m.expected_hit_rate([0.6, 0.7, 0.8])
    assert out["expected_rate"] == pytest.approx(0.7) and out["low"] < 0.7 < out["high"]
    assert m.expected_hit_rate([])["expected_rate"] is None


def test_hosmer_lemeshow_by_hand():
    y = np.array([1, 1, 0, 0, 1, 0], dtype=float)
    p = np.array([0.55, 0.55, 0.55, 0.55, 0.95, 0.95])
    out = m.hosmer_lemeshow(y, p)
    # Bucket 0.5: 2 hits against 2.2 expected, variance 4*.55*.45; bucket 0.9: 1 against 1.9, variance 2*.95*.05.
    statistic = (2 - 2.2) ** 2 / (4 * 0.55 * 0.45) + (1 - 1.9) ** 2 / (2 * 0.95 * 0.05)
    assert out["statistic"] == pytest.approx(statistic) and out["df"] == 2


def test_bad_inputs_are_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="outcomes must be 0 or 1"):
        m.window_metrics([2.0], [0.5])
    with pytest.raises(ValueError, match="probabilities"):
        m.window_metrics([1.0], [math.nan])
    with pytest.raises(ValueError, match="2 outcomes against 1"):
        m.window_metrics([1.0, 0.0], [0.5])


def test_latency_figures():
    out = m.latency_figures(np.arange(1, 101, dtype=float))
    assert (out["p50"], out["p99"], out["n"]) == (pytest.approx(50.5), pytest.approx(99.01), 100)
    assert m.latency_figures([])["p99"] is None
