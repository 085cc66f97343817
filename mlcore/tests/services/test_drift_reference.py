"""Every trained version carries the reference monitoring measures drift against: decile bins of each feature over
the training window W, of each side's calibrated probability on the evaluation fold Fk, and W's span; the
registered ModelVersion stores it. Uses the session's trained model (mlcore/tests/conftest.py)."""
from datetime import datetime

import numpy as np
import pytest

from mlcore.domain.drift import reference_bins
from mlcore.domain.evaluation import walk_forward_splits
from mlcore.domain.features import FEATURE_NAMES
from mlcore.domain.labels import SIDES
from mlcore.models import ModelVersion
from mlcore.services import _json_safe
from mlcore.tests.conftest import TRAIN_CONFIG
from mlcore.tests.pipeline import evaluation_fold
from mlcore.training import build_dataset

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]


def _assert_bins(bins: dict, n: int, what: str) -> None:
    edges, shares = bins["edges"], bins["shares"]
    assert bins["n"] == n, what
    assert len(shares) == len(edges) + 1, what
    assert sum(shares) == pytest.approx(1.0, abs=1e-9), what
    assert all(0.0 <= s <= 1.0 for s in shares), what
    assert all(a < b for a, b in zip(edges, edges[1:])), (what, edges)  # strictly ascending


def test_the_reference_holds_bins_of_every_feature_over_the_training_window(trained):
    reference = trained.drift_reference
    window_bars = reference["window"]["bars"]
    # W is what the calibrator was fitted on (cross-fitted over W's blocks).
    assert window_bars == trained.report["long"]["calibration"]["fitted_on_bars"]
    assert set(reference["features"]) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        _assert_bins(reference["features"][name], window_bars, name)
    # A feature that varies gets the full ten bins (nine inner edges).
    assert max(len(b["edges"]) for b in reference["features"].values()) == 9


def test_the_feature_bins_are_those_of_the_training_window_not_of_all_bars(trained, training_bars):
    data = build_dataset(training_bars, TRAIN_CONFIG)
    n = len(data.rows)
    window, test = walk_forward_splits(n, n_folds=TRAIN_CONFIG.n_folds, gap=TRAIN_CONFIG.label.horizon,
                                       min_train=max(n // 4, 200))[-1]
    for j, name in enumerate(FEATURE_NAMES):
        assert trained.drift_reference["features"][name] == reference_bins(data.rows[window, j]), name
    # Not the whole series: the window stops before the evaluation fold (and its purge gap).
    assert trained.drift_reference["features"]["ret_1"] != reference_bins(data.rows[:, FEATURE_NAMES.index("ret_1")])
    span = trained.drift_reference["window"]
    assert span["start"] == training_bars["timestamp"].iloc[data.bar_index[window[0]]].isoformat()
    assert span["end"] == training_bars["timestamp"].iloc[data.bar_index[window[-1]]].isoformat()
    assert datetime.fromisoformat(span["start"]) < datetime.fromisoformat(span["end"])
    assert datetime.fromisoformat(span["end"]) < training_bars["timestamp"].iloc[data.bar_index[test[0]]]


@pytest.mark.parametrize("side", SIDES)
def test_the_probability_bins_are_the_calibrated_outputs_on_the_evaluation_fold(trained, training_bars, side):
    bins = trained.drift_reference["probability"][side]
    _assert_bins(bins, trained.report[side]["evaluation_bars"], side)
    fold = evaluation_fold(training_bars, TRAIN_CONFIG)
    calibrated = fold.probabilities(trained, side)["calibrated"]
    expected = reference_bins(calibrated)
    assert bins["shares"] == pytest.approx(expected["shares"])
    assert bins["edges"] == pytest.approx(expected["edges"])
    assert all(0.0 <= e <= 1.0 for e in bins["edges"])


def test_a_registered_version_stores_the_reference(register, trained):
    version = register()

    stored = ModelVersion.objects.get(pk=version.pk).drift_reference
    assert stored == _json_safe(trained.drift_reference)
    assert set(stored["features"]) == set(FEATURE_NAMES)
    assert set(stored["probability"]) == set(SIDES)
    assert stored["window"]["bars"] > 0
    for name, bins in stored["features"].items():
        assert sum(bins["shares"]) == pytest.approx(1.0), name
        assert bins["edges"] == sorted(set(bins["edges"])), name
    assert np.isfinite([e for b in stored["features"].values() for e in b["edges"]]).all()
