"""Celery tasks of the ML core: one per job, each loading by id and calling one service."""
from celery import shared_task

from . import services


@shared_task(name="mlcore.tasks.predict_bar")
def predict_bar(bar_id: int) -> int | None:
    prediction = services.prediction_create(bar_id=bar_id)
    return prediction.pk if prediction else None


@shared_task(name="mlcore.tasks.train_version")
def train_version(symbol: str, timeframe: str = "1m", preset: str = "full", seed: int = 0) -> int:
    return services.model_version_train(symbol=symbol, timeframe=timeframe, preset=preset, seed=seed).pk
