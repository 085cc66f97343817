"""Training spread over Celery workers (mlcore.distributed): two real training workers share the member fits and
register the model a sequential training with the same seed gives; without a broker the fits run inline, same model;
the plan's files are gone when the training ends, whether it succeeded or failed."""
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
from django.core.files.storage import default_storage

from mlcore import distributed, services
from mlcore.domain.labels import SIDES
from mlcore.models import ModelVersion, TrainingRun
from mlcore.training import train_model, training_plan
from trading import selectors as trading_selectors
from trading.tests.processes import process_stack, send  # noqa: F401  (fixture)

from ..conftest import TRAIN_CONFIG
from . import evaluation_fold

TIMEOUT = 180.0  # a full run keeps both cores busy beside it


def sequential_reference(nq, training_bars, trained):
    """The stored bars and `train_model` on them, sequentially in this process (the session's model when the stored
    bars read back as the bars it was trained on)."""
    frame = trading_selectors.bars_frame(instrument=nq, timeframe="1m")
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    if frame[columns].equals(training_bars[columns]):
        return frame, trained
    return frame, train_model(frame, TRAIN_CONFIG)


def assert_registered_as(version: ModelVersion, frame: pd.DataFrame, reference) -> None:
    """The version's stored report and drift reference are the sequential model's, and its loaded side models give
    the same probabilities on the evaluation fold."""
    assert version.metrics == json.loads(json.dumps(services._json_safe(reference.report)))
    assert version.drift_reference == json.loads(json.dumps(services._json_safe(reference.drift_reference)))
    assert (version.has_edge, version.edge_statement) == (reference.has_edge, reference.statement)
    loaded = services._load(version)
    fold = evaluation_fold(frame, TRAIN_CONFIG)
    for side in SIDES:
        got = loaded.sides[side].predict_proba(fold.rows, fold.seqs)
        want = reference.sides[side].predict_proba(fold.rows, fold.seqs)
        for key in ("members", "meta_raw", "calibrated"):
            assert np.array_equal(got[key], want[key]), (side, key)


def no_plan_left() -> bool:
    if not default_storage.exists(distributed.PLAN_ROOT):
        return True
    return default_storage.listdir(distributed.PLAN_ROOT) == ([], [])


@pytest.mark.deployment
@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_two_training_workers_share_the_member_fits_and_register_the_sequential_model(
    process_stack, stored_bars, nq, training_bars, trained  # noqa: F811
):
    frame, reference = sequential_reference(nq, training_bars, trained)
    stack = process_stack
    workers = stack.workers(["training"], ["training"], concurrency=1)
    queued = services.training_run_record(symbol="NQ", timeframe="1m", preset=TRAIN_CONFIG.preset,
                                          seed=TRAIN_CONFIG.seed)
    send(stack, distributed.train_version_distributed.name, queued.pk)

    def ended():
        return TrainingRun.objects.filter(instrument=nq).exclude(status__in=TrainingRun.IN_FLIGHT).first()

    run = stack.wait_for(ended, TIMEOUT, "the distributed training did not end")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert_registered_as(run.version, frame, reference)
    assert run.version.status == ModelVersion.Status.ACTIVE  # the first of its market: promoted
    fits = [sum(1 for line in w.log_text().splitlines() if "fit_member_unit[" in line and " succeeded in " in line)
            for w in workers]
    assert sum(fits) == len(training_plan(frame, TRAIN_CONFIG).units)
    assert all(fits), f"member fits per worker: {fits} (both should take part)"
    assert no_plan_left()


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.usefixtures("storage", "model_cache")
def test_without_a_broker_the_member_fits_run_inline_and_register_the_sequential_model(stored_bars, nq,
                                                                                        training_bars, trained):
    frame, reference = sequential_reference(nq, training_bars, trained)
    key = distributed.model_version_train_dispatch(symbol="NQ", preset=TRAIN_CONFIG.preset, seed=TRAIN_CONFIG.seed)
    run = TrainingRun.objects.get(instrument=nq)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert_registered_as(run.version, frame, reference)
    assert not default_storage.exists(f"{distributed.PLAN_ROOT}/{key}")
    assert no_plan_left()


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.usefixtures("storage")
def test_a_failed_member_fit_fails_the_run_saves_nothing_and_removes_the_plan(stored_bars, nq, monkeypatch):
    from mlcore import training

    def out_of_memory(plan, unit):
        raise MemoryError("no room for the LSTM")

    monkeypatch.setattr(training, "fit_unit", out_of_memory)
    with pytest.raises(MemoryError):
        distributed.model_version_train_dispatch(symbol="NQ", preset="fast", seed=0)
    run = TrainingRun.objects.get(instrument=nq)
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "MemoryError: no room for the LSTM")
    assert not ModelVersion.objects.exists()
    assert no_plan_left()


@pytest.mark.embedded
@pytest.mark.usefixtures("storage")
def test_a_plan_left_behind_is_pruned_once_old(training_bars):
    plan = training_plan(training_bars, TRAIN_CONFIG)
    old, recent = distributed.training_plan_store(plan), distributed.training_plan_store(plan)
    stale = time.time() - distributed.PLAN_MAX_AGE - 60
    os.utime(default_storage.path(f"{distributed.PLAN_ROOT}/{old}/plan.npz"), (stale, stale))
    assert distributed.training_plans_prune() == [old]
    assert default_storage.listdir(distributed.PLAN_ROOT) == ([recent], [])
    restored = distributed.training_plan_load(recent)
    assert restored.units == plan.units
    distributed.training_plan_remove(recent)
    assert no_plan_left()


@pytest.mark.embedded
def test_the_distributed_training_bench_says_it_needs_deployment_mode_without_redis(settings):
    from mlcore.benchmarks import bench_train_distributed

    settings.REDIS_URL = ""
    result = bench_train_distributed(pd.DataFrame(), TRAIN_CONFIG, workers=(1, 2))
    assert result == {"skipped": "needs deployment mode (DATABASE_URL and REDIS_URL): the member fits run on Celery "
                                 "workers through Redis"}
