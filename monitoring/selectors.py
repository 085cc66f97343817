"""Reads for monitoring: the predictions and outcomes of a version, live bars for drift, operational figures."""
from __future__ import annotations

import json

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from celery import current_app
from django.conf import settings
from django.db.models import Count, Max, Min, QuerySet

from mlcore.models import ModelVersion, Prediction
from trading import selectors as trading_selectors
from trading.models import FeedStatus, Instrument, WorkerHeartbeat

from .models import Alert, MetricSnapshot

PER_BAR_QUEUES = ("trading", "inference")
# The queues the "Worker down" alert watches: the per-bar ones, and monitoring's (snapshots, alert notices). Not the
# training queue: its worker takes no heartbeat while it trains (hours), which is not a worker down.
WATCHED_QUEUES = ("trading", "inference", "monitoring")


@dataclass(frozen=True)
class OutcomeArrays:
    """Resolved predictions of one version, oldest bar first, as arrays."""

    chosen_long: np.ndarray  # bool: the long side was the one chosen
    p_long: np.ndarray
    p_short: np.ndarray
    y_long: np.ndarray  # 1.0 when the long take-profit came first
    y_short: np.ndarray

    def __len__(self) -> int:
        return len(self.p_long)

    @property
    def p_chosen(self) -> np.ndarray:
        return np.where(self.chosen_long, self.p_long, self.p_short)

    @property
    def y_chosen(self) -> np.ndarray:
        return np.where(self.chosen_long, self.y_long, self.y_short)

    def tail(self, count: int) -> OutcomeArrays:
        start = max(0, len(self) - count)
        return OutcomeArrays(*(getattr(self, f)[start:] for f in
                               ("chosen_long", "p_long", "p_short", "y_long", "y_short")))


def _resolved(version_id: int):
    return Prediction.objects.filter(backtest=False, version_id=version_id, outcome_status=Prediction.OutcomeStatus.RESOLVED)


def outcomes_of(*, version_id: int) -> OutcomeArrays:
    """In the order they were made (by id: predictions are made bar after bar, in bar order), without timestamps or a
    join (parsing 100,000 timestamps and sorting through the bars cost more than the rest of a snapshot): the time
    window is cut by a count (`resolved_since`)."""
    rows = list(_resolved(version_id).order_by("id")
                .values_list("side", "p_long", "p_short", "outcome_long", "outcome_short"))
    frame = pd.DataFrame(rows, columns=["side", "p_long", "p_short", "o_long", "o_short"])
    return OutcomeArrays(
        chosen_long=(frame["side"] == "long").to_numpy(dtype=bool),
        p_long=frame["p_long"].to_numpy(dtype=np.float64), p_short=frame["p_short"].to_numpy(dtype=np.float64),
        y_long=(frame["o_long"] == Prediction.Outcome.TAKE_PROFIT).to_numpy(dtype=np.float64),
        y_short=(frame["o_short"] == Prediction.Outcome.TAKE_PROFIT).to_numpy(dtype=np.float64),
    )


def resolved_span(*, version_id: int) -> tuple[datetime | None, datetime | None]:
    """The first and last bar times of a version's resolved predictions."""
    span = _resolved(version_id).aggregate(first=Min("bar__timestamp"), last=Max("bar__timestamp"))
    return span["first"], span["last"]


def resolved_since(*, version_id: int, since: datetime) -> int:
    return _resolved(version_id).filter(bar__timestamp__gte=since).count()


def pending_probabilities(*, version_id: int) -> np.ndarray:
    """The chosen side's calibrated probability of every prediction still waiting for its outcome."""
    rows = Prediction.objects.filter(backtest=False, version_id=version_id, outcome_status=Prediction.OutcomeStatus.PENDING) \
        .values_list("side", "p_long", "p_short")
    return np.array([p_long if side == "long" else p_short for side, p_long, p_short in rows], dtype=np.float64)


def outcome_counts(*, version_id: int) -> dict[str, int]:
    counts = dict.fromkeys(Prediction.OutcomeStatus.values, 0)
    for row in Prediction.objects.filter(backtest=False, version_id=version_id).values("outcome_status").annotate(n=Count("id")):
        counts[row["outcome_status"]] = row["n"]
    return counts


def recent_predictions(*, version_id: int, count: int) -> pd.DataFrame:
    """The newest `count` predictions of a version (for latency and the probability drift), oldest first; newest
    by id, the order they were made in (no join, no timestamp to parse)."""
    rows = list(Prediction.objects.filter(backtest=False, version_id=version_id).order_by("-id")
                .values_list("latency_ms", "side", "p_long", "p_short", "members")[:count])
    return pd.DataFrame(rows[::-1], columns=["latency_ms", "side", "p_long", "p_short", "members"])


def member_latencies(frame: pd.DataFrame) -> dict[str, list[float]]:
    """Each member's milliseconds per prediction (both sides), from the predictions' stored member timings."""
    out: dict[str, list[float]] = {}
    for members in frame.get("members", []):
        if isinstance(members, str):  # SQLite hands back the JSON text
            members = json.loads(members)
        for name, ms in ((members or {}).get("member_ms") or {}).items():
            out.setdefault(name, []).append(float(ms))
    return out


def live_bars(*, instrument: Instrument, timeframe: str, after: datetime, count: int, history: int) -> pd.DataFrame:
    """The newest `count` bars after `after` (the version's training data end), with `history` bars before them so
    their features can be computed; empty when no bar came after."""
    frame = trading_selectors.bars_frame(instrument=instrument, timeframe=timeframe, last_n=count + history)
    if frame.empty:
        return frame
    unseen = int((frame["timestamp"] > pd.Timestamp(after)).sum())
    if unseen == 0:
        return frame.iloc[0:0]
    return frame.iloc[max(0, len(frame) - unseen - history):]


def data_freshness_seconds(*, instrument: Instrument, timeframe: str, now: datetime) -> float | None:
    status = FeedStatus.objects.filter(instrument=instrument, timeframe=timeframe).first()
    latest = trading_selectors.bar_latest(instrument=instrument, timeframe=timeframe)
    if status is None and latest is None:
        return None
    return trading_selectors.bar_age_seconds(received_at=status.last_bar_received_at if status else None,
                                             latest_timestamp=latest.timestamp if latest else None,
                                             timeframe=timeframe, now=now)


def worker_ages(*, now: datetime, queues: tuple[str, ...] = PER_BAR_QUEUES) -> dict[str, float | None] | None:
    """Seconds since each queue's worker last answered (beat's heartbeat; None: never); None when tasks run inline
    (embedded mode: there are no workers to lose)."""
    if current_app.conf.task_always_eager:
        return None
    seen = {beat.queue: beat.seen_at for beat in WorkerHeartbeat.objects.filter(queue__in=queues)}
    return {queue: (now - seen[queue]).total_seconds() if queue in seen else None for queue in queues}


def markets_monitored() -> QuerySet[ModelVersion]:
    """The active versions: one per market that monitoring scores."""
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).select_related("instrument")


def snapshot_latest(*, instrument, timeframe: str) -> MetricSnapshot | None:
    return MetricSnapshot.objects.filter(instrument=instrument, timeframe=timeframe).first()


def snapshot_series(*, instrument, timeframe: str, since: datetime | None = None, limit: int = 500):
    snapshots = MetricSnapshot.objects.filter(instrument=instrument, timeframe=timeframe)
    if since is not None:
        snapshots = snapshots.filter(taken_at__gte=since)
    return list(snapshots.order_by("-taken_at")[:limit])[::-1]


def alert_list(*, status: str | None = None, unresolved: bool = False, limit: int = 200) -> QuerySet[Alert]:
    alerts = Alert.objects.select_related("rule", "instrument", "acknowledged_by").order_by("-opened_at", "-id")
    if unresolved:
        alerts = alerts.exclude(status=Alert.Status.RESOLVED)
    elif status:
        alerts = alerts.filter(status=status)
    return alerts[:limit]


def predictions_per_minute(*, version_id: int, now: datetime, minutes: int = 10) -> float:
    since = now - timedelta(minutes=minutes)
    return Prediction.objects.filter(backtest=False, version_id=version_id, created_at__gte=since).count() / minutes



def workers_ping(*, timeout: float = 0.5) -> dict | None:
    """Celery's ping of every worker (which hosts answered within `timeout`); None when tasks run inline. Queue
    liveness is judged from the heartbeats (`worker_ages`): a ping says a worker is up, not which queue it serves."""
    if current_app.conf.task_always_eager:
        return None
    try:
        replies = current_app.control.ping(timeout=timeout) or []
    except Exception as exc:  # the broker is down: say so, the snapshot goes on
        return {"answered": [], "error": f"{type(exc).__name__}: {exc}"}
    return {"answered": sorted(name for reply in replies for name in reply)}
