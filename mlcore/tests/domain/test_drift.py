"""The population stability index on known shifts, with its sample-size guard."""
import math

import numpy as np
import pytest

from mlcore.domain import drift


def test_psi_by_hand():
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5))
    assert drift.psi([0.2] * 5, [0.2] * 5) == 0.0


def test_the_same_distribution_is_stable_and_a_one_sd_shift_is_significant():
    rng = np.random.default_rng(0)
    reference = drift.reference_bins(rng.normal(size=20000))
    assert sum(reference["shares"]) == pytest.approx(1.0) and len(reference["shares"]) == 10
    assert reference["edges"] == sorted(reference["edges"])
    same = drift.psi_report(rng.normal(size=2000), reference)
    assert same["band"] == "stable" and same["psi"] < same["psi_noise"] * 3
    moved = drift.psi_report(rng.normal(loc=1.0, size=2000), reference)
    assert moved["band"] == "significant" and moved["psi"] > 0.25
    wider = drift.psi_report(rng.normal(scale=4.0, size=2000), reference)  # a volatility shock
    assert wider["band"] == "significant"


def test_values_outside_the_training_range_land_in_the_end_bins():
    reference = drift.reference_bins(np.arange(100.0))
    shares, n = drift.shares_of([-1e9, 1e9], reference)
    assert n == 2 and shares[0] == 0.5 and shares[-1] == 0.5


def test_no_verdict_under_the_minimum_live_count():
    reference = drift.reference_bins(np.arange(1000.0))
    report = drift.psi_report(np.arange(50.0), reference, min_live=100)
    assert report["psi"] is None and report["band"] == "insufficient" and report["n"] == 50


def test_constant_and_empty_references():
    assert drift.reference_bins([3.0, 3.0, 3.0])["shares"] == [1.0] or len(drift.reference_bins([3.0] * 3)["edges"]) <= 1
    assert drift.reference_bins([math.nan])["n"] == 0


def test_a_slow_feature_of_a_calm_market_is_not_called_drifted_on_a_short_window():
    # A 60-bar moving sum of a stationary series: a few hundred bars are only a handful of independent draws.
    rng = np.random.default_rng(3)
    steps = rng.normal(size=60_000)
    slow = np.convolve(steps, np.ones(60), mode="valid")
    reference = drift.reference_bins(slow[:50_000])
    window = slow[-400:]
    report = drift.psi_report(window, reference)
    assert report["n_effective"] < 40
    assert report["band"] in ("insufficient", "stable", "moderate")  # never "significant" by chance alone
    assert drift.effective_size(rng.normal(size=1000)) == pytest.approx(1000, rel=0.15)


def test_the_autocorrelation_time_of_a_moving_average_is_about_its_window():
    rng = np.random.default_rng(4)
    smooth = np.convolve(rng.normal(size=30_000), np.ones(14) / 14, mode="valid")
    assert 10 <= drift.autocorrelation_time(smooth) <= 18
    assert drift.reference_bins(smooth)["tau"] == pytest.approx(drift.autocorrelation_time(smooth), abs=1e-3)


def test_a_shift_inside_the_live_window_is_judged_with_the_references_dependence_not_its_own():
    # A 14-bar smoothed level that jumps fourfold halfway through the live window: measured on the live window, the
    # jump itself looks like dependence (a handful of effective values: no verdict); the reference's tau sees it.
    rng = np.random.default_rng(5)
    smooth = np.convolve(np.abs(rng.normal(size=40_000)), np.ones(14) / 14, mode="valid")
    reference = drift.reference_bins(smooth[:30_000])
    live = np.r_[smooth[30_000:30_600], 4 * smooth[30_600:31_200]]
    assert drift.effective_size(live) < 20  # the live estimate alone would withhold the verdict
    report = drift.psi_report(live, reference)
    assert report["band"] == "significant" and report["n_effective"] > 40
