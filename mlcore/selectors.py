"""Reads of the model registry and predictions."""
from django.db.models import QuerySet

from .domain.labels import SIDES
from .models import ModelVersion, Prediction


def model_version_list(*, symbol: str | None = None, timeframe: str | None = None,
                       status: str | None = None) -> QuerySet[ModelVersion]:
    versions = ModelVersion.objects.select_related("instrument").order_by("-created_at")
    if symbol:
        versions = versions.filter(instrument__symbol=symbol)
    if timeframe:
        versions = versions.filter(timeframe=timeframe)
    if status:
        versions = versions.filter(status=status)
    return versions


def model_version_active(*, instrument, timeframe: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe,
                                       status=ModelVersion.Status.ACTIVE).first()


def prediction_list(*, symbol: str | None = None, timeframe: str | None = None) -> QuerySet[Prediction]:
    predictions = Prediction.objects.select_related("instrument", "bar").order_by("-bar__timestamp", "-id")
    if symbol:
        predictions = predictions.filter(instrument__symbol=symbol)
    if timeframe:
        predictions = predictions.filter(bar__timeframe=timeframe)
    return predictions


def prediction_latest(*, instrument, timeframe: str) -> Prediction | None:
    return prediction_list(symbol=instrument.symbol, timeframe=timeframe).first()


def model_version_summary(version: ModelVersion) -> dict:
    """What a dashboard shows about a version: above all, whether it has an edge, per side."""
    verdicts = {side: ((version.metrics or {}).get(side) or {}).get("verdict") or {} for side in SIDES}
    return {
        "id": version.pk,
        "has_edge": version.has_edge,
        "edge_statement": version.edge_statement,
        # A LONG call from a model whose edge is on the short side only deserves the same warning as no edge.
        "edge_by_side": {side: verdicts[side].get("has_edge") for side in SIDES},
        "payoff_ratio": version.payoff_ratio,
        "members": len(version.member_seconds or {}),
        "created_at": version.created_at.isoformat().replace("+00:00", "Z"),
    }


def prediction_get(*, prediction_id: int) -> Prediction:
    """A prediction with its bar, instrument and model version (what sizing reads)."""
    return Prediction.objects.select_related("bar", "instrument", "version").get(pk=prediction_id)
