"""Reads of the model registry and predictions."""
import json
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache

from django.db import connection
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

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


_SIZING_COLUMNS = {
    Prediction: ("id", "instrument_id", "bar_id", "version_id", "p_long", "p_short", "side", "confidence",
                 "agreement", "atr", "atr_reference"),
    "bar": ("bar__id", "bar__instrument_id", "bar__timeframe", "bar__timestamp", "bar__close"),
    "instrument": ("instrument__id", "instrument__symbol", "instrument__tick_size", "instrument__point_value"),
    "version": ("version__id", "version__label_settings", "version__payoff_ratio", "version__health_score"),
}


@lru_cache(maxsize=4)
def _sizing_sql(vendor: str) -> str:
    """The SQL of the sizing read, compiled once per database vendor: Django's compilation of a four-table read
    costs ~1 ms a call, more than the query itself (the pk is its only parameter)."""
    columns = [c for group in _SIZING_COLUMNS.values() for c in group]
    sql, params = Prediction.objects.filter(pk=-1).values(*columns).query.sql_with_params()
    assert params == (-1,), params
    return sql


def prediction_get(*, prediction_id: int) -> Prediction:
    """A prediction with its bar, instrument and model version, holding only the columns sizing reads (the others
    are deferred and load on access: the version's report and artifacts and the member outputs are the bulk)."""
    from trading.models import Bar, Instrument

    with connection.cursor() as cursor:
        cursor.execute(_sizing_sql(connection.vendor), [prediction_id])
        row = cursor.fetchone()
    if row is None:
        raise Prediction.DoesNotExist(f"There is no prediction #{prediction_id}.")
    values = iter(row)
    take = {key: [next(values) for _ in group] for key, group in _SIZING_COLUMNS.items()}
    prediction = Prediction.from_db(connection.alias, list(_SIZING_COLUMNS[Prediction]), take[Prediction])
    b_id, b_instrument, b_timeframe, b_timestamp, b_close = take["bar"]
    prediction.bar = Bar.from_db(connection.alias, ["id", "instrument_id", "timeframe", "timestamp", "close"],
                                 [b_id, b_instrument, b_timeframe, _aware(b_timestamp), _decimal(b_close)])
    i_id, i_symbol, i_tick, i_point = take["instrument"]
    prediction.instrument = Instrument.from_db(connection.alias, ["id", "symbol", "tick_size", "point_value"],
                                               [i_id, i_symbol, _decimal(i_tick), _decimal(i_point)])
    v_id, v_label, v_payoff, v_health = take["version"]
    prediction.version = ModelVersion.from_db(connection.alias, ["id", "label_settings", "payoff_ratio",
                                                                 "health_score"],
                                              [v_id, json.loads(v_label) if isinstance(v_label, str) else v_label,
                                               v_payoff, v_health])
    return prediction


def _decimal(value) -> Decimal:
    # PostgreSQL returns Decimal; SQLite a float or int of the stored text, whose shortest repr is the exact value.
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def _aware(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = parse_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
