"""Whole-pipeline statistical tests of the ML core (pure: bars in, a trained model and predictions out; no database).

Training is the slow part (the fast preset fits 5 members x 2 sides x 4 times: the shipped set and one set per
cross-fitting block), so each module trains its series once (module-scoped fixtures), and the helpers below
rebuild, from the bars alone, the evaluation fold the report scored: the last walk-forward fold, which no layer
(members, meta-learner, calibrator) has seen.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlcore.domain.evaluation import binary_metrics, walk_forward_splits
from mlcore.domain.labels import SIDES
from mlcore.domain.planted import planted_signal_bars
from mlcore.training import TrainConfig, TrainedModel, build_dataset, train_model


@dataclass(frozen=True)
class EvaluationFold:
    """The rows of the last walk-forward fold: what the report's figures are computed on."""

    rows: np.ndarray
    seqs: np.ndarray
    labels: dict[str, np.ndarray]  # side -> (n,) 0/1
    bar_index: np.ndarray  # positions of these rows in the bars

    def probabilities(self, trained: TrainedModel, side: str) -> dict[str, np.ndarray]:
        """The shipped side model on this fold: {"members", "meta_raw", "calibrated"} (out of sample)."""
        return trained.sides[side].predict_proba(self.rows, self.seqs)


def evaluation_fold(bars: pd.DataFrame, config: TrainConfig) -> EvaluationFold:
    """The last fold of `train_model`'s walk-forward scheme, rebuilt with its rule (checked against the report by
    `assert_fold_matches_report`, so a change of that rule cannot silently move these tests to other rows)."""
    data = build_dataset(bars, config)
    n = len(data.rows)
    _, test = walk_forward_splits(n, n_folds=config.n_folds, gap=config.label.horizon, min_train=max(n // 4, 200))[-1]
    return EvaluationFold(
        rows=data.rows[test],
        seqs=data.seqs[test],
        labels={side: data.labels[side][test] for side in SIDES},
        bar_index=data.bar_index[test],
    )


def assert_fold_matches_report(trained: TrainedModel, fold: EvaluationFold) -> None:
    """The rebuilt fold is the one the report scored: same size, and the shipped model's calibrated and raw
    probabilities on it give the report's figures."""
    for side in SIDES:
        p = fold.probabilities(trained, side)
        y = fold.labels[side]
        report = trained.report[side]
        assert report["evaluation_bars"] == len(y)
        for key, values in (("meta", p["calibrated"]), ("meta_raw", p["meta_raw"])):
            rebuilt = binary_metrics(y, values)
            for metric in ("n", "base_rate", "mean_p", "log_loss", "ece", "accuracy"):
                assert rebuilt[metric] == report[key][metric], (side, key, metric, rebuilt[metric],
                                                                 report[key][metric])


def perturb_after(bars: pd.DataFrame, t: int, *, seed: int) -> pd.DataFrame:
    """A copy of `bars` whose bars after position `t` are replaced by random ones that keep the bar contract (tick
    grid, low <= open, close <= high, prices > 0, volume >= 0, same timestamps); bars 0 .. t are untouched."""
    out = bars.copy()
    later = len(bars) - t - 1
    if later <= 0:
        return out
    rng = np.random.default_rng(seed)
    tick = 0.25
    previous = round(float(bars["close"].iloc[t]) / tick)
    close = np.maximum(previous + np.cumsum(rng.integers(-40, 41, later)), 40)
    open_ = np.r_[previous, close[:-1]]
    high = np.maximum(open_, close) + rng.integers(0, 30, later)
    low = np.maximum(np.minimum(open_, close) - rng.integers(0, 30, later), 1)
    position = np.arange(t + 1, len(bars))
    for column, ticks in (("open", open_), ("high", high), ("low", low), ("close", close)):
        out.iloc[position, out.columns.get_loc(column)] = ticks * tick
    out.iloc[position, out.columns.get_loc("volume")] = rng.integers(0, 20_000, later).astype(float)
    return out


# A small planted series (5,000 bars, the same generator settings as the planted-signal test) for the checks that
# need a trained model but not a strong one: determinism and no look-ahead. Cached per process so that those two
# modules train it once between them.
SMALL_BARS = 5_000
SMALL_SERIES_SEED = 5
SMALL_EDGE = 0.3
SMALL_SPIKE_RATE = 0.05


def small_series() -> pd.DataFrame:
    return planted_signal_bars(SMALL_BARS, seed=SMALL_SERIES_SEED, edge=SMALL_EDGE, spike_rate=SMALL_SPIKE_RATE)[0]


@functools.lru_cache(maxsize=2)
def small_model(seed: int) -> TrainedModel:
    """`train_model` on `small_series()` with the fast preset and `seed` (once per process and seed)."""
    return train_model(small_series(), TrainConfig(preset="fast", seed=seed))
