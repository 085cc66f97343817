"""Deterministic for a given seed: the same bars and seed train the same model; another seed trains another."""
import numpy as np
import pytest

from mlcore.domain.labels import SIDES
from mlcore.training import TrainConfig, train_model

from . import assert_fold_matches_report, evaluation_fold, small_model, small_series


@pytest.fixture(scope="module")
def fold():
    return evaluation_fold(small_series(), TrainConfig(preset="fast", seed=0))


@pytest.fixture(scope="module")
def first():
    return small_model(0)


@pytest.fixture(scope="module")
def again():
    """A second, independent training run: same bars, same seed (not the cached model)."""
    return train_model(small_series(), TrainConfig(preset="fast", seed=0))


@pytest.fixture(scope="module")
def other_seed():
    return train_model(small_series(), TrainConfig(preset="fast", seed=1))


def test_the_rebuilt_evaluation_fold_is_the_one_the_report_scored(first, fold):
    assert_fold_matches_report(first, fold)


def test_the_same_seed_gives_identical_probabilities_and_report(first, again, fold):
    for side in SIDES:
        a, b = fold.probabilities(first, side), fold.probabilities(again, side)
        for key in ("members", "meta_raw", "calibrated"):
            assert np.array_equal(a[key], b[key]), (side, key, float(np.abs(a[key] - b[key]).max()))
    assert again.report == first.report
    assert (again.has_edge, again.statement) == (first.has_edge, first.statement)


def test_another_seed_gives_other_probabilities(first, other_seed, fold):
    for side in SIDES:
        assert not np.array_equal(fold.probabilities(first, side)["calibrated"],
                                  fold.probabilities(other_seed, side)["calibrated"]), side
