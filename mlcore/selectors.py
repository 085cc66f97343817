"""Reads of the model registry and predictions."""
import json
from datetime import datetime, timezone
from functools import lru_cache

import pandas as pd
from django.db import connection
from django.db.models import Count, Max, QuerySet
from django.utils.dateparse import parse_datetime

from .domain.labels import SIDES
from .facts import ActiveVersion, PredictionFacts, PredictionTally
from .models import ModelVersion, Prediction, RetrainingHeartbeat


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


def model_version_active_list() -> list[ActiveVersion]:
    """Every market's active version, in one query."""
    rows = (ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE)
            .values_list("pk", "instrument_id", "instrument__symbol", "timeframe", "artifacts"))
    return [ActiveVersion(version_id=pk, instrument_id=instrument_id, symbol=symbol, timeframe=timeframe,
                          artifacts=len(artifacts or {}))
            for pk, instrument_id, symbol, timeframe, artifacts in rows]


def prediction_tallies() -> list[PredictionTally]:
    """Predictions counted per version and outcome, in one aggregate query (the version's timeframe is its
    predictions' timeframe, so no bar is read)."""
    rows = (Prediction.objects.filter(backtest=False).order_by()
            .values_list("version_id", "version__instrument__symbol", "version__timeframe", "outcome_status",
                         "outcome_long", "outcome_short")
            .annotate(count=Count("pk")))
    return [PredictionTally(*row) for row in rows]


def prediction_latencies_recent(*, instrument_id: int, version_id: int, n: int = 1000) -> list[float]:
    """The inference latencies (ms) of the version's newest n predictions (read along the instrument's
    newest-first index)."""
    return list(Prediction.objects.filter(instrument_id=instrument_id, version_id=version_id)
                .order_by("-created_at").values_list("latency_ms", flat=True)[:n])


def prediction_list(*, symbol: str | None = None, timeframe: str | None = None, resolved: bool | None = None,
                    outcome_status: str | None = None, version: int | None = None, since: datetime | None = None,
                    until: datetime | None = None, shadow: bool | None = False,
                    backtest: bool | None = False) -> QuerySet[Prediction]:
    """Newest bar first. `resolved`: True for resolved outcomes only, False for predictions without one (pending or
    unresolvable); `since` inclusive and `until` exclusive bounds on the bar time. `shadow`: False (the default)
    leaves out challengers' shadow predictions, which are not the market's; True gives only those; None both.
    `backtest` likewise for backtests' predictions (of their private markets)."""
    predictions = Prediction.objects.select_related("instrument", "bar").order_by("-bar__timestamp", "-id")
    if shadow is not None:
        predictions = predictions.filter(shadow=shadow)
    if backtest is not None:
        predictions = predictions.filter(backtest=backtest)
    if symbol:
        predictions = predictions.filter(instrument__symbol=symbol)
    if timeframe:
        predictions = predictions.filter(bar__timeframe=timeframe)
    if resolved is True:
        predictions = predictions.filter(outcome_status=Prediction.OutcomeStatus.RESOLVED)
    elif resolved is False:
        predictions = predictions.exclude(outcome_status=Prediction.OutcomeStatus.RESOLVED)
    if outcome_status:
        predictions = predictions.filter(outcome_status=outcome_status)
    if version is not None:
        predictions = predictions.filter(version_id=version)
    if since is not None:
        predictions = predictions.filter(bar__timestamp__gte=since)
    if until is not None:
        predictions = predictions.filter(bar__timestamp__lt=until)
    return predictions


EXPORT_COLUMNS = ("bar_time", "version", "side", "p_long", "p_short", "confidence", "agreement", "outcome_status",
                  "outcome_long", "outcome_short", "realised_return", "return_long", "return_short", "exit_long_at",
                  "exit_short_at", "resolved_at", "latency_ms", "created_at", "prediction_id")
_EXPORT_FIELDS = ("bar__timestamp", "version_id", "side", "p_long", "p_short", "confidence", "agreement",
                  "outcome_status", "outcome_long", "outcome_short", "return_long", "return_short", "exit_long_at",
                  "exit_short_at", "resolved_at", "latency_ms", "created_at", "pk")


def prediction_export_frame(*, symbol: str, timeframe: str, since: datetime | None = None,
                            until: datetime | None = None) -> pd.DataFrame:
    """One row per prediction of the market, oldest bar first, for analysis in pandas (EXPORT_COLUMNS).

    `outcome_long` / `outcome_short` say take_profit, stop or timeout once resolved, else the status (pending or
    unresolvable); `realised_return` is the chosen side's return, empty (NaN) without an outcome. Times are UTC."""
    rows = (prediction_list(symbol=symbol, timeframe=timeframe, since=since, until=until)
            .order_by("bar__timestamp", "pk").values_list(*_EXPORT_FIELDS))
    frame = pd.DataFrame.from_records(list(rows.iterator(chunk_size=5000)), columns=list(_EXPORT_FIELDS))
    frame = frame.rename(columns={"bar__timestamp": "bar_time", "version_id": "version", "pk": "prediction_id"})
    resolved = frame["outcome_status"] == Prediction.OutcomeStatus.RESOLVED
    for side in SIDES:
        frame[f"outcome_{side}"] = frame[f"outcome_{side}"].where(resolved, frame["outcome_status"])
        frame[f"return_{side}"] = frame[f"return_{side}"].astype("float64")
    frame["realised_return"] = frame["return_long"].where(frame["side"] == "long", frame["return_short"])
    frame["realised_return"] = frame["realised_return"].where(resolved)
    for column in ("bar_time", "exit_long_at", "exit_short_at", "resolved_at", "created_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame[list(EXPORT_COLUMNS)]


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


_FACT_COLUMNS = (
    "id", "version_id", "bar_id", "instrument_id", "bar__timeframe", "bar__timestamp", "p_long", "p_short", "side",
    "confidence", "agreement", "members", "latency_ms", "atr", "atr_reference", "version__payoff_ratio",
    "version__label_settings", "version__health_score", "version__has_edge", "version__health_reason",
)


@lru_cache(maxsize=4)
def _facts_sql(vendor: str) -> str:
    """The SQL of the facts read, compiled once per database vendor: Django's compilation of a three-table read
    costs ~1 ms a call, more than the query itself (the pk is its only parameter)."""
    sql, params = Prediction.objects.filter(pk=-1).values(*_FACT_COLUMNS).query.sql_with_params()
    assert params == (-1,), params
    return sql


def prediction_facts(*, prediction_id: int, created: bool = True) -> PredictionFacts:
    """What trading needs of a stored prediction, read in one query, as a frozen value (see `mlcore.facts`)."""
    with connection.cursor() as cursor:
        cursor.execute(_facts_sql(connection.vendor), [prediction_id])
        row = cursor.fetchone()
    if row is None:
        raise Prediction.DoesNotExist(f"There is no prediction #{prediction_id}.")
    (pk, version_id, bar_id, instrument_id, timeframe, timestamp, p_long, p_short, side, confidence, agreement,
     members, latency_ms, atr, atr_reference, payoff_ratio, label, health, has_edge, health_reason) = row
    label, members = _json(label), _json(members)
    return PredictionFacts(
        prediction_id=pk, version_id=version_id, bar_id=bar_id, instrument_id=instrument_id, timeframe=timeframe,
        bar_timestamp=_aware(timestamp), p_long=p_long, p_short=p_short, side=side, confidence=confidence,
        agreement=agreement, members=len((members.get("members") or {}).get(side) or {}), latency_ms=latency_ms,
        atr=atr, atr_reference=atr_reference, payoff_ratio=payoff_ratio, take_profit_atr=float(label["tp_atr"]),
        stop_loss_atr=float(label["sl_atr"]), horizon_bars=int(label["horizon"]), model_health=health,
        version_has_edge=bool(has_edge), health_reason=health_reason or "", created=created,
    )


def _json(value):
    # PostgreSQL's driver decodes jsonb; SQLite hands back the text.
    return json.loads(value) if isinstance(value, str) else (value or {})


def _aware(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = parse_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def model_version_health(*, version_id: int) -> tuple[float | None, bool]:
    """A version's current health score, 0-100 (None: not scored yet), and whether it has a validated edge."""
    row = ModelVersion.objects.filter(pk=version_id).values_list("health_score", "has_edge").first()
    return (row[0], bool(row[1])) if row else (None, False)


def training_heartbeat_latest() -> datetime | None:
    """The newest sign of life of a process training now (a part of a retraining or a training run, not ended). A
    training worker busy with a fit takes no heartbeat task for hours; this says it is alive meanwhile."""
    return RetrainingHeartbeat.objects.filter(ended_at__isnull=True).aggregate(latest=Max("beat_at"))["latest"]
