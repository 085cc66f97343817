"""Training spread over Celery workers: one task per member fit on the `training` queue (a chord), then the assembly.

How a training runs here (the pure pieces are in `mlcore.training`):

    plan = training_plan(bars, config)                            # the dataset, the splits, the member fits
    key = training_dispatch(plan, then=my_finish.s(other, args))   # stores the plan, queues the chord, returns
    ...
    @shared_task
    def my_finish(results, other, args, *, plan_key):               # the chord's body, on a training worker
        trained = training_collect(plan_key, results)               # the fitted members loaded, the model assembled

The plan's arrays and the fitted members travel through Django's `default_storage`, under `training-plans/<key>/`:
a folder under MEDIA_ROOT by default, which is enough for workers on one machine. Workers on several machines must
share that storage (a shared filesystem mounted at MEDIA_ROOT on each, or an object-storage backend for
`default_storage`), as they already must for the model artifacts. The plan is removed when the training ends:
by `training_collect` once the assembly is done or has failed, by an error callback when a member fit failed, and
plans older than PLAN_MAX_AGE (a body that never ran) at the next dispatch.

A chord needs a result backend: Redis in deployment mode (settings: CELERY_RESULT_BACKEND); only the member fits
store a result. With Celery eager (embedded mode, no broker) the units run one after the other in this process and
the body is run with their results, as the chord would.

The task that queues the chord returns at once: a task waiting on its subtasks would deadlock a worker of
concurrency 1, whose only process the subtasks then wait for.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from celery import chord, group, shared_task, signature
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from trading import selectors as trading_selectors

from . import registry, selectors, services
from .domain.labels import LabelConfig
from .errors import TrainingError
from .heartbeats import (
    retraining_heartbeat,
    retraining_still_training,
    training_run_heartbeat,
    training_run_still_running,
)
from .models import ModelVersion, TrainingRun

if TYPE_CHECKING:
    from .training import TrainedModel, TrainingPlan, UnitResult

# The ML stack (mlcore.training and the predictors) is imported by the functions that fit or assemble, as in
# mlcore.services: every worker imports this module with mlcore.tasks, and only training workers need Keras.

logger = logging.getLogger(__name__)

PLAN_ROOT = "training-plans"
PLAN_MAX_AGE = 24 * 3600  # seconds: older plans are a training whose end never came, removed at the next dispatch
# A member fit may take as long as a whole training did before (the full preset on a long history, one core).
UNIT_SOFT_TIME_LIMIT = 3 * 3600


# ---------------------------------------------------------------------------------------------- plans in storage

def _root(plan_key: str) -> str:
    if not plan_key or not all(c in "0123456789abcdef" for c in plan_key):
        raise TrainingError(f"not a training plan key: {plan_key!r}")
    return f"{PLAN_ROOT}/{plan_key}"


def _save(name: str, content) -> str:
    if default_storage.exists(name):  # a unit run again (its worker was lost): the same name, not name_<random>
        default_storage.delete(name)
    return default_storage.save(name, content)


def training_plan_store(plan: TrainingPlan) -> str:
    """Write the plan where every training worker reads it; returns its key."""
    from .training import training_plan_arrays, training_plan_facts

    key = uuid.uuid4().hex
    root = _root(key)
    buffer = io.BytesIO()
    np.savez(buffer, **training_plan_arrays(plan))
    _save(f"{root}/plan.npz", ContentFile(buffer.getvalue()))
    # Written last: a plan is complete once its facts are there.
    _save(f"{root}/plan.json", ContentFile(json.dumps(training_plan_facts(plan)).encode()))
    return key


# One plan per worker process (each of its units reads the same arrays; the sequences are rebuilt once). It stays
# until the process loads another plan or removes this one (the body's worker does): a few hundred MB at 100,000 bars.
_loaded: dict[str, TrainingPlan] = {}


def training_plan_load(plan_key: str) -> TrainingPlan:
    from .training import training_plan_restore

    if plan_key in _loaded:
        return _loaded[plan_key]
    root = _root(plan_key)
    if not default_storage.exists(f"{root}/plan.json"):
        raise TrainingError(f"training plan {plan_key} is not in the storage (removed, or the storage is not shared "
                            "with this worker)")
    with default_storage.open(f"{root}/plan.json", "rb") as handle:
        facts = json.loads(handle.read())
    with default_storage.open(f"{root}/plan.npz", "rb") as handle:
        arrays = dict(np.load(io.BytesIO(handle.read()), allow_pickle=False))
    plan = training_plan_restore(facts, arrays)
    _loaded.clear()
    _loaded[plan_key] = plan
    return plan


def _files_under(folder: str) -> list[str]:
    folders, files = default_storage.listdir(folder)
    found = [f"{folder}/{name}" for name in files]
    for sub in folders:
        found += _files_under(f"{folder}/{sub}")
    return found


def training_plan_remove(plan_key: str) -> None:
    """Remove the plan's files (its arrays, the fitted members, the predictions); quiet if already gone."""
    root = _root(plan_key)
    _loaded.pop(plan_key, None)
    if not default_storage.exists(root):
        return
    for name in _files_under(root):
        default_storage.delete(name)
    try:  # a filesystem storage keeps the emptied folders
        path = default_storage.path(root)
    except NotImplementedError:
        return
    shutil.rmtree(path, ignore_errors=True)


def training_plans_prune(*, max_age: float = PLAN_MAX_AGE) -> list[str]:
    """Remove the plans older than `max_age` seconds (a training whose body never ran); their keys."""
    if not default_storage.exists(PLAN_ROOT):
        return []
    removed = []
    folders, _ = default_storage.listdir(PLAN_ROOT)
    for key in folders:
        try:
            written = default_storage.get_modified_time(f"{PLAN_ROOT}/{key}/plan.npz")
        except (FileNotFoundError, OSError):
            continue  # being written, or half removed: its training or the next prune sees to it
        if (timezone.now() - written).total_seconds() > max_age:
            training_plan_remove(key)
            removed.append(key)
    return removed


# ---------------------------------------------------------------------------------------------- one member fit

@shared_task(bind=True, name="mlcore.tasks.fit_member_unit", acks_late=True, ignore_result=False,
             soft_time_limit=UNIT_SOFT_TIME_LIMIT, time_limit=UNIT_SOFT_TIME_LIMIT + 300)
def fit_member_unit(self, plan_key: str, unit_key: str, retraining_id: int | None = None,
                    training_run_id: int | None = None) -> dict:
    """Fit one member of a stored plan; its predictions (and, for a member that ships, its files) go to the plan's
    folder. Returns what `training_collect` needs, JSON-ready.

    For a retraining (`retraining_id`) or a training run (`training_run_id`), the fit beats while it runs (a killed
    worker is seen within minutes), and a fit delivered again once its retraining or run ended (failed, decided,
    registered) does nothing but say why in the log."""
    if retraining_id is None and training_run_id is None:
        return _fit_member_unit(self, plan_key, unit_key)
    if retraining_id is not None:
        owner, why_not = f"retraining #{retraining_id}", retraining_still_training(retraining_id)
        beating = retraining_heartbeat(retraining_id=retraining_id, part=f"fit {unit_key}",
                                       progress=f"fitting {unit_key} (plan {plan_key})")
    else:
        owner, why_not = f"training run #{training_run_id}", training_run_still_running(training_run_id)
        beating = training_run_heartbeat(run_id=training_run_id, part=f"fit {unit_key}",
                                         progress=f"fitting {unit_key} (plan {plan_key})")
    if why_not:
        logger.warning("member fit %s of plan %s not run: %s %s (a redelivered task)", unit_key, plan_key, owner,
                       why_not.removeprefix("it "))
        return {"plan": plan_key, "unit": unit_key, "skipped": why_not}
    with beating:
        return _fit_member_unit(self, plan_key, unit_key)


def _fit_member_unit(self, plan_key: str, unit_key: str) -> dict:
    from .training import fit_unit

    plan = training_plan_load(plan_key)
    unit = plan.unit(unit_key)
    result = fit_unit(plan, unit)
    folder = f"{_root(plan_key)}/units/{unit.key}"
    buffer = io.BytesIO()
    np.save(buffer, result.predictions, allow_pickle=False)
    predictions = _save(f"{folder}/predictions.npy", ContentFile(buffer.getvalue()))
    member = None
    if unit.block == 0:  # only the members that ship are needed after their predictions
        with tempfile.TemporaryDirectory(prefix="minhos-unit-") as scratch:
            files = result.member.save(Path(scratch))
            saved = []
            for name in files:
                with open(Path(scratch) / name, "rb") as handle:
                    saved.append(_save(f"{folder}/member/{name}", File(handle)))
        member = {"params": result.member.params, "files": saved}
    return {"plan": plan_key, "unit": unit.key, "fit_seconds": result.fit_seconds, "predictions": predictions,
            "member": member, "worker": self.request.hostname or socket.gethostname(), "pid": os.getpid()}


def _unit_result(plan: TrainingPlan, stored: dict) -> UnitResult:
    from .predictors.ensemble import MEMBER_TYPES
    from .training import UnitResult

    unit = plan.unit(stored["unit"])
    with default_storage.open(stored["predictions"], "rb") as handle:
        predictions = np.load(io.BytesIO(handle.read()), allow_pickle=False)
    member = None
    if stored.get("member"):
        prefix = f"{_root(stored['plan'])}/units/{unit.key}/member/"
        with tempfile.TemporaryDirectory(prefix="minhos-unit-") as scratch:
            for name in stored["member"]["files"]:
                target = Path(scratch) / name.removeprefix(prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                with default_storage.open(name, "rb") as source:
                    target.write_bytes(source.read())
            member = MEMBER_TYPES[unit.member].load(Path(scratch), stored["member"]["params"])
        member.fit_seconds = stored["fit_seconds"]
    return UnitResult(unit=unit, member=member, fit_seconds=float(stored["fit_seconds"]), predictions=predictions)


# ---------------------------------------------------------------------------------------------- dispatch, collect

def training_dispatch(plan: TrainingPlan, *, then, queue: str | None = None,
                      retraining_id: int | None = None, training_run_id: int | None = None) -> str:
    """Store the plan and queue one `fit_member_unit` per unit on the training queue, as a chord whose body is
    `then` (a Celery signature): it is called with the list of unit results first and `plan_key=<key>`, and should
    call `training_collect(plan_key, results)`. Returns the plan's key without waiting for anything.

    When a unit fails, the body does not run: its error callbacks (`then.on_error(...)`, new-style: request, exc,
    traceback, then their own arguments) are called, and the plan is removed. With Celery eager (embedded mode) the
    units and then the body run here, in order, before this returns. `queue` sends the units and the body to that
    queue rather than `training` (the benchmark's own workers). `retraining_id` (or `training_run_id`): the fits
    are that retraining's (or run's): each beats while it runs, and is not run again once it ended.
    """
    training_plans_prune()
    key = training_plan_store(plan)
    body = then.clone(kwargs={"plan_key": key})
    body.link_error(training_plan_discard.s(key))
    extra = {"retraining_id": retraining_id} if retraining_id is not None else {}
    if training_run_id is not None:
        extra["training_run_id"] = training_run_id
    header = [fit_member_unit.si(key, unit.key, **extra) for unit in plan.units]
    if queue:
        body.set(queue=queue)
        for task in header:
            task.set(queue=queue)
    if fit_member_unit.app.conf.task_always_eager:
        _run_inline(header, body)
    else:
        chord(group(header), body).apply_async()
    logger.info("training plan %s: %d member fits queued", key, len(header))
    return key


def _run_inline(header: list, body) -> None:
    """The chord in this process, as embedded mode runs every task: units in order, then the body; a unit's error
    goes to the body's error callbacks, then up."""
    try:
        results = [task.apply().get() for task in header]
    except Exception as exc:
        for errback in body.options.get("link_error") or ():
            signature(errback)(None, exc, exc.__traceback__)
        raise
    body.apply(args=(results,)).get()


def training_collect(plan_key: str, results: Iterable[dict]) -> TrainedModel:
    """The trained model from a dispatched plan's unit results (the chord body's argument): the members that ship
    loaded, the meta-learners, calibrators, evaluation and drift reference fitted here. The plan's files are removed
    whether this succeeds or fails."""
    from .training import training_assemble

    try:
        plan = training_plan_load(plan_key)
        return training_assemble(plan, [_unit_result(plan, stored) for stored in results])
    finally:
        training_plan_remove(plan_key)


@shared_task(name="mlcore.tasks.training_plan_discard")
def training_plan_discard(request, exc, traceback, plan_key: str) -> None:
    """Error callback of a dispatched training's body: the plan's files go."""
    logger.warning("training plan %s failed (%s: %s): removing it", plan_key, type(exc).__name__, exc)
    training_plan_remove(plan_key)


@shared_task(name="mlcore.tasks.training_bench_finish", ignore_result=False, soft_time_limit=UNIT_SOFT_TIME_LIMIT,
             time_limit=UNIT_SOFT_TIME_LIMIT + 300)
def training_bench_finish(results: list[dict], *, plan_key: str) -> dict:
    """The body of `bench train`'s distributed runs: assemble, and tell the benchmark (which waits on this result)
    the report and who fitted what; nothing is registered."""
    trained = training_collect(plan_key, results)
    fits: dict[str, int] = {}
    for stored in results:
        fits[stored["worker"]] = fits.get(stored["worker"], 0) + 1
    return {"report": services._json_safe(trained.report), "has_edge": trained.has_edge,
            "seconds_total": trained.seconds_total, "member_seconds": trained.member_seconds, "fits_per_worker": fits}


# ---------------------------------------------------------------------------------------------- train a version

def model_version_train_dispatch(*, symbol: str, timeframe: str = "1m", preset: str = "full", seed: int = 0,
                                 label: LabelConfig | None = None, promote: bool | None = None) -> str:
    """As `services.model_version_train`, its member fits spread over the training workers: the training lock is
    taken, the plan built from the stored bars and dispatched; `train_version_finish` registers the version (and
    releases the lock). Returns the plan's key at once."""
    from .training import TrainConfig

    instrument = trading_selectors.instrument_get(symbol=symbol)
    TrainConfig(preset=preset, seed=seed, label=label or LabelConfig())  # refused before any run is recorded
    run = services._training_run_start(instrument=instrument, timeframe=timeframe, preset=preset, seed=seed,
                                       label=label or LabelConfig(), promote=promote)
    return _run_dispatch(run)


def training_run_dispatch(*, run_id: int) -> str | None:
    """The `train_version_distributed` task: dispatch the queued run's member fits. A run already taken up, ended or
    failed is not dispatched again (a task delivered again): logged with why, None."""
    run = services.training_run_claim(run_id)
    return None if run is None else _run_dispatch(run)


def _run_dispatch(run: TrainingRun) -> str:
    """Build the running run's plan (beating meanwhile) and queue its member fits, each tracked under the run."""
    from .training import TrainConfig, training_plan

    label = LabelConfig.from_dict(run.label_settings) if run.label_settings else LabelConfig()
    try:
        with training_run_heartbeat(run_id=run.pk, part="run", progress="reading the bars") as beat:
            config = TrainConfig(preset=run.preset, seed=run.seed, label=label)
            plan = training_plan(trading_selectors.bars_frame(instrument=run.instrument, timeframe=run.timeframe),
                                 config)
            then = train_version_finish.s(run.instrument.symbol, run.timeframe, run.preset, run.seed,
                                          label=label.to_dict(), run_id=run.pk, promote=run.promote)
            then.link_error(train_version_abandon.s(run.pk))
            beat.progress(f"{len(plan.units)} member fits queued for the training workers")
            return training_dispatch(plan, then=then, training_run_id=run.pk)
    except BaseException as exc:
        _run_end(run.pk, exc)
        raise


def model_version_train_finish(*, plan_key: str, results: list[dict], symbol: str, timeframe: str, preset: str,
                               seed: int, label: dict | None, run_id: int | None,
                               promote: bool | None = None) -> ModelVersion | None:
    """The body of a dispatched training: assemble, register (promoted as `model_version_train` would), and end
    the training run. For a run that already ended (failed as silent, or this body delivered again) nothing is
    assembled or registered: the plan goes, the log says why, None."""
    from .training import TrainConfig

    if run_id is not None:
        why_not = training_run_still_running(run_id)
        if why_not:
            training_plan_remove(plan_key)
            logger.warning("training run #%s: the member fits of plan %s not assembled (a late or redelivered "
                           "body): %s", run_id, plan_key, why_not.removeprefix("it "))
            return None
    try:
        instrument = trading_selectors.instrument_get(symbol=symbol)
        config = TrainConfig(preset=preset, seed=seed, label=LabelConfig.from_dict(label) if label else LabelConfig())
        beating = (training_run_heartbeat(run_id=run_id, part="collect",
                                          progress=f"assembling the model from {len(results)} member fits")
                   if run_id is not None else contextlib.nullcontext())
        with beating:
            trained = training_collect(plan_key, results)
            if run_id is not None:
                version = services.training_run_register(run_id=run_id, config=config, trained=trained)
            else:
                version = services._version_register(instrument=instrument, timeframe=timeframe, config=config,
                                                      trained=trained)
            if promote or (promote is None and selectors.model_version_active(instrument=instrument,
                                                                               timeframe=timeframe) is None):
                version = registry.model_version_promote(version_id=version.pk, via="training")
    except BaseException as exc:
        _run_end(run_id, exc)
        raise
    _run_end(run_id, None, version=version)
    workers = sorted({r.get("worker") for r in results})
    logger.info("distributed training %s: v%s from %d member fits on %s", plan_key, version.pk, len(results),
                ", ".join(map(str, workers)))
    return version


def _run_end(run_id: int | None, exc: BaseException | None, *, version: ModelVersion | None = None) -> None:
    if run_id is None:
        return
    if exc is None:
        services.training_run_succeed(run_id, version)
    else:
        services.training_run_fail(run_id, f"{type(exc).__name__}: {exc}")


# The tasks' names say they are mlcore's tasks (routed to the training queue with them); mlcore.tasks imports them.

@shared_task(name="mlcore.tasks.train_version_distributed", acks_late=True)
def train_version_distributed(run_id: int) -> str | None:
    """Queue the member fits of a queued training run (`services.model_version_train_queue(distributed=True)`),
    which any training worker may take; returns the plan's key, not waiting (None for a run already taken up)."""
    return training_run_dispatch(run_id=run_id)


@shared_task(name="mlcore.tasks.train_version_finish", acks_late=True,
             soft_time_limit=UNIT_SOFT_TIME_LIMIT, time_limit=UNIT_SOFT_TIME_LIMIT + 300)
def train_version_finish(results: list[dict], symbol: str, timeframe: str, preset: str, seed: int, *, plan_key: str,
                         label: dict | None = None, run_id: int | None = None,
                         promote: bool | None = None) -> int | None:
    version = model_version_train_finish(plan_key=plan_key, results=results, symbol=symbol, timeframe=timeframe,
                                         preset=preset, seed=seed, label=label, run_id=run_id, promote=promote)
    return None if version is None else version.pk


@shared_task(name="mlcore.tasks.train_version_abandon")
def train_version_abandon(request, exc, traceback, run_id: int) -> None:
    """Error callback of a dispatched training's body (a member fit failed): its training run failed."""
    _run_end(run_id, exc)


__all__ = [
    "fit_member_unit",
    "training_bench_finish",
    "model_version_train_dispatch",
    "model_version_train_finish",
    "training_run_dispatch",
    "training_collect",
    "training_dispatch",
    "training_plan_load",
    "training_plan_remove",
    "training_plan_store",
    "training_plans_prune",
]
