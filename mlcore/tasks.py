"""Celery tasks of the ML core (the `training` queue): one per job, each loading by id and calling one service."""
from celery import shared_task

from . import services


@shared_task(name="mlcore.tasks.train_version", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def train_version(symbol: str, timeframe: str = "1m", preset: str = "full", seed: int = 0) -> int:
    return services.model_version_train(symbol=symbol, timeframe=timeframe, preset=preset, seed=seed).pk


# Distributed training (one task per member fit, a chord; see mlcore.distributed): registered with this module.
from .distributed import (  # noqa: E402, F401
    fit_member_unit,
    train_version_abandon,
    train_version_distributed,
    train_version_finish,
    training_bench_finish,
    training_plan_discard,
)
