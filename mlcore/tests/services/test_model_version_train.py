"""Training a version: bad input gives a clear error and saves nothing; one training per market at a time."""
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlcore import services, training
from mlcore.models import ModelVersion, TrainingRun
from mlcore.registry import artifacts_verify, model_version_promote
from mlcore.services import TrainingAlreadyRunning, model_version_train
from mlcore.training import TrainConfig, TrainingError, train_model
from trading import services as trading_services
from trading.selectors import UnknownInstrument

FAST = TrainConfig(preset="fast", seed=0)
pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("storage", "model_cache")]


def store(instrument, frame: pd.DataFrame) -> None:
    trading_services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame)


def only_run(instrument) -> TrainingRun:
    runs = list(TrainingRun.objects.filter(instrument=instrument))
    assert len(runs) == 1
    return runs[0]


def flat_bars(frame: pd.DataFrame) -> pd.DataFrame:
    flat = frame.copy()
    flat[["open", "high", "low", "close"]] = 18000.0
    return flat


# --- bad input -------------------------------------------------------------------------------------------------


def test_too_few_bars_fail_with_the_reason_and_save_no_version(nq, training_bars):
    store(nq, training_bars.iloc[:200])

    with pytest.raises(TrainingError, match=r"too few usable bars: \d+ of 200"):
        model_version_train(symbol="NQ", preset="fast")

    assert not ModelVersion.objects.exists()
    run = only_run(nq)
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("TrainingError: too few usable bars")
    assert run.finished_at is not None and run.version is None


def test_a_constant_price_series_fails_with_the_reason_and_saves_no_version(nq, training_bars):
    store(nq, flat_bars(training_bars.iloc[:300]))

    with pytest.raises(TrainingError, match="constant price series"):
        model_version_train(symbol="NQ", preset="fast")

    assert not ModelVersion.objects.exists()
    assert only_run(nq).status == TrainingRun.Status.FAILED
    assert "constant price series" in only_run(nq).error


def test_no_bars_at_all_fail_with_the_reason(nq):
    with pytest.raises(TrainingError, match="too few bars"):
        model_version_train(symbol="NQ", preset="fast")

    assert not ModelVersion.objects.exists()
    assert only_run(nq).status == TrainingRun.Status.FAILED


def test_an_unknown_instrument_is_refused_before_any_run_is_recorded(db):
    with pytest.raises(UnknownInstrument, match="'NOPE'"):
        model_version_train(symbol="NOPE", preset="fast")

    assert not TrainingRun.objects.exists()
    assert not ModelVersion.objects.exists()


def test_an_unknown_preset_is_refused_before_any_run_is_recorded(nq):
    with pytest.raises(TrainingError, match="unknown preset 'huge'"):
        model_version_train(symbol="NQ", preset="huge")

    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_reaching_the_features_fails_training_with_the_bar_named(training_bars, bad):
    # The bar contract refuses such bars before they are stored, so this is the pure training path.
    bars = training_bars.copy()
    bars.loc[700, "close"] = bad

    with pytest.raises(TrainingError, match=r"close is (nan|inf) at bar 2024-01-0\d.*must be finite"):
        train_model(bars, FAST)


# --- one training per market -----------------------------------------------------------------------------------


def test_a_second_training_while_one_runs_for_the_market_is_refused_naming_it(nq, training_bars):
    store(nq, training_bars.iloc[:200])
    running = TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="full")

    with pytest.raises(TrainingAlreadyRunning) as refused:
        model_version_train(symbol="NQ", preset="fast")

    assert "a training of NQ 1m is already running since" in str(refused.value)
    assert not ModelVersion.objects.exists()
    assert list(TrainingRun.objects.values_list("pk", "status")) == [(running.pk, TrainingRun.Status.RUNNING)]


def test_a_training_started_while_another_one_fits_is_refused_and_the_first_completes(stored_bars, nq, trained,
                                                                                       monkeypatch):
    refusals = []

    def fit_while_a_second_training_starts(bars, config, progress=None, **kwargs):
        with pytest.raises(TrainingAlreadyRunning) as refused:
            model_version_train(symbol="NQ", preset="fast")
        refusals.append(str(refused.value))
        return trained

    monkeypatch.setattr(training, "train_model", fit_while_a_second_training_starts)

    version = model_version_train(symbol="NQ", preset="fast")

    assert len(refusals) == 1 and "a training of NQ 1m is already running" in refusals[0]
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [version.pk]
    assert only_run(nq).status == TrainingRun.Status.SUCCEEDED


def test_a_training_running_for_another_market_does_not_block(nq, training_bars):
    store(nq, training_bars.iloc[:200])
    TrainingRun.objects.create(instrument=nq, timeframe="5m", preset="fast")

    with pytest.raises(TrainingError, match="too few usable bars"):  # got past the lock to the bars
        model_version_train(symbol="NQ", preset="fast")


def test_a_run_left_running_for_more_than_six_hours_is_abandoned_and_does_not_block(nq, training_bars):
    store(nq, training_bars.iloc[:200])
    stale = TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="fast")
    TrainingRun.objects.filter(pk=stale.pk).update(started_at=timezone.now() - timedelta(hours=6, minutes=1))

    with pytest.raises(TrainingError, match="too few usable bars"):
        model_version_train(symbol="NQ", preset="fast")

    stale.refresh_from_db()
    assert stale.status == TrainingRun.Status.FAILED
    assert stale.error == "abandoned (no end recorded)"


def test_the_database_allows_one_running_training_per_market(nq):
    TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="fast")

    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="fast")


# --- the whole path, with the session's fitted model standing in for the fit --------------------------------------


@pytest.fixture
def fit_returns_trained(monkeypatch, trained):
    """Replace the fit (tens of seconds) by the session's model; the stored frame it was given is kept."""
    given = []

    def fit(bars, config, progress=None, **kwargs):
        given.append((bars, config))
        return trained

    monkeypatch.setattr(training, "train_model", fit)
    return given


def test_training_reads_the_stored_bars_registers_and_promotes_the_first_version(stored_bars, nq, fit_returns_trained):
    version = model_version_train(symbol="NQ", preset="fast")

    (bars, config), = fit_returns_trained
    assert config == FAST
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(bars[columns], stored_bars[columns], check_dtype=False)
    assert version.status == ModelVersion.Status.ACTIVE
    artifacts_verify(version=version)
    run = only_run(nq)
    assert (run.status, run.version_id, run.error) == (TrainingRun.Status.SUCCEEDED, version.pk, "")
    assert np.isfinite(version.train_seconds)


def test_a_new_version_stays_a_candidate_when_one_is_already_active(stored_bars, register, fit_returns_trained):
    active = model_version_promote(version_id=register().pk)

    version = model_version_train(symbol="NQ", preset="fast")

    assert version.status == ModelVersion.Status.CANDIDATE
    assert ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE).pk == active.pk


def test_promote_true_makes_the_new_version_active_over_the_current_one(stored_bars, register, fit_returns_trained):
    previous = model_version_promote(version_id=register().pk)

    version = model_version_train(symbol="NQ", preset="fast", promote=True)

    assert version.status == ModelVersion.Status.ACTIVE
    previous.refresh_from_db()
    assert previous.status == ModelVersion.Status.RETIRED


def test_promote_false_keeps_even_the_first_version_a_candidate(stored_bars, fit_returns_trained):
    version = model_version_train(symbol="NQ", preset="fast", promote=False)

    assert version.status == ModelVersion.Status.CANDIDATE


def test_a_failure_while_storing_artifacts_saves_no_version_and_marks_the_run_failed(stored_bars, nq, storage,
                                                                                    fit_returns_trained, monkeypatch):
    def refuse(*, version, folder):
        raise OSError("storage unavailable")

    monkeypatch.setattr(services.registry, "artifacts_store", refuse)

    with pytest.raises(OSError, match="storage unavailable"):
        model_version_train(symbol="NQ", preset="fast")

    assert not ModelVersion.objects.exists()
    run = only_run(nq)
    assert (run.status, run.error) == (TrainingRun.Status.FAILED, "OSError: storage unavailable")
