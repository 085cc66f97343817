"""`LoadedModel.predict_frame`: every bar of a frame in one batch, equal bit for bit to `predict` on each bar's window,
None where `predict` refuses the window; on the session's trained model (fast preset) and synthetic NQ bars."""
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from mlcore.domain.calibration import Calibrator
from mlcore.domain.features import FeatureError
from mlcore.inference import LoadedModel
from mlcore.predictors import MetaLearner, SideModel
from trading.domain.synthetic import generate_bars, session_timestamps

BARS = 2_100
TIMING_KEYS = ("latency_ms", "member_ms")
KEYS = ("p_long", "p_short", "side", "confidence", "agreement", "members", "meta_raw", "atr", "atr_reference")


@pytest.fixture(scope="module")
def frame():
    """Bars as `bars_frame` shapes them (float columns, UTC timestamps), with windows `predict` refuses planted:
    a missing close, a stretch without any range (ATR 0) and a timestamp that goes backwards."""
    bars = generate_bars(session_timestamps(datetime(2024, 3, 4, tzinfo=UTC), BARS), seed=23, start_price=18000.0,
                         tick_size=0.25)[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    bars.loc[700, "close"] = np.nan
    bars.loc[1200:1220, ["open", "high", "low", "close"]] = 18000.0
    bars.loc[1600, "timestamp"] = bars.loc[1598, "timestamp"]
    return bars.reset_index(drop=True)


@pytest.fixture(scope="module")
def model(trained) -> LoadedModel:
    return LoadedModel(version_id=0, sides=trained.sides, seq_len=trained.seq_len)


def _per_bar(model, frame, i):
    """What the live loop gets for bar i: `predict` on its window, or None when predict refuses it."""
    if i < model.bars_needed - 1:
        return None
    try:
        return model.predict(frame.iloc[i - model.bars_needed + 1 : i + 1])
    except FeatureError:
        return None


def _differences(one, batch) -> list[str]:
    """Keys in which two predictions differ (exact ==, so one ulp counts), or that are missing."""
    if one is None or batch is None:
        return [] if one is batch else ["None vs a prediction"]
    return [key for key in KEYS if key not in batch or one[key] != batch[key]]


def test_predict_frame_equals_predict_on_every_bar_bit_for_bit(model, frame):
    batch = model.predict_frame(frame)
    assert len(batch) == len(frame)
    refused = []
    for i in range(len(frame)):
        one = _per_bar(model, frame, i)
        assert _differences(one, batch[i]) == [], i
        if one is None:
            refused.append(i)
            continue
        assert set(batch[i]) == set(one)
        assert batch[i]["latency_ms"] > 0
        assert set(batch[i]["member_ms"]) == set(one["member_ms"])
    # The warm-up and each planted fault, for exactly the windows it reaches: the missing close and the backwards
    # timestamp for every window holding them, the rangeless stretch where its undefined features reach the last
    # seq_len rows: ATR is 0 at bars 1214-1220 (14 true ranges of 0), and macd_signal averages 9 bars of macd.
    needed, seq_len = model.bars_needed, model.seq_len
    planted = set(range(needed - 1)) | set(range(700, 700 + needed)) | set(range(1600, 1600 + needed - 1))
    planted |= set(range(1214, 1220 + 8 + seq_len))
    assert set(refused) == planted


def test_predict_frame_from_a_first_bar_returns_the_bars_from_there(model, frame):
    full = model.predict_frame(frame)
    for first in (0, 5, model.bars_needed - 1, 1_500, len(frame) - 1, len(frame)):
        part = model.predict_frame(frame, first=first)
        assert len(part) == len(frame) - first
        assert all(_differences(full[first + k], got) == [] for k, got in enumerate(part)), first


@pytest.mark.parametrize("calibrator", [
    Calibrator(method="platt", a=1.7, b=0.1),
    Calibrator(method="isotonic", thresholds=np.array([0.2, 0.35, 0.4, 0.5, 0.7]),
               values=np.array([0.1, 0.3, 0.45, 0.55, 0.9])),
])
def test_with_calibrators_that_vary_the_batch_still_equals_predict(trained, frame, calibrator):
    """The session's model, fitted on few bars, weights no member and calibrates to a constant: here meta-learners
    that weight them all and real maps make the probabilities, the side and the agreement vary from bar to bar."""
    weights = {"long": [0.9, 0.7, 0.5, 0.3, 0.6], "short": [0.4, 0.8, 0.6, 0.5, 0.2]}
    sides = {side: SideModel(m.members, MetaLearner(m.member_names, weights[side], 0.05), calibrator, side=side)
             for side, m in trained.sides.items()}
    model = LoadedModel(version_id=0, sides=sides, seq_len=trained.seq_len)
    first = 1_700
    batch = model.predict_frame(frame, first=first)
    for k, got in enumerate(batch):
        assert _differences(_per_bar(model, frame, first + k), got) == [], first + k
    predicted = [got for got in batch if got is not None]
    assert len({got["p_long"] for got in predicted}) > 50 and {got["side"] for got in predicted} == {"long", "short"}


def test_planted_one_ulp_in_any_value_is_a_difference(model, frame):
    """The comparison above would catch a difference of one ulp in a probability, a member's or the ATR."""
    got = model.predict_frame(frame, first=1_000)[0]
    for path in (("p_long",), ("confidence",), ("members", "long", "lstm"), ("meta_raw", "short"), ("atr",),
                 ("atr_reference",)):
        nudged = {**got, "members": {s: dict(v) for s, v in got["members"].items()}, "meta_raw": dict(got["meta_raw"])}
        holder = nudged
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = math.nextafter(holder[path[-1]], math.inf)
        assert _differences(got, nudged) == [path[0]]


def test_a_frame_too_short_for_one_window_or_without_a_column_gives_only_none(model, frame):
    assert model.predict_frame(frame.iloc[: model.bars_needed - 1]) == [None] * (model.bars_needed - 1)
    assert model.predict_frame(frame.iloc[:0]) == []
    no_volume = frame.iloc[:200].drop(columns="volume")
    assert model.predict_frame(no_volume) == [None] * 200


@pytest.mark.parametrize("first", [-1, BARS + 1, 1.5, True])
def test_a_first_bar_outside_the_frame_is_refused(model, frame, first):
    with pytest.raises(ValueError, match="first must be"):
        model.predict_frame(frame, first=first)
