"""What /readyz reports: whether this deployment can decide bars now. The database, Redis (when configured), an
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
from .selectors import MarketFreshness, market_freshness_list


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
    if not checks["database"]["ok"]:
        checks["models"] = checks["feed"] = _check(False, "unknown: the database is down")
        return ReadinessReport(checks=checks)
    try:
        markets = market_freshness_list(now=now)
        active = {(v.instrument_id, v.timeframe): v for v in ml_selectors.model_version_active_list()}
    except DatabaseError as error:  # gone between the probe and the reads
        checks["models"] = checks["feed"] = _check(False, f"unknown: the database failed ({type(error).__name__})")
        return ReadinessReport(checks=checks)
    checks["models"] = _models_check(markets, active)
    checks["feed"] = _feed_check(markets)
    return ReadinessReport(checks=checks)


def _check(ok: bool, reason: str) -> dict:
    return {"ok": ok, "reason": reason}


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
