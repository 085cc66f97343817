"""Reads and shaping for the monitoring page and its JSON: the latest snapshot as display rows (the same rows feed the
template and the page's script), the series of key figures over the snapshots, the alert list, the alerts strip,
and what sizing does with the score (the account's floors, via trading's Kelly health factor)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from mlcore.domain import drift as drift_core
from mlcore import retraining as ml_retraining
from mlcore.models import ModelVersion, Prediction, Retraining
from trading import selectors as trading_selectors
from trading.domain import kelly
from trading.domain.timeframes import TIMEFRAMES
from trading.services.accounts import DEFAULT_ACCOUNT

from . import selectors, services
from .domain import health as health_core
from .domain import metrics as metrics_core
from .models import Alert, MetricSnapshot, Severity

SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)  # worst first
RANGES = {"6h": timedelta(hours=6), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_RANGE = "24h"
MAX_POINTS = 1500  # per chart: a week of minute snapshots is thinned to this many (the newest always kept)
RESOLVED_SHOWN = 20
WINDOW_KEYS = ("count", "time", "version")
SIDES = ("chosen", "long", "short")
SIDE_LABELS = {"chosen": "Chosen side", "long": "Long", "short": "Short"}
METRICS = (  # (key, label, format, what it is)
    ("accuracy", "Accuracy", "pct", "share of calls on the right side of 50%"),
    ("log_loss", "Log loss", "fixed3", "lower is better"),
    ("brier", "Brier", "fixed3", "mean squared error of the probabilities; lower is better"),
    ("ece", "ECE", "pct", "expected calibration error: mean gap between predicted and realised, by bucket"),
    ("roc_auc", "ROC AUC", "fixed3", "ranking quality; 0.5 is a coin"),
)


# ----------------------------------------------------------------------------------------------- formatting

def _finite(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def fmt(value, kind: str = "fixed3") -> str:
    """The page's one way to write a figure ("—" for none)."""
    value = _finite(value)
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "fixed1":
        return f"{value:.1f}"
    if kind == "fixed2":
        return f"{value:.2f}"
    if kind == "fixed4":
        return f"{value:.4f}"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if kind == "seconds":
        return _duration(value)
    return f"{value:.3f}"


def _range_text(low, high, kind: str) -> str:
    low, high = _finite(low), _finite(high)
    if low is None or high is None:
        return "—"
    if kind == "pct":
        return f"{low * 100:.1f}–{high * 100:.1f}%"
    return f"{fmt(low, kind)}–{fmt(high, kind)}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# ------------------------------------------------------------------------------------------------ the market

def market_resolve(*, symbol: str | None, timeframe: str | None):
    """(active instruments, the chosen instrument or None, timeframe), the dashboard's default market when nothing
    is asked for. Raises LookupError naming what is unknown."""
    instruments = list(trading_selectors.instrument_list_active())
    timeframe = timeframe or "1m"
    if timeframe not in TIMEFRAMES:
        raise LookupError(f"unknown timeframe {timeframe!r}")
    symbol = symbol or (instruments[0].symbol if instruments else None)
    instrument = next((i for i in instruments if i.symbol == symbol), None)
    if symbol and instrument is None:
        raise LookupError(f"unknown instrument {symbol!r}")
    return instruments, instrument, timeframe


@dataclass(frozen=True)
class Floors:
    """Health (0-100) from which Kelly sizes in full, and at or under which the size is zero and risk blocks."""

    full: float
    block: float
    source: str

    def as_dict(self) -> dict:
        return {"full": self.full, "block": self.block, "source": self.source,
                "full_text": f"{self.full:.0f}", "block_text": f"{self.block:.0f}"}


def sizing_floors(*, symbol: str) -> Floors:
    """The floors of the paper account's trading configuration for this instrument (else the first account's),
    else Kelly's defaults."""
    configs = list(trading_selectors.trading_config_list(symbol=symbol))
    config = next((c for c in configs if c.account.name == DEFAULT_ACCOUNT), configs[0] if configs else None)
    if config is None:
        defaults = kelly.KellyConfig()
        return Floors(full=defaults.health_full_at * 100, block=defaults.health_zero_at * 100,
                      source="default floors (no trading configuration for this instrument)")
    return Floors(full=config.health_full_size_floor * 100, block=config.health_floor * 100,
                  source=f"floors of the {config.account.name} account's {symbol} configuration")


def sizing_action(score: float | None, floors: Floors, *, has_edge: bool = False) -> dict:
    """What sizing does with a score, with trading's own rule (kelly.health_factor; an unscored version is sized
    in full only with a validated edge)."""
    health = (1.0 if has_edge else 0.0) if score is None else max(0.0, min(1.0, score / 100.0))
    factor = kelly.health_factor(health, floors.full / 100.0, floors.block / 100.0)
    if factor >= 1.0:
        band, action = "full", "Sizing in full"
        explain = f"at or above the full-size floor {floors.full:.0f}: Kelly sizes are not reduced for health"
    elif factor <= 0.0:
        band, action = "blocked", "Blocked: no new entries"
        explain = (f"at or under the blocking floor {floors.block:.0f}: the size is zero and the model_health risk "
                   "check blocks every recommendation")
    else:
        band, action = "scaled", f"Sizes scaled ×{factor:.2f}"
        explain = (f"between the floors {floors.block:.0f} and {floors.full:.0f}: every Kelly size is multiplied by "
                   f"{factor:.2f} (linear from 0 at {floors.block:.0f} to 1 at {floors.full:.0f})")
    if score is None:
        explain = ("not scored yet: " + ("sized in full on its validated out-of-sample edge" if has_edge
                                          else "without a validated edge it is not sized"))
    return {"band": band, "factor": round(factor, 4), "action": action, "explain": explain}


# ------------------------------------------------------------------------------------------------ the formula

def formula_view(*, floors: Floors) -> dict:
    """The health formula from monitoring.domain.health's constants, with what each component needs to be healthy."""
    budget = float(getattr(settings, "MINHOS_MONITOR_LATENCY_BUDGET_MS", 500.0))
    timeout = float(getattr(settings, "MINHOS_MONITOR_WORKER_TIMEOUT", 30.0))
    p_rule = (f"1 at p ≥ {health_core.P_HEALTHY:g}, 0 at p ≤ {health_core.P_FAILING:g}, log-linear between")
    criteria = {
        "edge": "1 with a validated out-of-sample edge, else 0 (and the no-edge cap)",
        "calibration": f"Hosmer-Lemeshow test of the chosen side's live calibration: {p_rule}",
        "accuracy": f"one-sided test of the live hit rate's shortfall against the calibrated promise: {p_rule}",
        "drift": (f"1 − share of features at PSI ≥ {drift_core.SIGNIFICANT:g} − half the share at "
                  f"{drift_core.MODERATE:g}–{drift_core.SIGNIFICANT:g}; failing from "
                  f"{health_core.DRIFT_FAILING_SHARE:.0%} of features at ≥ {drift_core.SIGNIFICANT:g}, or the "
                  f"predicted probabilities at ≥ {drift_core.SIGNIFICANT:g}"),
        "latency": (f"1 while inference p99 ≤ {budget:.0f} ms, 0 at {health_core.LATENCY_FAILING_MULTIPLE:g}× that "
                    "(linear between)"),
        "freshness": (f"1 while the newest bar is within the stale limit (or the market is closed), 0 at "
                      f"{health_core.STALE_FAILING_MULTIPLE:g}× the limit"),
        "workers": f"1 when every per-bar queue's worker answered within {timeout:.0f} s, else 0",
    }
    return {
        "components": [{"name": name, "weight": weight, "criterion": criteria.get(name, "")}
                       for name, weight in health_core.WEIGHTS.items()],
        "total": sum(health_core.WEIGHTS.values()),
        "unknown_credit": health_core.UNKNOWN_CREDIT,
        "unknown_credit_text": f"{health_core.UNKNOWN_CREDIT:.0%}",
        "no_edge_cap": health_core.NO_EDGE_CAP,
        "failing_cap": health_core.FAILING_CAP,
        "floors": floors.as_dict(),
    }


# ------------------------------------------------------------------------------------------- one snapshot

def snapshot_view(snapshot: MetricSnapshot, *, floors: Floors, now: datetime | None = None) -> dict:
    """Everything the page shows of one snapshot, as display rows plus the raw figures its charts need."""
    now = now or timezone.now()
    metrics = snapshot.metrics or {}
    windows = metrics.get("windows") or {}
    count_chosen = (windows.get("count") or {}).get("chosen") or {}
    components = []
    for c in snapshot.health_components or []:
        components.append({**c, "score_text": fmt(c.get("score"), "pct"),
                           "contribution_text": fmt(c.get("contribution"), "fixed1"),
                           "weight_text": fmt(c.get("weight"), "int")})
    raw_total = sum(_finite(c.get("contribution")) or 0.0 for c in components)
    score = _finite(snapshot.health_score)
    age = (now - snapshot.taken_at).total_seconds()
    interval = _snapshot_interval()
    return {
        "id": snapshot.pk,
        "taken_at": _iso(snapshot.taken_at),
        "age_seconds": age,
        "stale": age > 3 * interval,
        "stale_text": (f"The newest snapshot is {_duration(age)} old; beat takes one every {interval:.0f} s. "
                       "Is Celery beat (or the embedded scheduler) running?") if age > 3 * interval else "",
        "trigger": snapshot.trigger,
        "version": snapshot.version_id,
        "seconds": snapshot.seconds,
        "health": {"score": score, "text": fmt(score, "fixed1"), **sizing_action(score, floors)},
        "components": components,
        "raw_total_text": fmt(raw_total, "fixed1"),
        "caps": [{"reason": cap.get("reason", ""), "cap": cap.get("cap"), "cap_text": fmt(cap.get("cap"), "int")}
                 for cap in snapshot.health_caps or []],
        "windows": [window_view(key, windows.get(key) or {}) for key in WINDOW_KEYS],
        "reliability": reliability_view(count_chosen, size=(windows.get("count") or {}).get("size")),
        "hit": hit_view(count_chosen, metrics.get("pending") or {}, size=(windows.get("count") or {}).get("size")),
        "counts": metrics.get("counts") or {},
        "drift": drift_view(snapshot.drift or {}),
        "operations": operations_view(snapshot.operations or {}),
    }


def _window_label(key: str, size) -> str:
    if key == "count":
        return f"Latest {fmt(size, 'int')} outcomes" if size else "Latest outcomes"
    if key == "time":
        return f"Last {fmt(size, 'int')} h of bars" if size else "Recent hours"
    return "Whole version"


def _verdict_tone(verdict: str) -> str:
    return {"worse": "bad", "better": "good", "as expected": "ok"}.get(verdict, "none")


def _verdict_text(verdict: str) -> str:
    return "no verdict" if verdict == "insufficient" else verdict or "—"


def _hit_row(side_figures: dict) -> dict:
    hit = side_figures.get("hit_rate") or {}
    n = int(hit.get("n") or 0)
    realised = _finite(hit.get("realised_rate"))
    low, high = metrics_core.wilson(realised * n, n) if n and realised is not None else (None, None)
    p_value, z = _finite(hit.get("p_value")), _finite(hit.get("z"))
    if not side_figures.get("sufficient"):
        verdict = "insufficient"
    elif p_value is None:
        verdict = "unknown"
    elif p_value < 0.05:
        verdict = "worse"
    elif z is not None and z > metrics_core.Z95:
        verdict = "better"
    else:
        verdict = "as expected"
    return {
        "value": fmt(realised, "pct"), "ci": _range_text(low, high, "pct"),
        "expected": fmt(hit.get("expected_rate"), "pct"),
        "expected_range": _range_text(hit.get("expected_low"), hit.get("expected_high"), "pct"),
        "verdict": _verdict_text(verdict), "tone": _verdict_tone(verdict),
        "detail": (f"shortfall p = {p_value:.3g}" if p_value is not None else ""),
    }


def window_view(key: str, window: dict) -> dict:
    """A window's metric table: a row per metric, a cell per side (value, 95% interval, training's figure, verdict)."""
    chosen = window.get("chosen") or {}
    n = int(chosen.get("n") or 0)
    min_count = int(chosen.get("min_count") or metrics_core.MIN_COUNT)
    sufficient = bool(chosen.get("sufficient"))
    rows = [{"metric": "hit_rate", "label": "Hit rate",
             "help": "realised take-profit rate against what the calibrated probabilities promise",
             "cells": {side: _hit_row(window.get(side) or {}) for side in SIDES}}]
    for key_, label, kind, help_text in METRICS:
        cells = {}
        for side in SIDES:
            entry = ((window.get(side) or {}).get("metrics") or {}).get(key_) or {}
            verdict = entry.get("verdict") or "insufficient"
            cells[side] = {"value": fmt(entry.get("value"), kind), "ci": _range_text(entry.get("low"),
                                                                                      entry.get("high"), kind),
                           "expected": fmt(entry.get("expected"), kind), "expected_range": "",
                           "verdict": _verdict_text(verdict), "tone": _verdict_tone(verdict),
                           "detail": f"z = {entry['z']:.2f}" if _finite(entry.get("z")) is not None else ""}
        rows.append({"metric": key_, "label": label, "help": help_text, "cells": cells})
    calibration = {}
    for side in SIDES:
        test = (window.get(side) or {}).get("calibration_test") or {}
        p_value = _finite(test.get("p_value"))
        calibration[side] = (f"Hosmer-Lemeshow χ² {fmt(test.get('statistic'), 'fixed2')}, df {test.get('df', 0)}, "
                             f"p = {p_value:.3g}") if p_value is not None else "Hosmer-Lemeshow: no outcomes yet"
    span = ""
    if window.get("first_bar") and window.get("last_bar"):
        span = f"bars {window['first_bar'][:16].replace('T', ' ')} – {window['last_bar'][:16].replace('T', ' ')} UTC"
    return {
        "key": key, "label": _window_label(key, window.get("size")), "n": n, "n_text": fmt(n, "int"),
        "min_count": min_count, "sufficient": sufficient,
        "note": "" if sufficient else f"No verdict under {min_count} outcomes: {n} so far.",
        "span": span, "sides": [{"key": s, "label": SIDE_LABELS[s], "n": int(((window.get(s) or {}).get("n")) or 0)}
                                for s in SIDES],
        "rows": rows, "calibration": calibration,
    }


def reliability_view(chosen: dict, *, size=None) -> dict:
    buckets = []
    for b in chosen.get("reliability") or []:
        buckets.append({"bucket": b.get("bucket"), "count": int(b.get("count") or 0),
                        "mean_predicted": _finite(b.get("mean_predicted")),
                        "realised_rate": _finite(b.get("realised_rate")),
                        "rate_low": _finite(b.get("rate_low")), "rate_high": _finite(b.get("rate_high"))})
    n = int(chosen.get("n") or 0)
    return {"window": "count", "side": "chosen", "title": f"{_window_label('count', size)}, chosen side",
            "n": n, "buckets": buckets, "sufficient": bool(chosen.get("sufficient")),
            "note": "" if n else "No resolved outcome yet: the diagram fills in as outcomes resolve."}


def hit_view(chosen: dict, pending: dict, *, size=None) -> dict:
    hit = chosen.get("hit_rate") or {}
    return {
        "window": _window_label("count", size),
        "n": int(hit.get("n") or 0), "n_text": fmt(hit.get("n") or 0, "int"),
        "realised": _finite(hit.get("realised_rate")), "realised_text": fmt(hit.get("realised_rate"), "pct"),
        "expected": _finite(hit.get("expected_rate")), "expected_text": fmt(hit.get("expected_rate"), "pct"),
        "expected_range_text": _range_text(hit.get("expected_low"), hit.get("expected_high"), "pct"),
        "p_value_text": fmt(hit.get("p_value"), "fixed3"),
        "pending_n": int(pending.get("n") or 0), "pending_n_text": fmt(pending.get("n") or 0, "int"),
        "pending_expected": _finite(pending.get("expected_rate")),
        "pending_expected_text": fmt(pending.get("expected_rate"), "pct"),
        "pending_range_text": _range_text(pending.get("low"), pending.get("high"), "pct"),
    }


def drift_view(drift: dict) -> dict:
    features = [_psi_row(name, f) for name, f in (drift.get("features") or {}).items()]
    # Worst first: by the figure the band is read from (the PSI less its sampling noise).
    features.sort(key=lambda f: (f["excess"] is None, -(f["excess"] or 0.0), -(f["psi"] or 0.0), f["name"]))
    probability = [{"side": side, **_psi_row(side, report)}
                   for side, report in (drift.get("probability") or {}).items()]
    bands = {}
    for f in features:
        bands[f["band"]] = bands.get(f["band"], 0) + 1
    live, min_live = drift.get("live_bars"), drift.get("min_live") or drift_core.MIN_LIVE
    return {
        "features": features, "probability": probability, "bands": bands,
        "moderate": drift_core.MODERATE, "significant": drift_core.SIGNIFICANT,
        "live_bars": live, "live_bars_text": fmt(live, "int"), "min_live": min_live,
        "window_bars": drift.get("window_bars"),
        "max_feature": drift.get("max_feature"), "max_psi_text": fmt(drift.get("max_psi"), "fixed3"),
        "probability_max_text": fmt(drift.get("probability_max"), "fixed3"),
        "excluded": drift.get("excluded") or [],
        "note": drift.get("note") or ("" if (live or 0) >= min_live else
                                      f"No drift verdict under {min_live} live bars after the training data: "
                                      f"{fmt(live or 0, 'int')} so far."),
    }


def _psi_row(name: str, report: dict) -> dict:
    """One PSI figure: the raw PSI, its sampling noise, the excess the band is read from (older snapshots, before
    the noise correction, have none: their PSI stands in), the live count and its effective size."""
    psi, noise = _finite(report.get("psi")), _finite(report.get("psi_noise"))
    excess = _finite(report.get("excess")) if "excess" in report else psi
    n_eff = _finite(report.get("n_effective"))
    return {"name": name, "psi": psi, "psi_text": fmt(psi, "fixed3"), "excess": excess,
            "excess_text": fmt(excess, "fixed3"), "band": report.get("band") or "unknown",
            "n": int(report.get("n") or 0), "n_text": fmt(report.get("n") or 0, "int"),
            "n_effective_text": fmt(n_eff, "int") if n_eff is not None else "—",
            "noise": noise, "noise_text": fmt(noise, "fixed3")}


def operations_view(operations: dict) -> dict:
    latency = operations.get("latency") or {}
    timeout = float(getattr(settings, "MINHOS_MONITOR_WORKER_TIMEOUT", 30.0))
    workers = operations.get("workers")
    worker_rows = None
    if workers is not None:
        worker_rows = []
        for queue, age in sorted(workers.items()):
            age = _finite(age)
            alive = age is not None and age <= timeout
            worker_rows.append({"queue": queue, "age": age, "alive": alive,
                                "text": "never answered" if age is None else f"answered {_duration(age)} ago"})
    queues = operations.get("queues") or {}
    freshness = _finite(operations.get("freshness_seconds"))
    stale_after = _finite(operations.get("stale_after_seconds"))
    market_open = operations.get("market_open")
    fresh_ok = (not market_open) or (freshness is not None and stale_after is not None and freshness <= stale_after)
    return {
        "latency": {k: _finite(latency.get(k)) for k in ("p50", "p95", "p99")} | {"n": int(latency.get("n") or 0)},
        "latency_text": {k: fmt(latency.get(k), "ms") for k in ("p50", "p95", "p99")},
        "latency_n_text": fmt(latency.get("n") or 0, "int"),
        "rate_text": f"{fmt(operations.get('predictions_per_minute'), 'fixed2')} / min",
        "freshness_text": "no bar yet" if freshness is None else f"newest bar {_duration(freshness)} old",
        "stale_after_text": fmt(stale_after, "seconds"), "fresh_ok": fresh_ok,
        "market_open": market_open, "market_text": ("open" if market_open else "closed") if market_open is not None
        else "—",
        "workers": worker_rows,
        "workers_text": "embedded: tasks run in the web process" if workers is None else "",
        "queues": [{"queue": q, "depth": d, "text": "unreadable" if d is None else fmt(d, "int")}
                   for q, d in sorted(queues.items())],
        "queues_text": "" if queues else "no broker queues (embedded mode, or Redis not configured)",
    }


def _snapshot_interval() -> float:
    schedule = (getattr(settings, "CELERY_BEAT_SCHEDULE", {}) or {}).get("monitoring-snapshot") or {}
    try:
        return float(schedule.get("schedule", 60.0))
    except (TypeError, ValueError):
        return 60.0


# ------------------------------------------------------------------------------------------------ the series

# What each chart line reads from a snapshot (JSON key paths, extracted by the database: a snapshot's JSON is
# ~15 kB, a point of the series a few numbers).
SERIES_PATHS = {
    "health": "health_score",
    "accuracy": "metrics__windows__count__chosen__metrics__accuracy__value",
    "log_loss": "metrics__windows__count__chosen__metrics__log_loss__value",
    "brier": "metrics__windows__count__chosen__metrics__brier__value",
    "ece": "metrics__windows__count__chosen__metrics__ece__value",
    "roc_auc": "metrics__windows__count__chosen__metrics__roc_auc__value",
    "hit_realised": "metrics__windows__count__chosen__hit_rate__realised_rate",
    "hit_expected": "metrics__windows__count__chosen__hit_rate__expected_rate",
    "outcomes": "metrics__windows__count__chosen__n",
    "pending_expected": "metrics__pending__expected_rate",
    "max_psi": "drift__max_psi",
    "probability_psi": "drift__probability_max",
    "latency_p50": "operations__latency__p50",
    "latency_p99": "operations__latency__p99",
    "rate": "operations__predictions_per_minute",
    "freshness": "operations__freshness_seconds",
}


def series_read(*, instrument, timeframe: str, since: datetime, after: datetime | None = None) -> dict:
    """Columns of the key figures over the market's snapshots since `since` (only those taken after `after` when
    given: a live page appends), oldest first, thinned to MAX_POINTS."""
    rows = MetricSnapshot.objects.filter(instrument=instrument, timeframe=timeframe, taken_at__gte=since)
    if after is not None:
        rows = rows.filter(taken_at__gt=after)
    values = list(rows.order_by("taken_at", "id").values("id", "taken_at", "version_id", *SERIES_PATHS.values()))
    if len(values) > MAX_POINTS:
        step = math.ceil(len(values) / MAX_POINTS)
        values = values[::-1][::step][::-1]  # keeps the newest
    out = {"id": [], "t": [], "version": [], **{name: [] for name in SERIES_PATHS}}
    for row in values:
        out["id"].append(row["id"])
        out["t"].append(_iso(row["taken_at"]))
        out["version"].append(row["version_id"])
        for name, path in SERIES_PATHS.items():
            out[name].append(_finite(row[path]))
    return out


# ------------------------------------------------------------------------------------------------ the alerts

def alert_view(alert: Alert) -> dict:
    payload = services.alert_payload(alert)
    market = f"{payload['symbol']} {payload['timeframe']}" if payload.get("symbol") else "all markets"
    return {**payload, "market": market, "rule_name": alert.rule.name if alert.rule_id else payload.get("rule"),
            "value_text": _significant(alert.value), "threshold_text": _significant(alert.threshold)}


def _significant(value) -> str:
    """4 significant digits, no trailing zeros: 0.4, 0.2512, 1234."""
    value = _finite(value)
    return "" if value is None else f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def alerts_view() -> dict:
    """The unresolved alerts (every market: workers alerts have none), newest first, and the latest resolved."""
    unresolved = [alert_view(a) for a in selectors.alert_list(unresolved=True)]
    resolved = [alert_view(a) for a in Alert.objects.filter(status=Alert.Status.RESOLVED)
                .select_related("rule", "instrument", "acknowledged_by").order_by("-resolved_at", "-id")
                [:RESOLVED_SHOWN]]
    return {"unresolved": unresolved, "resolved": resolved, "counts": _counts(unresolved)}


def _counts(alerts: list[dict]) -> dict:
    counts = {str(s): 0 for s in SEVERITIES}
    for a in alerts:
        counts[a["severity"]] = counts.get(a["severity"], 0) + 1
    return counts


def strip_text(market: str, message: str) -> str:
    """The strip's line for an alert: its message, after its market unless the message already names it."""
    return message if message.startswith(market) else f"{market}: {message}"


def alerts_strip() -> dict:
    """For the strip on every page: the unresolved alerts (id, severity, status, message, market), newest first."""
    alerts = [{"id": a["id"], "severity": a["severity"], "status": a["status"], "message": a["message"],
               "market": a["market"], "opened_at": a["opened_at"], "text": strip_text(a["market"], a["message"])}
              for a in (alert_view(x) for x in selectors.alert_list(unresolved=True))]
    counts = _counts(alerts)
    worst = next((str(s) for s in SEVERITIES if counts.get(str(s))), "")
    return {"alerts": alerts, "counts": counts, "total": len(alerts), "worst": worst,
            "newest": alerts[0] if alerts else None}



# ------------------------------------------------------------------------------------------------ the page

def market_view(*, instrument, timeframe: str, range_key: str = DEFAULT_RANGE, now: datetime | None = None) -> dict:
    """The page's figures for one market: floors and formula, the active version, the latest snapshot as rows, the
    series over the range, the newest retraining request; an empty state saying why when there is no snapshot."""
    now = now or timezone.now()
    floors = sizing_floors(symbol=instrument.symbol)
    active = ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe,
                                         status=ModelVersion.Status.ACTIVE).first()
    latest = selectors.snapshot_latest(instrument=instrument, timeframe=timeframe)
    since = now - RANGES.get(range_key, RANGES[DEFAULT_RANGE])
    view = {
        "symbol": instrument.symbol, "timeframe": timeframe, "range": range_key,
        "ranges": list(RANGES), "floors": floors.as_dict(), "formula": formula_view(floors=floors),
        "version": _version_view(active, floors) if active else None,
        "snapshot": snapshot_view(latest, floors=floors, now=now) if latest else None,
        "series": series_read(instrument=instrument, timeframe=timeframe, since=since) if latest else None,
        "retraining": _retraining_view(instrument, timeframe),
        "empty": None,
        "snapshot_interval": _snapshot_interval(),
    }
    if latest is None:
        if active is None:
            command = f"python manage.py train --symbol {instrument.symbol}"
            command += f" --timeframe {timeframe}" if timeframe != "1m" else ""
            view["empty"] = {
                "title": f"No snapshot of {instrument.symbol} {timeframe} yet",
                "detail": "This market has no active model version, so there is nothing to monitor. Train one "
                          "(the first version is promoted) and monitoring scores it at once.",
                "command": command + " --fast"}
        else:
            view["empty"] = {
                "title": f"No snapshot of {instrument.symbol} {timeframe} yet",
                "detail": f"v{active.pk} is active; beat takes a snapshot of every market every "
                          f"{_snapshot_interval():.0f} s, or take one now.", "command": ""}
    elif active is not None and latest.version_id != active.pk:
        view["version_note"] = (f"This snapshot scored v{latest.version_id}; the active version is v{active.pk} "
                                "(its first snapshot is due).")
    return view


def _version_view(version: ModelVersion, floors: Floors) -> dict:
    return {"id": version.pk, "health_score": version.health_score,
            "health_text": fmt(version.health_score, "fixed1"),
            "checked_at": _iso(version.health_checked_at), "reason": version.health_reason,
            "has_edge": version.has_edge, "edge_statement": version.edge_statement,
            "sizing": sizing_action(version.health_score, floors, has_edge=version.has_edge)}


RETRAININGS_SHOWN = 20
DECISION_METRICS = (("log_loss", "Log loss", "fixed4"), ("brier", "Brier", "fixed4"), ("ece", "ECE", "pct"),
                    ("roc_auc", "ROC AUC", "fixed3"), ("accuracy", "Accuracy", "pct"))


def _retraining_view(instrument, timeframe: str) -> dict:
    """The market's retrainings, newest first, each with both models' figures on the same unseen bars and the
    reason; the shadow run in progress, champion and challenger side by side on the live bars both predicted."""
    policy = ml_retraining.policy_get(instrument=instrument, timeframe=timeframe)
    records = list(Retraining.objects.filter(instrument=instrument, timeframe=timeframe)
                   .select_related("instrument")[:RETRAININGS_SHOWN])
    decisions = [_decision_view(record) for record in records]
    shadow = next((r for r in records if r.status == Retraining.Status.SHADOW), None)
    return {"latest": decisions[0] if decisions else None, "decisions": decisions,
            "shadow": _shadow_view(shadow) if shadow else None,
            "policy": {"promotion": policy.promotion, "scheduled": policy.scheduled,
                       "window_bars": policy.window_bars, "holdout_bars": policy.holdout_bars,
                       "min_new_bars": policy.min_new_bars, "shadow_bars": policy.shadow_bars,
                       "cooldown_minutes": policy.cooldown_minutes, "id": policy.pk}}


def _decision_view(record: Retraining) -> dict:
    payload = ml_retraining.retraining_payload(record)
    rows = []
    for key, label, kind in DECISION_METRICS:
        cells = {}
        for side, entry in payload["sides"].items():
            cells[side] = {"champion": fmt((entry["champion"] or {}).get(key), kind),
                           "challenger": fmt((entry["challenger"] or {}).get(key), kind)}
        rows.append({"metric": key, "label": label, "cells": cells})
    paired = {side: _paired_text(entry["paired"]) for side, entry in payload["sides"].items()}
    return {**payload, "rows": rows, "paired_text": paired,
            "verdicts": {side: entry["challenger_verdict"] for side, entry in payload["sides"].items()},
            "proposed": record.status == Retraining.Status.PROPOSED,
            "open": record.status in (Retraining.Status.PROPOSED, Retraining.Status.SHADOW)}


def _paired_text(paired: dict | None) -> str:
    if not paired:
        return "no champion to compare with"
    if paired.get("mean_difference") is None:
        return f"{paired.get('verdict', '').replace('_', ' ')} ({paired.get('n', 0)} bars)"
    return (f"{paired['verdict'].replace('_', ' ')}: log loss {paired['mean_difference']:+.4f}/bar in the "
            f"challenger's favour, 95% bounds {paired['lower']:+.4f} to {paired['upper']:+.4f}, {paired['n']} bars "
            f"≈ {paired['n_effective']:.0f} independent")


def _shadow_view(record: Retraining) -> dict:
    from mlcore.domain.evaluation import binary_metrics

    pairs = ml_retraining.shadow_pairs(champion_id=record.champion_id, challenger_id=record.challenger_id)
    n = len(pairs["bar_ids"])
    sides = {}
    for side in ("long", "short"):
        y = pairs[f"y_{side}"]
        cells = {}
        for role in ("champion", "challenger"):
            metrics = binary_metrics(y, pairs[f"{role}_{side}"]) if n else {}
            cells[role] = {key: fmt(metrics.get(key), kind) for key, _, kind in DECISION_METRICS}
            cells[role]["hit_rate"] = fmt(float(y.mean()) if n else None, "pct")
        sides[side] = cells
    predicted = Prediction.objects.filter(backtest=False, version_id=record.challenger_id).count()
    return {"id": record.pk, "champion": record.champion_id, "challenger": record.challenger_id,
            "needed": int(record.shadow.get("bars_needed") or 0), "resolved": n, "predicted": predicted,
            "started_at": record.shadow.get("started_at"), "offline": record.shadow.get("offline", ""),
            "sides": sides, "metrics": [(key, label) for key, label, _ in DECISION_METRICS]}


def range_since(range_key: str, *, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - RANGES.get(range_key, RANGES[DEFAULT_RANGE])
