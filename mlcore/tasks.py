"""Celery tasks of the ML core (the `training` queue): one per job, each loading by id and calling one service."""
from celery import shared_task

from minhos_site.periodic import skipped_while_database_away

from . import services


@shared_task(name="mlcore.tasks.train_version", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def train_version(run_id: int) -> int | None:
    """Train a queued training run (`services.model_version_train_queue`): the task carries the run's id, so a
    delivery of a run already taken up, ended or failed (Redis's visibility timeout, a worker lost before its
    acknowledgement) trains nothing and logs why. Returns the new version's id (None when nothing was trained)."""
    version = services.training_run_execute(run_id=run_id)
    return None if version is None else version.pk


@shared_task(name="mlcore.tasks.retrain", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def retrain(retraining_id: int) -> str:
    """One retraining: the challenger trained, scored against the champion, decided (see mlcore.retraining)."""
    from . import retraining

    return retraining.retraining_run(retraining_id=retraining_id).status


@shared_task(name="mlcore.tasks.retrain_scheduled", acks_late=True)
def retrain_scheduled() -> list[int]:
    """The nightly trigger (a django-celery-beat entry, editable in the admin): one request per market."""
    from . import retraining

    return [record.pk for record in retraining.scheduled_retrainings()]


@shared_task(name="mlcore.tasks.shadow_advance", acks_late=True)
@skipped_while_database_away
def shadow_advance() -> dict:
    """Fail the retrainings whose training worker went silent (no heartbeat for MINHOS_TRAINING_HEARTBEAT_TIMEOUT)
    or that were abandoned (with an alert); decide the shadow runs whose live record is long enough. On the
    monitoring queue: never on the training worker it watches."""
    from . import retraining

    return retraining.retrainings_advance()


# Distributed training (one task per member fit, a chord; see mlcore.distributed): registered with this module.
from .distributed import (  # noqa: E402, F401
    fit_member_unit,
    train_version_abandon,
    train_version_distributed,
    train_version_finish,
    training_bench_finish,
    training_plan_discard,
)


@shared_task(name="mlcore.tasks.retrain_collect", acks_late=True, soft_time_limit=3 * 3600,
             time_limit=3 * 3600 + 300)
def retrain_collect(results: list, retraining_id: int, *, plan_key: str) -> str:
    """The chord body of a distributed retraining: assemble the challenger, score, decide."""
    from . import retraining

    return retraining.retraining_collect(retraining_id=retraining_id, results=results, plan_key=plan_key).status


@shared_task(name="mlcore.tasks.retrain_abandon")
def retrain_abandon(request, exc, traceback, retraining_id: int) -> None:
    from . import retraining

    retraining.retraining_abandon(retraining_id=retraining_id, error=f"{type(exc).__name__}: {exc}")
