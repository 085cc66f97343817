"""Training cut into member fits: the plan, one fit per unit in any order, then the assembly, gives exactly what
`train_model` gives, and what fitting every member at once (`fit_members`, as training did before the cut) gives."""
import numpy as np
import pytest

from mlcore import training
from mlcore.domain.evaluation import binary_metrics
from mlcore.domain.labels import SIDES
from mlcore.predictors.ensemble import MEMBER_ORDER, fit_members, predict_members
from mlcore.training import (
    FitUnit,
    TrainConfig,
    TrainingError,
    fit_unit,
    training_assemble,
    training_plan,
    training_plan_arrays,
    training_plan_facts,
    training_plan_restore,
)

from . import evaluation_fold, small_model, small_series

CONFIG = TrainConfig(preset="fast", seed=0)


@pytest.fixture(scope="module")
def plan():
    return training_plan(small_series(), CONFIG)


@pytest.fixture(scope="module")
def sequential():
    return small_model(0)


def test_the_plan_lists_every_member_of_every_fit_set_in_a_fixed_order(plan):
    fit_sets = len(plan.blocks) + 1
    assert len(plan.units) == len(SIDES) * fit_sets * len(MEMBER_ORDER)
    assert plan.units[:len(MEMBER_ORDER)] == tuple(FitUnit(side="long", block=0, member=m) for m in MEMBER_ORDER)
    assert plan.units[-1] == FitUnit(side="short", block=len(plan.blocks), member=MEMBER_ORDER[-1])
    assert len({unit.key for unit in plan.units}) == len(plan.units)
    assert all(FitUnit.from_key(unit.key) == unit for unit in plan.units)


def test_units_fitted_in_any_order_and_assembled_give_train_models_result(plan, sequential):
    fold = evaluation_fold(small_series(), CONFIG)
    results = [fit_unit(plan, unit) for unit in reversed(plan.units)]  # not the order train_model fits them in
    assembled = training_assemble(plan, results)
    assert assembled.report == sequential.report
    assert assembled.drift_reference == sequential.drift_reference
    assert (assembled.has_edge, assembled.statement) == (sequential.has_edge, sequential.statement)
    assert (assembled.n_bars, assembled.data_start, assembled.data_end) == (
        sequential.n_bars, sequential.data_start, sequential.data_end)
    for side in SIDES:
        a, b = fold.probabilities(assembled, side), fold.probabilities(sequential, side)
        for key in ("members", "meta_raw", "calibrated"):
            assert np.array_equal(a[key], b[key]), (side, key)


def test_the_report_is_what_fitting_all_members_at_once_gives(plan, sequential):
    """The reference from before the cut: `fit_members` fits the five members of a fit set together; the shipped
    set's predictions on the evaluation fold and the first block's out-of-fold predictions give the report's
    figures."""
    side = "long"
    data, y = plan.data, plan.data.labels["long"]
    index = plan.train_window
    shipped = fit_members(data.rows[index], data.seqs[index], y[index], preset=CONFIG.preset, seed=CONFIG.seed)
    fold = evaluation_fold(small_series(), CONFIG)
    assert np.array_equal(predict_members(shipped, fold.rows, fold.seqs),
                          sequential.sides[side].predict_proba(fold.rows, fold.seqs)["members"])
    train, block = plan.blocks[0]
    members = fit_members(data.rows[train], data.seqs[train], y[train], preset=CONFIG.preset, seed=CONFIG.seed)
    oof = predict_members(members, data.rows[block], data.seqs[block])
    assert sequential.report[side]["folds"][0]["members"] == {
        name: binary_metrics(y[block], oof[:, j]) for j, name in enumerate(MEMBER_ORDER)}


def test_a_stored_plan_is_restored_equal(plan):
    restored = training_plan_restore(training_plan_facts(plan), training_plan_arrays(plan))
    assert restored.units == plan.units
    assert restored.config == plan.config
    for name in ("rows", "seqs", "bar_index"):
        assert np.array_equal(getattr(restored.data, name), getattr(plan.data, name), equal_nan=True), name
    assert all(np.array_equal(restored.data.labels[s], plan.data.labels[s]) for s in SIDES)
    assert restored.data.seqs.dtype == plan.data.seqs.dtype
    assert np.array_equal(restored.train_window, plan.train_window)
    assert np.array_equal(restored.test_last, plan.test_last)
    assert all(np.array_equal(a, b) for pair, other in zip(restored.blocks, plan.blocks) for a, b in zip(pair, other))
    assert (restored.n_bars, restored.data_start, restored.data_end, restored.window) == (
        plan.n_bars, plan.data_start, plan.data_end, plan.window)


def test_a_fit_set_of_one_class_is_refused_with_its_name(plan):
    arrays = training_plan_arrays(plan)
    labels = arrays["labels_short"].copy()
    labels[plan.blocks[1][0]] = 0  # block 2's training set: all losers
    with pytest.raises(TrainingError, match=r"short labels of the cross-fitting block 2's training set \(\d+ bars\) "
                                            r"are all 0: no signal to learn"):
        training_plan_restore(training_plan_facts(plan), {**arrays, "labels_short": labels})
    arrays["labels_long"] = np.ones_like(arrays["labels_long"])
    with pytest.raises(TrainingError, match=r"long labels of the training window \(\d+ bars\) are all 1"):
        training_plan_restore(training_plan_facts(plan), arrays)


def test_fit_unit_refuses_a_one_class_fit_set_too(plan):
    flat = training_plan_restore(training_plan_facts(plan), training_plan_arrays(plan))
    flat.data.labels["long"] = np.zeros_like(flat.data.labels["long"])
    with pytest.raises(TrainingError, match="long labels of the training window .* are all 0"):
        fit_unit(flat, flat.units[0])


def test_assembling_without_every_unit_is_refused(plan):
    with pytest.raises(TrainingError, match=f"no result for {len(plan.units)} of the plan's"):
        training_assemble(plan, [])


def test_train_model_fits_the_units_in_the_plans_order_and_says_when_each_fit_set_starts(monkeypatch, plan):
    monkeypatch.setattr(training, "training_plan", lambda bars, config: plan)
    monkeypatch.setattr(training, "fit_unit", lambda plan, unit: unit)
    monkeypatch.setattr(training, "training_assemble", lambda plan, results, progress=None: results)
    heard = []
    assert training.train_model(small_series(), CONFIG, progress=heard.append) == list(plan.units)
    sizes = [len(train) for train, _ in plan.blocks]
    assert heard == [
        message
        for side in SIDES
        for message in (f"{side}: fitting the members that ship on {len(plan.train_window)} bars",
                        *(f"{side}: cross-fitting block {k}/3 — fitting members on {n} bars"
                          for k, n in enumerate(sizes, start=1)))
    ]
