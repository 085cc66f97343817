"""No look-ahead: the prediction for bar t is a function of bars .. t only, whatever comes after and however long
the window handed in is (beyond the `bars_needed` it reads)."""
import numpy as np
import pytest

from mlcore.domain.features import compute_features
from mlcore.domain.labels import SIDES
from mlcore.inference import LoadedModel

from . import SMALL_BARS, perturb_after, small_model, small_series

# Bars to predict: early, in the middle and the last bar of the series.
TIMES = (400, 2_777, SMALL_BARS - 500)


@pytest.fixture(scope="module")
def bars():
    return small_series()


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    trained = small_model(0)
    return LoadedModel(version_id=0, sides=trained.sides, seq_len=trained.seq_len)


def _decision(prediction: dict) -> dict:
    """Everything a prediction says, without its latencies (wall-clock figures)."""
    return {key: value for key, value in prediction.items() if key not in ("latency_ms", "member_ms")}


def _window(bars, t: int, length: int):
    return bars.iloc[t + 1 - length:t + 1]


@pytest.mark.parametrize("t", TIMES)
def test_perturbing_the_bars_after_t_leaves_the_prediction_at_t_unchanged(bars, model, t):
    needed = model.bars_needed
    before = _decision(model.predict(_window(bars, t, needed)))
    for seed in (1, 2):
        changed = perturb_after(bars, t, seed=seed)
        assert changed.iloc[:t + 1].equals(bars.iloc[:t + 1])
        assert _decision(model.predict(_window(changed, t, needed))) == before
        # The whole perturbed history up to t, as a caller that does not trim would pass it.
        assert _decision(model.predict(changed.iloc[:t + 1])) == before


@pytest.mark.parametrize("t", TIMES)
def test_a_longer_window_ending_at_t_gives_the_same_prediction(bars, model, t):
    needed = model.bars_needed
    expected = _decision(model.predict(_window(bars, t, needed)))
    for length in (needed + 1, needed + 37, 3 * needed, t + 1):
        window = _window(bars, t, length).reset_index(drop=True)
        assert _decision(model.predict(window)) == expected, length


def test_the_batch_path_on_the_whole_perturbed_series_gives_the_same_features_and_probabilities_at_t(bars, model):
    """The training path reads features off the whole series: bars after t must not reach row t there either,
    and its probabilities at t equal the live path's."""
    t = 2_777
    seq_len = model.seq_len
    original = compute_features(bars).to_numpy()
    changed = compute_features(perturb_after(bars, t, seed=3)).to_numpy()
    assert np.array_equal(changed[:t + 1], original[:t + 1], equal_nan=True)
    assert not np.array_equal(changed[t + 1:], original[t + 1:], equal_nan=True)  # the perturbation did change bars

    live = model.predict(_window(bars, t, model.bars_needed))
    for side in SIDES:
        out = {}
        for name, features in (("original", original), ("changed", changed)):
            rows = features[t:t + 1]
            seqs = features[None, t + 1 - seq_len:t + 1].astype(np.float32)
            out[name] = model.sides[side].predict_proba(rows, seqs)
        for key in ("members", "meta_raw", "calibrated"):
            assert np.array_equal(out["changed"][key], out["original"][key]), (side, key)
        batch = out["original"]
        assert batch["calibrated"][0] == pytest.approx(live[f"p_{side}"], abs=1e-6)
        assert batch["meta_raw"][0] == pytest.approx(live["meta_raw"][side], abs=1e-6)
        assert batch["members"][0] == pytest.approx(list(live["members"][side].values()), abs=1e-6)


def test_a_later_bar_whose_window_does_see_the_perturbation_is_predicted_differently(bars, model):
    """The check above is not vacuous: the same perturbation does move the prediction of a bar after t."""
    t = 2_777
    later = t + 5
    changed = perturb_after(bars, t, seed=1)
    assert _decision(model.predict(_window(changed, later, model.bars_needed))) != _decision(
        model.predict(_window(bars, later, model.bars_needed)))
