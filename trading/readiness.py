"""What /readyz reports: whether this deployment can decide bars now. The database, Redis (when configured), a live
worker on each per-bar queue (deployment: by the heartbeats /healthz reads; with the bars waiting for them), an
active model version with registered artifacts for every active market that has bars, and each such market's bars
fresh (not stale while the market is open). A handful of cheap queries; each check reports, never raises."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from mlcore import selectors as ml_selectors

from . import health
from .selectors import MarketFreshness, bars_waiting, market_freshness_list

# The queues a bar's steps run on: settle (trading), then predict and size (inference).
PER_BAR_QUEUES = ("trading", "inference")


@dataclass(frozen=True)
class ReadinessReport:
    checks: dict[str, dict]  # name -> {"ok": bool, "reason": str}

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    def as_dict(self) -> dict:
        return {"status": "ready" if self.ok else "not ready", "checks": self.checks}


def readiness_report(*, now: datetime | None = None) -> ReadinessReport:
    now = now or timezone.now()
    database = health._database()
    checks = {"database": _check(database["status"] == "ok", "answers" if database["status"] == "ok"
                                 else f"down ({database.get('error')})")}
    if settings.REDIS_URL:
        redis = health._redis(settings.REDIS_URL)
        checks["redis"] = _check(redis["status"] == "ok", "answers" if redis["status"] == "ok"
                                 else f"down ({redis.get('error')})")
    # Embedded mode runs each step inline in this process: there is no worker to lose.
    watch_workers = not settings.CELERY_TASK_ALWAYS_EAGER
    if not checks["database"]["ok"]:
        checks["models"] = checks["feed"] = _check(False, "unknown: the database is down")
        if watch_workers:
            checks["workers"] = _check(False, "unknown: the database is down")
        return ReadinessReport(checks=checks)
    try:
        if watch_workers:
            checks["workers"] = _workers_check(now=now)
        markets = market_freshness_list(now=now)
        active = {(v.instrument_id, v.timeframe): v for v in ml_selectors.model_version_active_list()}
    except DatabaseError as error:  # gone between the probe and the reads
        failed = _check(False, f"unknown: the database failed ({type(error).__name__})")
        checks["models"] = checks["feed"] = failed
        if watch_workers:
            checks["workers"] = failed
        return ReadinessReport(checks=checks)
    checks["models"] = _models_check(markets, active)
    checks["feed"] = _feed_check(markets)
    return ReadinessReport(checks=checks)


def _check(ok: bool, reason: str) -> dict:
    return {"ok": ok, "reason": reason}


def _workers_check(*, now: datetime) -> dict:
    """A live worker on each per-bar queue (its heartbeat within MINHOS_WORKER_STALE_SECONDS), and the bars waiting
    for them: without one a bar is stored and never settled or decided."""
    queues = health._workers(database_up=True)["queues"]
    missing = []
    for queue in PER_BAR_QUEUES:
        state = queues.get(queue, {"status": "unknown"})
        if state["status"] == "ok":
            continue
        missing.append(f"{queue}: no live worker (" + (f"last heartbeat {state['age_seconds']:.0f} s ago)"
                                                       if "age_seconds" in state else "no heartbeat ever)"))
    waiting = bars_waiting(now=now)
    backlog = "; ".join(f"{w['count']} bar(s) waiting to be {'settled' if stage == 'stored' else 'decided'}, the "
                        f"oldest stored {w['oldest_seconds']:.0f} s ago"
                        for stage, w in ((s, waiting[s]) for s in ("stored", "settled") if s in waiting))
    if missing:
        return _check(False, "; ".join(missing) + (f"; {backlog}" if backlog else ""))
    return _check(True, "live worker on " + ", ".join(PER_BAR_QUEUES) + (f"; {backlog}" if backlog else ""))


def _models_check(markets: list[MarketFreshness], active: dict) -> dict:
    """Every market with bars has an active version whose artifacts are registered (their files' presence and hashes
    are checked when a worker loads the version, not here: reading them from a shared store is not cheap)."""
    if not markets:
        return _check(True, "no active market has bars yet")
    missing, ready = [], []
    for market in markets:
        name = f"{market.symbol} {market.timeframe}"
        version = active.get((market.instrument_id, market.timeframe))
        if version is None:
            missing.append(f"{name}: no active model version")
        elif not version.artifacts:
            missing.append(f"{name}: active version {version.version_id} has no registered artifacts")
        else:
            ready.append(f"{name}: version {version.version_id}")
    return _check(False, "; ".join(missing)) if missing else _check(True, "; ".join(ready))


def _feed_check(markets: list[MarketFreshness]) -> dict:
    if not markets:
        return _check(True, "no active market has bars yet")
    stale, fresh = [], []
    for market in markets:
        name = f"{market.symbol} {market.timeframe}"
        if market.stale:
            stale.append(f"{name}: newest bar {market.age_seconds:.0f} s old, over the "
                         f"{market.stale_after_seconds:.0f} s limit")
        elif not market.market_open:
            fresh.append(f"{name}: market closed")
        else:
            fresh.append(f"{name}: newest bar {market.age_seconds:.0f} s old")
    return _check(False, "; ".join(stale)) if stale else _check(True, "; ".join(fresh))
