"""Training with honest walk-forward evaluation (pure: bars in, fitted side models and a report out; no Django).

Scheme, for each side (long, short), over the usable bars in time order, with expanding walk-forward folds
F1 .. Fk (k >= 3) and a purge/embargo gap of H bars (the label horizon):
- the last fold Fk is the evaluation fold; everything before it, minus the H bars just before it, is the
  training window W. Nothing of Fk is seen by any layer;
- the members that ship are fitted on all of W;
- the meta-learner and the calibrator are fitted on out-of-fold predictions over W, cross-fitted: W is cut
  into k blocks at the walk-forward boundaries (the first block is the initial training stretch, then F1 ..
  F(k-1)); for each block, members of the same kind and settings are fitted on the rest of W (minus H bars on
  either side of the block: purge and embargo) and predict the block. The meta-learner is fitted on all of
  these predictions; the calibrator (isotonic, Platt or none, chosen by cross-validated log loss) on the
  meta-learner's outputs, again cross-fitted over the blocks, so it calibrates outputs the meta-learner did not
  train on;
- everything is scored on Fk: members, meta-learner (raw and calibrated) and the baselines (majority class,
  momentum sign, logistic regression, fitted on W).
The version that ships is exactly what was scored: W's members, that meta-learner and that calibrator.

Why cross-fitted rather than stacked fold after fold (meta-learner on F1, calibrator on F2, members refitted for
Fk): the later layers then learned from the outputs of members fitted on a half or a third of the data the
shipped members see, so they mapped weaker, differently scaled outputs, and a calibrator fitted on one fold
could raise the error it was meant to lower. Here every layer is fitted on outputs of members trained on
(k - 1)/k of W, on all of W's bars.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .domain.calibration import fit_calibrator
from .domain.drift import reference_bins
from .domain.evaluation import (
    baseline_probabilities,
    binary_metrics,
    edge_verdict,
    purged_block_splits,
    walk_forward_splits,
)
from .domain.features import (
    FEATURE_NAMES,
    FEATURE_WINDOW,
    MOMENTUM_FEATURE,
    FeatureError,
    average_true_range,
    check_bars_usable,
    compute_features,
)
from .domain.labels import SIDES, LabelConfig, triple_barrier_labels
from .errors import TrainingError  # noqa: F401 - raised here, defined where light modules can catch it
from .predictors import PRESETS
from .predictors.ensemble import MEMBER_ORDER, SideModel, fit_members, make_sequences, predict_members
from .predictors.stacking import MetaLearner

logger = logging.getLogger(__name__)
MIN_USABLE_BARS = 600


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "full"
    seed: int = 0
    label: LabelConfig = field(default_factory=LabelConfig)
    n_folds: int = 3

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise TrainingError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        if self.n_folds < 3:
            raise TrainingError("n_folds must be at least 3 (an evaluation fold and a training window of at least 3 "
                                "cross-fitting blocks)")

    @property
    def seq_len(self) -> int:
        return int(PRESETS[self.preset]["lstm"]["seq_len"])

    def hyperparameters(self) -> dict:
        return {"preset": self.preset, "seed": self.seed, "n_folds": self.n_folds, "members": PRESETS[self.preset]}


@dataclass
class TrainedModel:
    sides: dict[str, SideModel]
    report: dict
    has_edge: bool
    statement: str
    n_bars: int
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    member_seconds: dict[str, float]
    seconds_total: float
    seq_len: int
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_window: int = FEATURE_WINDOW
    # What monitoring compares live data with (`mlcore.domain.drift`): decile bins of each feature over the
    # training window W, of each side's calibrated probability on the evaluation fold Fk, and W's span.
    drift_reference: dict = field(default_factory=dict)


@dataclass
class Dataset:
    rows: np.ndarray  # (n, n_features): the feature row of each usable bar
    seqs: np.ndarray  # (n, seq_len, n_features): the window of feature rows ending at that bar
    labels: dict[str, np.ndarray]  # side -> (n,) 0/1
    bar_index: np.ndarray  # positions of the usable bars in the input


def build_dataset(bars: pd.DataFrame, config: TrainConfig) -> Dataset:
    """Features, sequences and triple-barrier labels of every bar that has all three."""
    try:
        check_bars_usable(bars)
    except FeatureError as exc:
        raise TrainingError(str(exc)) from exc
    features = compute_features(bars).to_numpy(dtype=np.float64)
    labels = triple_barrier_labels(bars, average_true_range(bars), config.label)
    seq_len = config.seq_len
    finite = np.isfinite(features).all(axis=1)
    # A bar is usable when the whole sequence ending at it is finite and both sides are labelled.
    window_ok = np.convolve(finite.astype(int), np.ones(seq_len, dtype=int), mode="full")[: len(finite)] == seq_len
    labelled = labels[list(SIDES)].notna().all(axis=1).to_numpy()
    usable = np.flatnonzero(window_ok & labelled)
    if len(usable) < MIN_USABLE_BARS:
        raise TrainingError(
            f"too few usable bars: {len(usable)} of {len(bars)} have features, a {seq_len}-bar sequence and labels "
            f"(need {MIN_USABLE_BARS}; features need {FEATURE_WINDOW} bars of history and labels "
            f"{config.label.horizon} bars of future)"
        )
    # float32 before the windows are gathered: the copy is half the size (the LSTM works in float32 anyway).
    safe = np.nan_to_num(features).astype(np.float32)  # rows outside `usable` may hold NaN; never selected
    sequences = make_sequences(safe, seq_len)[usable - seq_len + 1]
    return Dataset(
        rows=features[usable],
        seqs=np.ascontiguousarray(sequences),
        labels={side: labels[side].to_numpy()[usable].astype(np.int64) for side in SIDES},
        bar_index=usable,
    )


def train_model(
    bars: pd.DataFrame, config: TrainConfig, progress: Callable[[str], None] | None = None
) -> TrainedModel:
    started = time.perf_counter()
    data = build_dataset(bars, config)
    n = len(data.rows)
    horizon = config.label.horizon
    try:
        splits = walk_forward_splits(n, n_folds=config.n_folds, gap=horizon, min_train=max(n // 4, 200))
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    train_window, test_last = splits[-1]
    end = len(train_window)  # the window is samples 0 .. end - 1
    bounds = [0, *(int(test[0]) for _, test in splits[:-1]), end]
    try:
        blocks = purged_block_splits(bounds, gap=horizon)
    except ValueError as exc:
        raise TrainingError(f"too few bars to cross-fit the meta-learner: {exc}") from exc
    meta_c = PRESETS[config.preset]["meta"]["C"]
    member_seconds = dict.fromkeys(MEMBER_ORDER, 0.0)
    sides, report = {}, {}
    evaluation_probabilities: dict[str, np.ndarray] = {}

    def fit(side: str, index: np.ndarray, what: str) -> list:
        y = data.labels[side][index]
        if np.unique(y).size < 2:
            raise TrainingError(f"{side} labels of the {what} ({len(index)} bars) are all {y[0]}: no signal to "
                                "learn (is the price series flat or too short?)")
        members = fit_members(data.rows[index], data.seqs[index], y, preset=config.preset, seed=config.seed)
        for member in members:
            member_seconds[member.name] += member.fit_seconds or 0.0
        return members

    for side in SIDES:
        y = data.labels[side]
        y_window, y_test = y[:end], y[test_last]
        if progress:
            progress(f"{side}: fitting the members that ship on {end} bars")
        shipped = fit(side, train_window, "training window")
        names = [m.name for m in shipped]
        oof = np.empty((end, len(shipped)))
        fold_reports = []
        for k, (train, block) in enumerate(blocks, start=1):
            if progress:
                progress(f"{side}: cross-fitting block {k}/{len(blocks)} — fitting members on {len(train)} bars")
            members = fit(side, train, f"cross-fitting block {k}'s training set")
            oof[block] = predict_members(members, data.rows[block], data.seqs[block])
            fold_reports.append({
                "fold": k, "train_bars": int(len(train)), "test_bars": int(len(block)),
                "members": {m.name: binary_metrics(y[block], oof[block, j]) for j, m in enumerate(members)},
            })
        if np.unique(y_window).size < 2:
            raise TrainingError(f"{side}: the training window holds one class only")
        meta = MetaLearner(C=meta_c).fit(oof, y_window, names)
        # The calibrator learns from meta-learner outputs on bars that meta-learner did not train on.
        meta_oof = np.empty(end)
        for k, (train, block) in enumerate(blocks, start=1):
            if np.unique(y[train]).size < 2:
                raise TrainingError(f"{side}: cross-fitting block {k}'s training set holds one class only")
            meta_oof[block] = MetaLearner(C=meta_c).fit(oof[train], y[train], names).predict_proba(oof[block])
        try:
            calibrator = fit_calibrator(meta_oof, y_window, seed=config.seed)
        except ValueError as exc:
            raise TrainingError(f"{side}: cannot fit the calibrator: {exc}") from exc

        P = predict_members(shipped, data.rows[test_last], data.seqs[test_last])
        raw = meta.predict_proba(P)
        calibrated = calibrator.transform(raw)
        evaluation_probabilities[side] = calibrated
        baselines = baseline_probabilities(data.rows[train_window], y_window, data.rows[test_last],
                                           momentum_col=FEATURE_NAMES.index(MOMENTUM_FEATURE), seed=config.seed)
        baseline_metrics = {name: binary_metrics(y_test, p) for name, p in baselines.items()}
        final_metrics = binary_metrics(y_test, calibrated)
        verdict = edge_verdict(final_metrics, baseline_metrics, model_name=f"{side} meta-learner")
        report[side] = {
            "evaluation_bars": int(len(test_last)),
            "members": {name: binary_metrics(y_test, P[:, j]) for j, name in enumerate(names)},
            "meta_raw": binary_metrics(y_test, raw),
            "meta": final_metrics,
            "baselines": baseline_metrics,
            "calibration": {"method": calibrator.method, "cv_log_loss": calibrator.cv_log_loss,
                            "fitted_on_bars": int(end),
                            "ece_before": binary_metrics(y_test, raw)["ece"], "ece_after": final_metrics["ece"]},
            "verdict": verdict,
            "folds": fold_reports,
        }
        sides[side] = SideModel(shipped, meta, calibrator, side=side, preset=config.preset,
                                n_features=len(FEATURE_NAMES))
    has_edge = any(report[s]["verdict"]["has_edge"] for s in SIDES)
    statement = " ".join(f"{s.capitalize()}: {report[s]['verdict']['statement']}" for s in SIDES)
    report["label_settings"] = config.label.to_dict()
    window_bars = data.bar_index[train_window]
    drift_reference = {
        "features": {name: reference_bins(data.rows[train_window, j]) for j, name in enumerate(FEATURE_NAMES)},
        "probability": {side: reference_bins(evaluation_probabilities[side]) for side in SIDES},
        "window": {"start": bars["timestamp"].iloc[int(window_bars[0])].isoformat(),
                   "end": bars["timestamp"].iloc[int(window_bars[-1])].isoformat(),
                   "bars": int(len(train_window))},
    }
    return TrainedModel(
        sides=sides,
        report=report,
        has_edge=has_edge,
        statement=statement,
        n_bars=len(bars),
        data_start=bars["timestamp"].iloc[0],
        data_end=bars["timestamp"].iloc[-1],
        member_seconds={k: round(v, 3) for k, v in member_seconds.items()},
        seconds_total=time.perf_counter() - started,
        seq_len=config.seq_len,
        drift_reference=drift_reference,
    )
