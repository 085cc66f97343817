"""ML services: train a version (with the training lock), predict a bar with the cached active version.

The ML stack (Keras, the tree libraries) is imported only by the functions that train or predict, so processes that
do neither (web, beat, the feed, trading workers) never load it.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from trading import selectors as trading_selectors
from trading.domain.synthetic import session_timestamps_between
from trading.domain.timeframes import timeframe_delta

from . import registry, selectors
from .domain.features import FeatureError
from .domain.labels import LabelConfig, barrier_outcome
from .errors import TrainingError
from .domain.heartbeat import Part, silent_part, stopped_reason
from .events import prediction_created, training_run_ended
from .facts import PredictionFacts
from .heartbeats import training_run_heartbeat, training_run_where
from .models import ModelVersion, Prediction, RetrainingHeartbeat, TrainingRun

if TYPE_CHECKING:
    from .inference import LoadedModel
    from .training import TrainConfig, TrainedModel

logger = logging.getLogger(__name__)
STALE_TRAINING_HOURS = 6


class TrainingAlreadyRunning(TrainingError):
    pass


def model_version_train(
    *,
    symbol: str,
    timeframe: str = "1m",
    preset: str = "full",
    seed: int = 0,
    label: LabelConfig | None = None,
    promote: bool | None = None,
    progress: Callable[[str], None] | None = None,
    until: datetime | None = None,
) -> ModelVersion:
    """Train a new version on the stored bars and register it (promoted when asked, or when none is active).

    `until` trains on the bars up to and including that time only: a version a backtest of the later bars can
    trust (trained on none of them).

    Refuses a second training of the same market while one is queued or runs. On any error nothing is saved. While
    it trains, this process beats (a killed one is failed by `training_runs_silent_fail`).
    """
    from .training import TrainConfig

    if until is not None and (until.tzinfo is None or until.utcoffset() is None):
        raise ValueError(f"until must be timezone-aware, got {until!r}")
    instrument = trading_selectors.instrument_get(symbol=symbol)
    TrainConfig(preset=preset, seed=seed, label=label or LabelConfig())  # refused before any run is recorded
    run = _training_run_start(instrument=instrument, timeframe=timeframe, preset=preset, seed=seed,
                              label=label or LabelConfig(), promote=promote)
    return _training_run_train(run, progress=progress, until=until)


def model_version_train_queue(*, symbol: str, timeframe: str = "1m", preset: str = "full", seed: int = 0,
                              label: LabelConfig | None = None, promote: bool | None = None,
                              distributed: bool = False) -> TrainingRun:
    """Record a queued training run and send its id to the training queue (`mlcore.tasks.train_version`, or
    `train_version_distributed`): a delivery of the task trains only a run still queued, so a task delivered again
    (Redis's visibility timeout, a worker lost before its acknowledgement) trains nothing a second time."""
    run = training_run_record(symbol=symbol, timeframe=timeframe, preset=preset, seed=seed, label=label,
                              promote=promote)
    name = "mlcore.tasks.train_version_distributed" if distributed else "mlcore.tasks.train_version"

    def send():
        from celery import current_app

        try:
            if current_app.conf.task_always_eager:  # embedded mode: run here, as every task does
                current_app.tasks[name].apply(args=(run.pk,))
            else:
                current_app.send_task(name, args=(run.pk,), queue="training")
        except Exception as exc:
            training_run_fail(run.pk, f"could not be queued: {type(exc).__name__}: {exc}")

    transaction.on_commit(send)
    return run


def training_run_record(*, symbol: str, timeframe: str = "1m", preset: str = "full", seed: int = 0,
                        label: LabelConfig | None = None, promote: bool | None = None) -> TrainingRun:
    """A queued training run (refused while one of the market is queued or runs): the id its task carries."""
    instrument = trading_selectors.instrument_get(symbol=symbol)
    return _training_run_start(instrument=instrument, timeframe=timeframe, preset=preset, seed=seed,
                               label=label or LabelConfig(), promote=promote, status=TrainingRun.Status.QUEUED)


def training_run_execute(*, run_id: int) -> ModelVersion | None:
    """The `train_version` task: train the queued run. A run already taken up (by a live process), ended or failed
    is not trained again: the delivery says why in the log and returns None. A run taken up by a process that fell
    silent is failed here first, as the watchdog would."""
    run = training_run_claim(run_id)
    if run is None:
        return None
    return _training_run_train(run)


def training_run_claim(run_id: int) -> TrainingRun | None:
    """Take up a queued run (status running, this process's): None, logged with why, when it is not queued."""
    current = TrainingRun.objects.select_related("instrument").filter(pk=run_id).first()
    if current is None:
        logger.warning("training run #%s: not trained (a task for a run that does not exist)", run_id)
        return None
    training_runs_silent_fail(instrument=current.instrument, timeframe=current.timeframe)
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now())
    run = TrainingRun.objects.select_related("instrument").get(pk=run_id)
    if not claimed:
        logger.warning("training run #%s: not trained again (a redelivered task): %s", run_id,
                       training_run_where(run))
        return None
    return run


def _training_run_train(run: TrainingRun, *, progress: Callable[[str], None] | None = None,
                        until: datetime | None = None) -> ModelVersion:
    """Train a run this process has taken up (status running), beating while it does; the run ends succeeded with
    its version or failed with the error."""
    from .training import TrainConfig, train_model

    instrument, timeframe = run.instrument, run.timeframe
    config = TrainConfig(preset=run.preset, seed=run.seed, label=LabelConfig.from_dict(run.label_settings)
                         if run.label_settings else LabelConfig())
    try:
        with training_run_heartbeat(run_id=run.pk, part="run", progress="reading the bars") as beat:
            def report(message: str) -> None:
                beat.progress(message)
                if progress:
                    progress(message)

            bars = trading_selectors.bars_frame(instrument=instrument, timeframe=timeframe, end_at=until)
            bound = f" (up to {until.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC)" if until is not None else ""
            report(f"{len(bars)} {instrument} {timeframe} bars loaded{bound}")
            trained = train_model(bars, config, progress=report, unit_progress=beat.progress)
            version = training_run_register(run_id=run.pk, config=config, trained=trained)
            beat.progress(f"registered v{version.pk}")
            version = training_run_promote(run, version)
    except BaseException as exc:
        training_run_fail(run.pk, f"{type(exc).__name__}: {exc}")
        raise
    training_run_succeed(run.pk, version)
    return version


def training_run_register(*, run_id: int, config: TrainConfig, trained: TrainedModel) -> ModelVersion:
    """Register a run's trained version, once: in one transaction with the run's row locked and the version set on
    it, so a result that comes after the run ended (failed as silent while its worker was only slow, or a task
    delivered again) registers nothing, and a killed process leaves either no version or the run naming it."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("instrument").get(pk=run_id)
        late = run.status != TrainingRun.Status.RUNNING or run.version_id is not None
        if late:
            why = training_run_where(run)
            # Said on the failed run (not rolled back with the refusal below): the worker was alive after all.
            if run.status == TrainingRun.Status.FAILED and "arrived after all" not in run.error:
                TrainingRun.objects.filter(pk=run_id).update(error=(
                    f"{run.error} | later, at {timezone.now():%H:%M:%S} UTC, the trained model arrived after all: "
                    "discarded (nothing registered)")[-4000:])
        else:
            version = _version_register(instrument=run.instrument, timeframe=run.timeframe, config=config,
                                        trained=trained)
            TrainingRun.objects.filter(pk=run_id).update(version=version)
    if late:
        logger.error("training run #%s: its trained model arrived after the run ended (%s): discarded", run_id, why)
        raise TrainingError(f"training run #{run_id} ended before its model was registered ({why}); "
                            "nothing was registered")
    return version


def training_run_promote(run: TrainingRun, version: ModelVersion) -> ModelVersion:
    if run.promote or (run.promote is None and selectors.model_version_active(
            instrument=run.instrument, timeframe=run.timeframe) is None):
        return registry.model_version_promote(version_id=version.pk, via="training")
    return version


def training_run_succeed(run_id: int, version: ModelVersion) -> None:
    if TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.SUCCEEDED, finished_at=timezone.now(), version=version):
        transaction.on_commit(lambda: _training_run_announce(run_id))


def _training_run_announce(run_id: int) -> None:
    for receiver, error in training_run_ended.send_robust(sender=TrainingRun, run_id=run_id):
        if isinstance(error, Exception):
            logger.error("training run #%s: receiver %s failed: %r", run_id, receiver, error,
                         exc_info=(type(error), error, error.__traceback__))


def training_run_fail(run_id: int | None, error: str) -> None:
    """End a queued or running run as failed (a run already ended keeps its end; a later error is logged only)."""
    if run_id is None:
        return
    if TrainingRun.objects.filter(pk=run_id, status__in=TrainingRun.IN_FLIGHT).update(
            status=TrainingRun.Status.FAILED, finished_at=timezone.now(), error=error[:4000]):
        logger.error("training run #%s failed: %s", run_id, error)
        transaction.on_commit(lambda: _training_run_announce(run_id))
    else:
        logger.warning("training run #%s had already ended; a later error: %s", run_id, error)


def training_runs_silent_fail(*, now: datetime | None = None, timeout_seconds: float | None = None, instrument=None,
                              timeframe: str | None = None) -> list[int]:
    """The watchdog of training runs (run by the periodic retraining job, `mlcore.retraining.retrainings_advance`,
    and before any new training of the market): fail each run one of whose running parts (the run, a member fit,
    the assembly) has not beaten for `timeout_seconds` (MINHOS_TRAINING_HEARTBEAT_TIMEOUT): its worker was killed
    or hangs, and the market may train again at once. Returns their ids."""
    now = now or timezone.now()
    timeout = settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT if timeout_seconds is None else timeout_seconds
    rows = RetrainingHeartbeat.objects.filter(training_run__status=TrainingRun.Status.RUNNING, ended_at__isnull=True,
                                              beat_at__lt=now - timedelta(seconds=timeout)).select_related(
        "training_run")
    if instrument is not None:
        rows = rows.filter(training_run__instrument=instrument, training_run__timeframe=timeframe)
    parts: dict[int, list[Part]] = {}
    versions: dict[int, int | None] = {}
    for row in rows:
        versions[row.training_run_id] = row.training_run.version_id
        parts.setdefault(row.training_run_id, []).append(
            Part(part=row.part, worker=row.worker, pid=row.pid, beat_at=row.beat_at, ended_at=row.ended_at,
                 progress=row.progress))
    failed = []
    for pk, running in sorted(parts.items()):
        part = silent_part(running, now=now, timeout_seconds=timeout)
        if part is None:
            continue
        version = versions[pk]
        aftermath = (f"v{version} was registered, not promoted by this run" if version
                     else "nothing was registered or promoted")
        training_run_fail(pk, stopped_reason(part, now=now, aftermath=aftermath))
        failed.append(pk)
    return failed


def _training_run_start(*, instrument, timeframe: str, preset: str, seed: int = 0,
                        label: LabelConfig | None = None, promote: bool | None = None,
                        status: str = TrainingRun.Status.RUNNING) -> TrainingRun:
    # A run whose process was killed is failed by its silent heartbeat; one left queued or running without any (a
    # lost task, a process killed before its first beat) must not block training forever either.
    training_runs_silent_fail(instrument=instrument, timeframe=timeframe)
    stale_before = timezone.now() - timezone.timedelta(hours=STALE_TRAINING_HOURS)
    TrainingRun.objects.filter(instrument=instrument, timeframe=timeframe, status__in=TrainingRun.IN_FLIGHT,
                               started_at__lt=stale_before).update(status=TrainingRun.Status.FAILED,
                                                                   finished_at=timezone.now(),
                                                                   error="abandoned (no end recorded)")
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(instrument=instrument, timeframe=timeframe, preset=preset, seed=seed,
                                              label_settings=(label or LabelConfig()).to_dict(), promote=promote,
                                              status=status)
    except IntegrityError:
        running = TrainingRun.objects.filter(instrument=instrument, timeframe=timeframe,
                                             status__in=TrainingRun.IN_FLIGHT).first()
        since = f" since {running.started_at:%Y-%m-%d %H:%M:%S} UTC" if running else ""
        beat = (f" (training run #{running.pk} {running.status}, last heartbeat {running.heartbeat_at:%H:%M:%S} UTC: "
                f"{running.progress})" if running and running.heartbeat_at else "")
        raise TrainingAlreadyRunning(
            f"a training of {instrument} {timeframe} is already running{since}{beat}; wait for it to finish"
        ) from None


def _version_register(*, instrument, timeframe: str, config: TrainConfig, trained: TrainedModel) -> ModelVersion:
    with tempfile.TemporaryDirectory(prefix="minhos-model-") as folder:
        for side, model in trained.sides.items():
            model.save(Path(folder) / side)
        with transaction.atomic():
            version = ModelVersion.objects.create(
                instrument=instrument,
                timeframe=timeframe,
                preset=config.preset,
                seed=config.seed,
                data_start=trained.data_start.to_pydatetime(),
                data_end=trained.data_end.to_pydatetime(),
                n_bars=trained.n_bars,
                feature_names=list(trained.feature_names),
                feature_window=trained.feature_window,
                sequence_length=trained.seq_len,
                hyperparameters=config.hyperparameters(),
                label_settings=config.label.to_dict(),
                payoff_ratio=config.label.payoff_ratio,
                metrics=_json_safe(trained.report),
                has_edge=trained.has_edge,
                edge_statement=trained.statement,
                train_seconds=round(trained.seconds_total, 3),
                member_seconds=trained.member_seconds,
                drift_reference=_json_safe(trained.drift_reference),
            )
            # On failure artifacts_store removes the files it saved and the row rolls back: nothing partial.
            registry.artifacts_store(version=version, folder=Path(folder))
    logger.info("registered %s: %s", version, trained.statement)
    return version


def _json_safe(value):
    """NaN and infinities are not JSON: store them as null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


# ---------------------------------------------------------------------------------------------- inference

_cache: dict[tuple[int, str], LoadedModel] = {}
_cache_lock = threading.Lock()


def loaded_model_get(*, instrument, timeframe: str) -> LoadedModel | None:
    """The active version, loaded once per process and reloaded when the active version changes.

    If the new active version's artifacts are missing or corrupted, the error is logged and the version
    loaded before keeps serving; with nothing loaded before, there is no model (None).
    """
    active = selectors.model_version_active(instrument=instrument, timeframe=timeframe)
    key = (getattr(instrument, "pk", instrument), timeframe)  # an Instrument or its id
    current = _cache.get(key)
    if active is None:
        # No active version (e.g. retired by hand): nothing predicts, rather than a version nobody chose.
        _cache.pop(key, None)
        return None
    if current is not None and current.version_id == active.pk:
        return current
    with _cache_lock:
        current = _cache.get(key)
        if current is not None and current.version_id == active.pk:
            return current
        try:
            loaded = _load(active)
        except Exception as exc:
            serving = f"v{current.version_id} keeps serving" if current else "no model serves"
            logger.error("cannot load active model version %s (%s); %s", active.pk, exc, serving)
            return current
        _cache[key] = loaded
        return loaded


def _load(version: ModelVersion) -> LoadedModel:
    from .inference import LoadedModel

    cache_root = Path(settings.VAR_DIR) / "model-cache"
    cache_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"v{version.pk}-", dir=cache_root))
    try:
        registry.artifacts_fetch(version=version, dest=folder)
        return LoadedModel.load(folder, version_id=version.pk, seq_len=version.sequence_length)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def model_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()
        _pinned_cache.clear()


def prediction_create(*, bar_id: int, version_id: int | None = None, backtest: bool = False) -> PredictionFacts | None:
    """Predict a stored bar with the active version and store it (once per bar and version); its facts, or None
    when there is no model or too little history (a warning says which).

    A backtest names its version (`version_id`, loaded once per process like a shadow version) and marks its
    predictions `backtest`, so monitoring never counts them."""
    bar = trading_selectors.bar_key(bar_id=bar_id)
    # One prediction per bar and version: a stored one is returned (before loading a named version at all).
    if version_id is not None:
        existing = Prediction.objects.filter(bar_id=bar.bar_id, version_id=version_id).values_list("pk").first()
        if existing is not None:
            return selectors.prediction_facts(prediction_id=existing[0], created=False)
        model = _pinned_model(version_id)
    else:
        model = loaded_model_get(instrument=bar.instrument_id, timeframe=bar.timeframe)
        if model is None:
            return None
        existing = Prediction.objects.filter(bar_id=bar.bar_id, version_id=model.version_id).values_list("pk").first()
        if existing is not None:
            return selectors.prediction_facts(prediction_id=existing[0], created=False)
    window = trading_selectors.bars_frame(instrument=bar.instrument_id, timeframe=bar.timeframe, end_at=bar.timestamp,
                                          last_n=model.bars_needed)
    try:
        result = model.predict(window)
    except FeatureError as exc:
        logger.warning("no prediction for %s %s bar %s: %s", bar.symbol, bar.timeframe, bar.timestamp, exc)
        return None
    prediction, created = Prediction.objects.get_or_create(
        bar_id=bar.bar_id,
        version_id=model.version_id,
        defaults={**_prediction_fields(result, instrument_id=bar.instrument_id), "backtest": backtest},
    )
    if created and not backtest:
        # For listeners such as monitoring; trading sizes through the workflow, from the facts returned here.
        for receiver, error in prediction_created.send_robust(sender=Prediction, prediction=prediction):
            if isinstance(error, Exception):
                logger.error("prediction %s: receiver %s failed: %r", prediction.pk, receiver, error,
                             exc_info=(type(error), error, error.__traceback__))
    return selectors.prediction_facts(prediction_id=prediction.pk, created=created)


def _prediction_fields(result: dict, *, instrument_id: int, shadow: bool = False) -> dict:
    """A stored prediction's columns from `LoadedModel.predict`'s result."""
    return {"instrument_id": instrument_id, "shadow": shadow, "p_long": result["p_long"], "p_short": result["p_short"],
            "side": result["side"], "confidence": result["confidence"], "agreement": result["agreement"],
            "members": {"members": result["members"], "meta_raw": result["meta_raw"],
                        "member_ms": result.get("member_ms", {})},
            "latency_ms": result["latency_ms"], "atr": result["atr"], "atr_reference": result["atr_reference"]}


_shadow_cache: dict[int, LoadedModel] = {}
_pinned_cache: dict[int, LoadedModel] = {}


def _pinned_model(version_id: int) -> LoadedModel:
    """A named version (a backtest's), loaded once per process; the newest few stay loaded."""
    model = _pinned_cache.get(version_id)
    if model is None:
        model = _load(ModelVersion.objects.get(pk=version_id))
        with _cache_lock:
            while len(_pinned_cache) >= 4:
                _pinned_cache.pop(next(iter(_pinned_cache)))
            _pinned_cache[version_id] = model
    return model


def predictions_for_frame(*, version_id: int, frame: pd.DataFrame, first: int = 0) -> list[dict | None]:
    """A named version's predictions of every bar of `frame` from `first` on, in one batch (an in-memory backtest):
    element k is what `LoadedModel.predict` gives bar first + k's window, bit for bit but the timings, or None
    (see `LoadedModel.predict_frame`). Nothing is stored."""
    return _pinned_model(version_id).predict_frame(frame, first=first)


def shadow_predictions_create(*, bar_id: int) -> int:
    """Predict a stored bar with every version running in shadow for its market (a challenger beside the active
    version): stored with shadow=True, resolved like any prediction, never sized, traded or pushed. Called after the
    bar's own decision, so it never delays a recommendation. A shadow version that cannot load or predict is logged
    and skipped. Returns how many were stored."""
    bar = trading_selectors.bar_key(bar_id=bar_id)
    versions = list(ModelVersion.objects.filter(instrument_id=bar.instrument_id, timeframe=bar.timeframe,
                                                status=ModelVersion.Status.SHADOW))
    for stale in set(_shadow_cache) - {v.pk for v in versions}:
        _shadow_cache.pop(stale, None)
    stored = 0
    for version in versions:
        if Prediction.objects.filter(bar_id=bar.bar_id, version_id=version.pk).exists():
            continue
        try:
            model = _shadow_cache.get(version.pk)
            if model is None:
                model = _shadow_cache[version.pk] = _load(version)
            window = trading_selectors.bars_frame(instrument=bar.instrument_id, timeframe=bar.timeframe,
                                                  end_at=bar.timestamp, last_n=model.bars_needed)
            result = model.predict(window)
        except Exception as exc:
            logger.error("shadow v%s: no prediction for %s %s bar %s: %s", version.pk, bar.symbol, bar.timeframe,
                         bar.timestamp, exc)
            continue
        _, created = Prediction.objects.get_or_create(
            bar_id=bar.bar_id, version_id=version.pk,
            defaults=_prediction_fields(result, instrument_id=bar.instrument_id, shadow=True))
        stored += int(created)
    return stored


def prediction_payload(prediction: Prediction) -> dict:
    """The dashboards' `prediction.created` payload of a stored prediction (the page's first paint)."""
    return selectors.prediction_facts(prediction_id=prediction.pk).message()


# ---------------------------------------------------------------------------------------------- outcomes

OUTCOME_BATCH = 500  # pending predictions resolved per call at most (a backlog clears over the next bars)


@dataclass(frozen=True)
class OutcomeResolution:
    resolved: int
    unresolvable: int
    pending: int  # left pending: their horizon has not passed yet (or the batch limit was reached)
    notes: tuple[str, ...] = ()


def prediction_outcomes_resolve(*, instrument_id: int, timeframe: str, through: datetime,
                                now: datetime | None = None) -> OutcomeResolution:
    """Resolve the outcome of every pending prediction of one market whose sides are decided by the bars stored up
    to `through` (a bar timestamp), by the labels' triple-barrier rule (`labels.barrier_outcome`). Idempotent: only
    pending rows are read and each is written once.

    A prediction without a usable ATR, or whose path has a hole (bars missing inside the trading session) before
    any barrier was touched, is marked unresolvable with the reason: its path is unknown. A barrier touched before
    the hole still resolves it.
    """
    now = now or timezone.now()
    pending = list(
        Prediction.objects.filter(instrument_id=instrument_id, bar__timeframe=timeframe,
                                  outcome_status=Prediction.OutcomeStatus.PENDING, bar__timestamp__lt=through)
        .order_by("bar__timestamp", "id")
        .values_list("id", "bar__timestamp", "bar__close", "atr", "version__label_settings")[:OUTCOME_BATCH]
    )
    if not pending:
        return OutcomeResolution(0, 0, 0)
    path = trading_selectors.bars_path(instrument_id=instrument_id, timeframe=timeframe,
                                       after=_aware_ts(pending[0][1]), through=through)
    stamps = path["timestamp"]
    holes = _session_holes(stamps, timeframe=timeframe, after=_aware_ts(pending[0][1]))
    updates, notes, still = [], [], 0
    for pk, stamp, close, atr, label in pending:
        stamp = _aware_ts(stamp)
        config = LabelConfig.from_dict(label if isinstance(label, dict) else json.loads(label))
        start = int(np.searchsorted(stamps, np.datetime64(stamp.replace(tzinfo=None)), side="right"))
        row = Prediction(pk=pk, resolved_at=now)
        if atr is None or not math.isfinite(atr) or atr <= 0:
            row.outcome_status, row.outcome_note = Prediction.OutcomeStatus.UNRESOLVABLE, \
                f"no usable ATR ({atr!r}) on the predicted bar: the bracket is unknown"
            updates.append(row)
            continue
        stop_at = start + config.horizon
        sides = barrier_outcome(float(close), float(atr), path["high"][start:stop_at], path["low"][start:stop_at],
                                path["close"][start:stop_at], config)
        hole = _first_hole(holes, stamp, stamps, start, stop_at)
        if hole is not None:
            decided_before = {side: o for side, o in sides.items()
                              if o is not None and o.outcome != "timeout" and _aware_ts(stamps[start + o.exit_offset - 1]) <= hole[0]}
            if len(decided_before) < len(sides):
                row.outcome_status = Prediction.OutcomeStatus.UNRESOLVABLE
                row.outcome_note = (f"{hole[2]} bar(s) missing between {_iso(hole[0])} and {_iso(hole[1])} inside "
                                    "the horizon, before a barrier was touched: the path is unknown")
                notes.append(f"prediction {pk}: {row.outcome_note}")
                updates.append(row)
                continue
        if any(o is None for o in sides.values()):
            still += 1
            continue
        row.outcome_status = Prediction.OutcomeStatus.RESOLVED
        for side, o in sides.items():
            setattr(row, f"outcome_{side}", o.outcome)
            setattr(row, f"return_{side}", o.realised_return)
            setattr(row, f"exit_{side}_at", _aware_ts(stamps[start + o.exit_offset - 1]))
        updates.append(row)
    if updates:
        Prediction.objects.bulk_update(updates, ["outcome_status", "outcome_note", "resolved_at", "outcome_long",
                                                 "outcome_short", "return_long", "return_short", "exit_long_at",
                                                 "exit_short_at"])
    unresolvable = sum(1 for u in updates if u.outcome_status == Prediction.OutcomeStatus.UNRESOLVABLE)
    return OutcomeResolution(resolved=len(updates) - unresolvable, unresolvable=unresolvable, pending=still,
                             notes=tuple(notes))


def _aware_ts(value) -> datetime:
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value).to_pydatetime()
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)


def _iso(value) -> str:
    return _aware_ts(value).isoformat().replace("+00:00", "Z")


def _session_holes(stamps: np.ndarray, *, timeframe: str, after: datetime) -> list[tuple]:
    """(previous bar, next bar, bars missing) for each place the stored bars skip bars of the trading session
    (intraday timeframes on the Globex grid; a holiday reads as a hole too, and says so by its count)."""
    step = timeframe_delta(timeframe)
    if step >= timedelta(days=1) or len(stamps) == 0:
        return []
    times = [after, *(_aware_ts(s) for s in stamps)]
    holes = []
    for previous, current in zip(times[:-1], times[1:]):
        if current - previous > step:
            missing = len(session_timestamps_between(previous + step, current, timeframe=timeframe))
            if missing:
                holes.append((previous, current, missing))
    return holes


def _first_hole(holes, stamp, stamps, start, stop_at):
    """The first hole after the predicted bar and before the end of its horizon window (None when there is none)."""
    end = min(stop_at, len(stamps))
    if end <= start:
        return None
    last = _aware_ts(stamps[end - 1])
    return next((hole for hole in holes if stamp <= hole[0] < last), None)
