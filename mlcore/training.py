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

The unit of work is one member fit (`FitUnit`: a side, a fit set — W, or block k's training set — and a member):
`training_plan` builds the dataset, the splits and the list of units; `fit_unit` fits one; `training_assemble`
does everything after the fits. `train_model` runs the units one after the other in this process; `mlcore.distributed`
runs them as Celery tasks, on any number of training workers, with the same result (each fit is seeded by the
config alone, never by what ran before it in the process).

Why cross-fitted rather than stacked fold after fold (meta-learner on F1, calibrator on F2, members refitted for
Fk): the later layers then learned from the outputs of members fitted on a half or a third of the data the
shipped members see, so they mapped weaker, differently scaled outputs, and a calibrator fitted on one fold
could raise the error it was meant to lower. Here every layer is fitted on outputs of members trained on
(k - 1)/k of W, on all of W's bars.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
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
from .predictors.base import Member
from .predictors.ensemble import MEMBER_ORDER, MEMBER_TYPES, SideModel, fit_member, make_sequences
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
    features, labels, usable = _features_and_labels(bars, config)
    return dataset_from_features(features, labels, usable, seq_len=config.seq_len)


def _features_and_labels(bars: pd.DataFrame, config: TrainConfig):
    """Every bar's feature row, the labels of the usable bars (side -> 0/1) and the positions of those bars."""
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
    return features, {side: labels[side].to_numpy()[usable].astype(np.int64) for side in SIDES}, usable


def dataset_from_features(features: np.ndarray, labels: dict[str, np.ndarray], usable: np.ndarray, *,
                          seq_len: int) -> Dataset:
    """The dataset of the usable bars, from every bar's feature row (what a stored training plan keeps)."""
    # float32 before the windows are gathered: the copy is half the size (the LSTM works in float32 anyway).
    safe = np.nan_to_num(features).astype(np.float32)  # rows outside `usable` may hold NaN; never selected
    sequences = make_sequences(safe, seq_len)[usable - seq_len + 1]
    return Dataset(rows=features[usable], seqs=np.ascontiguousarray(sequences), labels=labels, bar_index=usable)


# ---------------------------------------------------------------------------------------------- the plan

SHIPPED = "shipped"


@dataclass(frozen=True)
class FitUnit:
    """One member fit, the unit of work of a training: `member` of `side`, fitted on the training window W
    (block 0: the member that ships, it predicts the evaluation fold) or on cross-fitting block `block`'s training
    set (block >= 1: it predicts that block, the out-of-fold column the meta-learner learns from)."""

    side: str
    block: int
    member: str

    @property
    def fit_set(self) -> str:
        return SHIPPED if self.block == 0 else f"block-{self.block}"

    @property
    def key(self) -> str:
        """"long/shipped/lstm", "short/block-2/catboost": unique within a plan, safe in a file path."""
        return f"{self.side}/{self.fit_set}/{self.member}"

    @classmethod
    def from_key(cls, key: str) -> FitUnit:
        side, fit_set, member = key.split("/")
        return cls(side=side, block=0 if fit_set == SHIPPED else int(fit_set.removeprefix("block-")), member=member)

    @property
    def fit_set_name(self) -> str:
        """What its fit set is called in the one-class refusal."""
        return "training window" if self.block == 0 else f"cross-fitting block {self.block}'s training set"


@dataclass
class TrainingPlan:
    """Everything a training fits on, and the list of its member fits in a fixed order (for each side: the members
    that ship, then each cross-fitting block's members; members in MEMBER_ORDER). Any process holding an equal plan
    fits any unit to the same member (`fit_unit`); `training_plan_facts` / `training_plan_arrays` /
    `training_plan_restore` carry it between processes."""

    config: TrainConfig
    data: Dataset
    features: np.ndarray  # every bar's feature row: what `data` is rebuilt from (`dataset_from_features`)
    train_window: np.ndarray  # W: samples 0 .. end - 1
    test_last: np.ndarray  # the evaluation fold Fk
    blocks: list[tuple[np.ndarray, np.ndarray]]  # cross-fitting (training set, block) pairs over W
    units: tuple[FitUnit, ...]
    n_bars: int
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    window: dict  # W's first and last bar times and size, for the drift reference
    started_at: float  # time.time() when planning began: the training's wall time counts from here

    def fit_index(self, unit: FitUnit) -> np.ndarray:
        """The samples `unit`'s member is fitted on."""
        return self.train_window if unit.block == 0 else self.blocks[unit.block - 1][0]

    def predict_index(self, unit: FitUnit) -> np.ndarray:
        """The samples it predicts for the assembly: the evaluation fold (shipped) or its block (out of fold)."""
        return self.test_last if unit.block == 0 else self.blocks[unit.block - 1][1]

    def unit(self, key: str) -> FitUnit:
        unit = FitUnit.from_key(key)
        if unit not in self.units:
            raise TrainingError(f"no member fit {key!r} in this training plan")
        return unit


@dataclass
class UnitResult:
    """One fitted member and what the assembly needs of it."""

    unit: FitUnit
    member: Member | None  # needed for the members that ship; a block's member may be dropped once it predicted
    fit_seconds: float
    predictions: np.ndarray  # float64, on plan.predict_index(unit)


def training_plan(bars: pd.DataFrame, config: TrainConfig) -> TrainingPlan:
    """The dataset, the walk-forward and cross-fitting splits and the member fits of a training of `bars`.

    Refuses (TrainingError) what `train_model` refuses before fitting anything: unusable or too few bars, too few
    for the folds or the blocks, a fit set whose labels are one class.
    """
    started_at = time.time()
    features, labels, usable = _features_and_labels(bars, config)
    data = dataset_from_features(features, labels, usable, seq_len=config.seq_len)
    stamps = bars["timestamp"]
    plan = _plan(config, data, features, n_bars=len(bars), data_start=stamps.iloc[0], data_end=stamps.iloc[-1],
                 window={}, started_at=started_at)
    window_bars = data.bar_index[plan.train_window]
    plan.window = {"start": stamps.iloc[int(window_bars[0])].isoformat(),
                   "end": stamps.iloc[int(window_bars[-1])].isoformat(), "bars": int(len(window_bars))}
    return plan


def _splits(n: int, config: TrainConfig):
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
    return train_window, test_last, blocks


def _plan(config: TrainConfig, data: Dataset, features: np.ndarray, **facts) -> TrainingPlan:
    train_window, test_last, blocks = _splits(len(data.rows), config)
    units = tuple(FitUnit(side=side, block=block, member=name)
                  for side in SIDES for block in range(len(blocks) + 1) for name in MEMBER_ORDER)
    plan = TrainingPlan(config=config, data=data, features=features, train_window=train_window, test_last=test_last,
                        blocks=blocks, units=units, **facts)
    for unit in units:  # each fit set once, in the order the fits run
        if unit.member == MEMBER_ORDER[0]:
            _two_classes_check(plan, unit)
    return plan


def _two_classes_check(plan: TrainingPlan, unit: FitUnit) -> None:
    index = plan.fit_index(unit)
    y = plan.data.labels[unit.side][index]
    if np.unique(y).size < 2:
        raise TrainingError(f"{unit.side} labels of the {unit.fit_set_name} ({len(index)} bars) are all {y[0]}: "
                            "no signal to learn (is the price series flat or too short?)")


PLAN_FORMAT = 1


def training_plan_facts(plan: TrainingPlan) -> dict:
    """The plan's settings and facts, JSON-ready (its arrays: `training_plan_arrays`)."""
    config = plan.config
    return {
        "format": PLAN_FORMAT,
        "config": {"preset": config.preset, "seed": config.seed, "n_folds": config.n_folds,
                   "label": config.label.to_dict()},
        "n_bars": plan.n_bars,
        "data_start": plan.data_start.isoformat(),
        "data_end": plan.data_end.isoformat(),
        "window": plan.window,
        "started_at": plan.started_at,
        "units": [unit.key for unit in plan.units],
    }


def training_plan_arrays(plan: TrainingPlan) -> dict[str, np.ndarray]:
    """The arrays the plan is rebuilt from (a few MB for 100,000 bars: the sequences are rebuilt, not kept)."""
    return {"features": plan.features, "usable": plan.data.bar_index,
            **{f"labels_{side}": plan.data.labels[side] for side in SIDES}}


def training_plan_restore(facts: dict, arrays: Mapping[str, np.ndarray]) -> TrainingPlan:
    """The plan that `training_plan_facts` and `training_plan_arrays` were taken from (equal arrays, same units)."""
    if facts.get("format") != PLAN_FORMAT:
        raise TrainingError(f"unsupported training plan format {facts.get('format')!r}")
    settings = facts["config"]
    config = TrainConfig(preset=settings["preset"], seed=int(settings["seed"]), n_folds=int(settings["n_folds"]),
                         label=LabelConfig.from_dict(settings["label"]))
    features = np.asarray(arrays["features"])
    usable = np.asarray(arrays["usable"])
    labels = {side: np.asarray(arrays[f"labels_{side}"]) for side in SIDES}
    data = dataset_from_features(features, labels, usable, seq_len=config.seq_len)
    plan = _plan(config, data, features, n_bars=int(facts["n_bars"]), data_start=pd.Timestamp(facts["data_start"]),
                 data_end=pd.Timestamp(facts["data_end"]), window=dict(facts["window"]),
                 started_at=float(facts["started_at"]))
    if [unit.key for unit in plan.units] != list(facts["units"]):
        raise TrainingError("the restored training plan's member fits differ from the stored ones")
    return plan


# ---------------------------------------------------------------------------------------------- fit, assemble

def fit_unit(plan: TrainingPlan, unit: FitUnit) -> UnitResult:
    """Fit one member on its unit's samples and predict the samples the assembly needs from it."""
    _two_classes_check(plan, unit)
    config, data = plan.config, plan.data
    index = plan.fit_index(unit)
    sequence = MEMBER_TYPES[unit.member].kind == "sequence"
    member = fit_member(unit.member, None if sequence else data.rows[index], data.seqs[index] if sequence else None,
                        data.labels[unit.side][index], preset=config.preset, seed=config.seed)
    where = plan.predict_index(unit)
    predictions = np.asarray(member.predict_proba(data.seqs[where] if sequence else data.rows[where]),
                             dtype=np.float64)
    return UnitResult(unit=unit, member=member, fit_seconds=float(member.fit_seconds or 0.0), predictions=predictions)


def training_assemble(
    plan: TrainingPlan, results: Iterable[UnitResult], progress: Callable[[str], None] | None = None
) -> TrainedModel:
    """From every unit's result: each side's meta-learner and calibrator (cross-fitted over the blocks), the
    evaluation on Fk against the baselines, the report and the drift reference."""
    by_key = {result.unit.key: result for result in results}
    missing = [unit.key for unit in plan.units if unit.key not in by_key]
    if missing:
        raise TrainingError(f"no result for {len(missing)} of the plan's {len(plan.units)} member fits: "
                            f"{', '.join(missing[:5])}")
    config, data = plan.config, plan.data
    train_window, test_last, blocks = plan.train_window, plan.test_last, plan.blocks
    end = len(train_window)
    meta_c = PRESETS[config.preset]["meta"]["C"]
    member_seconds = dict.fromkeys(MEMBER_ORDER, 0.0)
    for unit in plan.units:
        member_seconds[unit.member] += by_key[unit.key].fit_seconds or 0.0
    names = list(MEMBER_ORDER)
    sides, report = {}, {}
    evaluation_probabilities: dict[str, np.ndarray] = {}

    for side in SIDES:
        if progress:
            progress(f"{side}: fitting the meta-learner and the calibrator")
        y = data.labels[side]
        y_window, y_test = y[:end], y[test_last]
        shipped = [by_key[FitUnit(side=side, block=0, member=name).key] for name in names]
        oof = np.empty((end, len(names)))
        fold_reports = []
        for k, (train, block) in enumerate(blocks, start=1):
            for j, name in enumerate(names):
                oof[block, j] = by_key[FitUnit(side=side, block=k, member=name).key].predictions
            fold_reports.append({
                "fold": k, "train_bars": int(len(train)), "test_bars": int(len(block)),
                "members": {name: binary_metrics(y[block], oof[block, j]) for j, name in enumerate(names)},
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

        P = np.empty((len(test_last), len(names)), dtype=np.float64)
        for j, result in enumerate(shipped):
            P[:, j] = result.predictions
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
        members = [result.member for result in shipped]
        if any(member is None for member in members):
            raise TrainingError(f"{side}: a member that ships came without its fitted model")
        sides[side] = SideModel(members, meta, calibrator, side=side, preset=config.preset,
                                n_features=len(FEATURE_NAMES))
    has_edge = any(report[s]["verdict"]["has_edge"] for s in SIDES)
    statement = " ".join(f"{s.capitalize()}: {report[s]['verdict']['statement']}" for s in SIDES)
    report["label_settings"] = config.label.to_dict()
    drift_reference = {
        "features": {name: reference_bins(data.rows[train_window, j]) for j, name in enumerate(FEATURE_NAMES)},
        "probability": {side: reference_bins(evaluation_probabilities[side]) for side in SIDES},
        "window": dict(plan.window),
    }
    return TrainedModel(
        sides=sides,
        report=report,
        has_edge=has_edge,
        statement=statement,
        n_bars=plan.n_bars,
        data_start=plan.data_start,
        data_end=plan.data_end,
        member_seconds={k: round(v, 3) for k, v in member_seconds.items()},
        seconds_total=time.time() - plan.started_at,
        seq_len=config.seq_len,
        drift_reference=drift_reference,
    )


def train_model(
    bars: pd.DataFrame, config: TrainConfig, progress: Callable[[str], None] | None = None,
    unit_progress: Callable[[str], None] | None = None,
) -> TrainedModel:
    """The whole training in this process: the plan, every member fit in the plan's order, the assembly.
    `progress` hears each set of fits; `unit_progress` (a heartbeat) each member fit as it starts."""
    plan = training_plan(bars, config)
    results = []
    for number, unit in enumerate(plan.units, start=1):
        if progress and unit.member == MEMBER_ORDER[0]:
            progress(_fit_set_message(plan, unit))
        if unit_progress:
            unit_progress(f"fitting {unit.key} (member fit {number} of {len(plan.units)})")
        results.append(fit_unit(plan, unit))
    return training_assemble(plan, results, progress=progress)


def _fit_set_message(plan: TrainingPlan, unit: FitUnit) -> str:
    if unit.block == 0:
        return f"{unit.side}: fitting the members that ship on {len(plan.train_window)} bars"
    return (f"{unit.side}: cross-fitting block {unit.block}/{len(plan.blocks)} — fitting members on "
            f"{len(plan.fit_index(unit))} bars")
