"""Monitoring's writes: take a snapshot of a market's active version (live metrics, drift, operations, the health
score written where sizing reads it), evaluate the alert rules (open, refresh, resolve), acknowledge alerts, and
queue a retraining when a rule asks for one (audited)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlcore.domain import drift as drift_core
from mlcore.domain.features import FEATURE_NAMES, FEATURE_WINDOW, compute_features
from mlcore.domain.labels import SIDES
from minhos_site.database_outage import is_database_unreachable
from minhos_site.text import control_character_problem
from mlcore.models import ModelVersion, TrainingRun
from trading import selectors as trading_selectors
from trading.domain.risk import RiskLimits, in_session

from . import selectors
from .domain import health as health_core
from .domain import metrics as metrics_core
from .models import Alert, AlertRule, MetricSnapshot

logger = logging.getLogger("minhos.monitoring")

# Calendar features cannot match the training window's mix over a live window of hours, by construction: a drift
# verdict on them would only say what time it is.
CALENDAR_FEATURES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")
# Hysteresis of alerts: a health alert resolves HEALTH_MARGIN points above its threshold, a p-value alert once the
# p-value is P_VALUE_MARGIN times its threshold, a latency alert under 80% of its.
HEALTH_MARGIN = 5.0
P_VALUE_MARGIN = 5.0


def _setting(name: str, default):
    return getattr(settings, name, default)


@dataclass(frozen=True)
class SnapshotResult:
    snapshot: MetricSnapshot
    opened: tuple[int, ...]
    resolved: tuple[int, ...]


# --------------------------------------------------------------------------------------------------- snapshots

def snapshot_take(*, version: ModelVersion, trigger: str = MetricSnapshot.Trigger.SCHEDULE,
                  now: datetime | None = None, ping: bool = False) -> SnapshotResult:
    """Compute and store one snapshot of `version` (its market's figures), write its health score onto the version
    (where sizing and the model_health risk check read it), and evaluate the alert rules. `ping` adds Celery's ping
    of the workers (half a second at most; the scheduled snapshot asks for it once per run)."""
    started = time.perf_counter()
    now = now or timezone.now()
    instrument, timeframe = version.instrument, version.timeframe
    min_count = int(_setting("MINHOS_MONITOR_MIN_OUTCOMES", metrics_core.MIN_COUNT))

    outcomes = selectors.outcomes_of(version_id=version.pk)
    windows = _windows(outcomes, version=version, min_count=min_count)
    chosen = windows["count"]["chosen"]
    pending = selectors.pending_probabilities(version_id=version.pk)
    metrics = {"windows": windows, "pending": metrics_core.expected_hit_rate(pending),
               "counts": selectors.outcome_counts(version_id=version.pk),
               "training": {side: _training_figures(version, side) for side in SIDES}}

    drift = drift_measure(version=version)
    operations = _operations(version=version, now=now, ping=ping)
    freshness = operations["freshness_seconds"]
    inputs = health_core.HealthInputs(
        has_edge=version.has_edge, edge_statement=version.edge_statement,
        calibration_p=chosen["calibration_test"]["p_value"] if chosen["sufficient"] else None,
        accuracy_p=chosen["hit_rate"]["p_value"] if chosen["sufficient"] else None,
        outcomes=chosen["n"], min_outcomes=min_count,
        realised_rate=chosen["hit_rate"]["realised_rate"], expected_rate=chosen["hit_rate"]["expected_rate"],
        drift_features={name: f["excess"] for name, f in drift["features"].items()},
        drift_probability=drift["probability_max"],
        latency_p99_ms=operations["latency"]["p99"],
        latency_budget_ms=float(_setting("MINHOS_MONITOR_LATENCY_BUDGET_MS", 500.0)),
        freshness_seconds=freshness, market_open=operations["market_open"],
        stale_after_seconds=operations["stale_after_seconds"], workers=operations["workers"],
    )
    score = health_core.health_score(inputs, worker_timeout=float(_setting("MINHOS_MONITOR_WORKER_TIMEOUT", 30.0)))
    with transaction.atomic():
        snapshot = MetricSnapshot.objects.create(
            instrument=instrument, timeframe=timeframe, version=version, taken_at=now, trigger=trigger,
            health_score=score.score, health_components=[c.as_dict() for c in score.components],
            health_caps=list(score.caps), metrics=_json_safe(metrics), drift=_json_safe(drift),
            operations=_json_safe(operations), seconds=0.0)
        ModelVersion.objects.filter(pk=version.pk).update(health_score=score.score, health_checked_at=now,
                                                          health_reason=score.reason[:300])
        opened, resolved = alerts_evaluate(snapshot=snapshot, version=version, score=score, inputs=inputs, now=now)
        snapshot.seconds = round(time.perf_counter() - started, 4)
        snapshot.save(update_fields=["seconds"])
    logger.info("snapshot %s %s v%s: health %.1f (%s) in %.3fs", instrument.symbol, timeframe, version.pk,
                score.score, score.reason, snapshot.seconds)
    transaction.on_commit(lambda: _publish(snapshot, opened, resolved))
    return SnapshotResult(snapshot=snapshot, opened=tuple(opened), resolved=tuple(resolved))


def snapshot_all(*, trigger: str = MetricSnapshot.Trigger.SCHEDULE, now: datetime | None = None) -> list[SnapshotResult]:
    """One snapshot per market with an active version. A market whose snapshot fails is logged and skipped, and
    the failure raised at the end, so one bad market cannot hide the others' health."""
    results, failures = [], []
    for i, version in enumerate(selectors.markets_monitored()):
        try:
            results.append(snapshot_take(version=version, trigger=trigger, now=now, ping=i == 0))
        except Exception as exc:
            if is_database_unreachable(exc):
                raise  # every market's snapshot would fail alike: the run's failure, told once by its runner
            logger.exception("snapshot of %s %s failed", version.instrument.symbol, version.timeframe)
            failures.append(f"{version.instrument.symbol} {version.timeframe}: {type(exc).__name__}: {exc}")
    if failures:
        raise RuntimeError("monitoring snapshot failed for " + "; ".join(failures))
    return results


def snapshot_for_market(*, symbol: str, timeframe: str, trigger: str = MetricSnapshot.Trigger.ON_DEMAND,
                        now: datetime | None = None) -> SnapshotResult:
    try:
        instrument = trading_selectors.instrument_get(symbol=symbol)
    except trading_selectors.BacktestMarket as exc:
        raise ValidationError(f"{exc}: monitoring watches live markets only") from None
    except trading_selectors.UnknownInstrument:
        raise ValidationError(f"unknown symbol {symbol!r}") from None
    version = ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe,
                                          status=ModelVersion.Status.ACTIVE).select_related("instrument").first()
    if version is None:
        raise ValidationError(f"{symbol} {timeframe} has no active model version to monitor")
    return snapshot_take(version=version, trigger=trigger, now=now)


def _windows(outcomes: selectors.OutcomeArrays, *, version: ModelVersion, min_count: int) -> dict:
    """The rolling windows: the latest N outcomes, the last T hours of bars (market time, up to the newest resolved
    bar), and every outcome of the version."""
    count = int(_setting("MINHOS_MONITOR_WINDOW_COUNT", 500))
    hours = float(_setting("MINHOS_MONITOR_WINDOW_HOURS", 24.0))
    first, last = selectors.resolved_span(version_id=version.pk)
    in_time = selectors.resolved_since(version_id=version.pk, since=last - timedelta(hours=hours)) if last else 0
    selected = {"count": outcomes.tail(count), "time": outcomes.tail(in_time), "version": outcomes}
    out = {}
    for name, window in selected.items():
        out[name] = {
            "size": count if name == "count" else hours if name == "time" else None,
            "chosen": metrics_core.window_metrics(window.y_chosen, window.p_chosen, min_count=min_count),
            **{side: metrics_core.window_metrics(getattr(window, f"y_{side}"), getattr(window, f"p_{side}"),
                                                 expected=_training_figures(version, side), min_count=min_count)
               for side in SIDES},
        }
    if last:
        out["version"]["first_bar"], out["version"]["last_bar"] = _iso(first), _iso(last)
        out["time"]["last_bar"] = _iso(last)
    return out


def _training_figures(version: ModelVersion, side: str) -> dict:
    report = (version.metrics or {}).get(side) or {}
    return dict(report.get("meta") or {})


def drift_measure(*, version: ModelVersion) -> dict:
    """PSI per feature of the live window (the newest bars after the version's training data, at most one window)
    against the training window's reference bins, and of the predicted probabilities; with the sample-size guard."""
    reference = version.drift_reference or {}
    window = int(_setting("MINHOS_MONITOR_DRIFT_BARS", 1380))
    min_live = int(_setting("MINHOS_MONITOR_DRIFT_MIN", drift_core.MIN_LIVE))
    out = {"window_bars": window, "min_live": min_live, "features": {}, "probability": {}, "probability_max": None,
           "excluded": list(CALENDAR_FEATURES), "reference_available": bool(reference.get("features"))}
    if not reference.get("features"):
        out["note"] = "this version was trained before reference bins were stored: no drift figures"
        return out
    bars = selectors.live_bars(instrument=version.instrument, timeframe=version.timeframe, after=version.data_end,
                               count=window, history=FEATURE_WINDOW)
    live_count = max(0, len(bars) - FEATURE_WINDOW) if len(bars) else 0
    features = None
    if len(bars) > FEATURE_WINDOW:
        try:
            features = compute_features(bars.reset_index(drop=True)).iloc[-min(window, live_count):]
        except Exception as exc:  # a broken window must not stop the rest of the snapshot
            out["note"] = f"features could not be computed: {type(exc).__name__}: {exc}"
    out["live_bars"] = int(min(window, live_count))
    for name in FEATURE_NAMES:
        if name in CALENDAR_FEATURES or name not in reference["features"]:
            continue
        values = features[name].to_numpy() if features is not None else np.array([])
        report = drift_core.psi_report(values, reference["features"][name], min_live=min_live)
        out["features"][name] = {k: report[k] for k in ("psi", "excess", "band", "n", "n_effective", "psi_noise")}
    recent = selectors.recent_predictions(version_id=version.pk, count=window)
    probability_max = None
    for side in SIDES:
        ref = (reference.get("probability") or {}).get(side)
        if not ref:
            continue
        values = recent[f"p_{side}"].to_numpy(dtype=np.float64) if len(recent) else np.array([])
        report = drift_core.psi_report(values, ref, min_live=min_live)
        out["probability"][side] = report
        if report["excess"] is not None:
            probability_max = max(probability_max or 0.0, report["excess"])
    out["probability_max"] = probability_max
    known = [(name, f["excess"]) for name, f in out["features"].items() if f["excess"] is not None]
    out["max_feature"], out["max_psi"] = max(known, key=lambda item: item[1]) if known else (None, None)
    return out


def _operations(*, version: ModelVersion, now: datetime, ping: bool = False) -> dict:
    recent = selectors.recent_predictions(version_id=version.pk, count=1000)
    latency = metrics_core.latency_figures(recent["latency_ms"].to_numpy(dtype=np.float64) if len(recent) else [])
    latency["members"] = {name: metrics_core.latency_figures(values)
                          for name, values in selectors.member_latencies(recent).items()}
    freshness = selectors.data_freshness_seconds(instrument=version.instrument, timeframe=version.timeframe, now=now)
    config = _risk_limits(version)
    return {
        "latency": latency,
        "predictions_per_minute": selectors.predictions_per_minute(version_id=version.pk, now=now),
        "freshness_seconds": freshness,
        "stale_after_seconds": config.stale_after_seconds,
        "market_open": in_session(now, config),
        "workers": selectors.worker_ages(now=now),
        "ping": selectors.workers_ping() if ping else None,
        "queues": queue_depths(),
    }


def _risk_limits(version: ModelVersion) -> RiskLimits:
    from trading.models import TradingConfig

    config = TradingConfig.objects.filter(instrument=version.instrument).order_by("pk").first()
    return RiskLimits(stale_after_seconds=config.stale_after_seconds) if config else RiskLimits()


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per Celery queue (Redis list lengths); empty in embedded mode, None for a queue that could
    not be read."""
    url = getattr(settings, "REDIS_URL", None)
    if not url or settings.CELERY_TASK_ALWAYS_EAGER:
        return {}
    queues = tuple(dict.fromkeys((*getattr(settings, "CELERY_QUEUES_SERVED", ()), "monitoring")))
    try:
        return _queue_depths_read(queues)
    except Exception as exc:
        logger.warning("queue depths unavailable: %s", exc)
        return dict.fromkeys(queues)


def _queue_depths_read(queues: tuple[str, ...]) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        pipe = client.pipeline()
        for queue in queues:
            pipe.llen(queue)
        return dict(zip(queues, (int(v) for v in pipe.execute())))
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------------ alerts

@dataclass(frozen=True)
class Finding:
    """One rule's reading of a snapshot: firing or not, the value compared and what to say."""

    code: str
    firing: bool
    value: float | None
    message: str
    # Whether an open alert may resolve: clear of the threshold by a margin (hysteresis), so a figure hovering
    # around it does not open and resolve the same alert on every snapshot. None: exactly when not firing.
    clear: bool | None = None

    @property
    def resolves(self) -> bool:
        return not self.firing if self.clear is None else self.clear


def _findings(rules: dict[str, AlertRule], *, score, inputs: health_core.HealthInputs, market: str) -> list[Finding]:
    by_name = {c.name: c for c in score.components}
    findings = []

    def rule(code):
        return rules.get(code)

    if rule("health_low"):
        r = rule("health_low")
        findings.append(Finding("health_low", score.score < r.threshold, score.score,
                                f"{market} health {score.score:.0f}/100 is under {r.threshold:.0f}: Kelly sizes are "
                                f"scaled down. {score.reason}", clear=score.score >= r.threshold + HEALTH_MARGIN))
    if rule("health_critical"):
        r = rule("health_critical")
        findings.append(Finding("health_critical", score.score < r.threshold, score.score,
                                f"{market} health {score.score:.0f}/100 is under {r.threshold:.0f}: sizing is zero "
                                f"and the model_health check blocks. {score.reason}",
                                clear=score.score >= r.threshold + HEALTH_MARGIN))
    if rule("no_edge"):
        findings.append(Finding("no_edge", not inputs.has_edge, 0.0 if not inputs.has_edge else 1.0,
                                f"{market}: the active version has no validated out-of-sample edge "
                                f"({inputs.edge_statement or 'No edge'}); it is not sized"))
    if rule("drift"):
        r = rule("drift")
        values = {k: v for k, v in inputs.drift_features.items() if v is not None}
        if inputs.drift_probability is not None:
            values["predicted probability"] = inputs.drift_probability
        worst = max(values.items(), key=lambda kv: kv[1]) if values else (None, None)
        over = sorted((k for k, v in values.items() if v >= r.threshold), key=lambda k: -values[k])
        features = [k for k in values if k != "predicted probability"]
        share = sum(1 for k in over if k != "predicted probability") / len(features) if features else 0.0
        # One volatility feature off on a quiet day is not a new market: the alert wants a broad shift (the share
        # that makes the drift component fail) or the model's own outputs moving.
        firing = share >= health_core.DRIFT_FAILING_SHARE or "predicted probability" in over
        findings.append(Finding("drift", firing, worst[1],
                                f"{market}: {len(over)} input(s) drifted to PSI >= {r.threshold:.2f} "
                                f"({', '.join(f'{k} {values[k]:.2f}' for k in over[:5])}). "
                                f"{by_name['drift'].detail}"))
    if rule("calibration"):
        r = rule("calibration")
        p = inputs.calibration_p
        findings.append(Finding("calibration", p is not None and p < r.threshold, p,
                                f"{market}: live calibration is worse than the calibrated probabilities promise "
                                f"({by_name['calibration'].detail})",
                                clear=p is None or p >= r.threshold * P_VALUE_MARGIN))
    if rule("accuracy"):
        r = rule("accuracy")
        p = inputs.accuracy_p
        findings.append(Finding("accuracy", p is not None and p < r.threshold, p,
                                f"{market}: live hit rate is under what was expected ({by_name['accuracy'].detail})",
                                clear=p is None or p >= r.threshold * P_VALUE_MARGIN))
    if rule("latency"):
        r = rule("latency")
        p99 = inputs.latency_p99_ms
        findings.append(Finding("latency", p99 is not None and p99 > r.threshold, p99,
                                f"{market}: inference p99 {p99 or 0:.0f} ms is over {r.threshold:.0f} ms",
                                clear=p99 is None or p99 <= r.threshold * 0.8))
    if rule("stale_data"):
        r = rule("stale_data")
        age = inputs.freshness_seconds
        stale = inputs.market_open and (age is None or age > r.threshold)
        findings.append(Finding("stale_data", stale, age,
                                f"{market}: no bar for {'ever' if age is None else f'{age:.0f} s'} while the market "
                                f"is open (limit {r.threshold:.0f} s)"))
    # The "workers" rule is not judged here: a snapshot runs on a worker, the very thing that may be dead
    # (workers_check, run by beat itself).
    return findings


def alerts_evaluate(*, snapshot: MetricSnapshot, version: ModelVersion, score, inputs, now: datetime):
    """Open an alert per firing rule and market (or refresh the one open), resolve the ones whose cause cleared.
    Returns the ids opened and resolved."""
    rules = {r.code: r for r in AlertRule.objects.filter(enabled=True)}
    market = f"{version.instrument.symbol} {version.timeframe}"
    opened, resolved = [], []
    for finding in _findings(rules, score=score, inputs=inputs, market=market):
        rule = rules[finding.code]
        cause = f"{finding.code}:{market}" if finding.code != "workers" else "workers"
        current = Alert.objects.select_for_update().filter(cause=cause).exclude(status=Alert.Status.RESOLVED).first()
        if finding.firing:
            if current is None:
                alert = _alert_open(rule, cause=cause, version=version, finding=finding, now=now)
                if alert is not None:
                    opened.append(alert.pk)
                    _on_open(alert, rule=rule, version=version, score=score, now=now)
            else:
                Alert.objects.filter(pk=current.pk).update(last_seen_at=now, times_seen=current.times_seen + 1,
                                                           value=finding.value, message=finding.message)
        elif current is not None and finding.resolves:
            Alert.objects.filter(pk=current.pk).update(
                status=Alert.Status.RESOLVED, resolved_at=now,
                resolution=f"cleared at snapshot {snapshot.pk} (value {_fmt(finding.value)})")
            resolved.append(current.pk)
            # Said once it holds: a snapshot that rolls back resolved nothing.
            _log_on_commit(logger.warning, "alert resolved: %s (%s)", cause, _fmt(finding.value))
            _notify(current.pk, "resolved")
    return opened, resolved


def _log_on_commit(log, message: str, *args) -> None:
    """A log line about a change, written once the change is committed: an alert rolled back with its snapshot's
    transaction was never opened, and the log must not say it was."""
    transaction.on_commit(lambda: log(message, *args))


def _alert_open(rule: AlertRule, *, cause: str, version: ModelVersion, finding: Finding, now: datetime):
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, cause=cause, instrument=version.instrument if rule.code != "workers" else None,
                timeframe=version.timeframe if rule.code != "workers" else "", version=version,
                severity=rule.severity, message=finding.message, value=finding.value, threshold=rule.threshold,
                opened_at=now, last_seen_at=now)
    except IntegrityError:  # a concurrent snapshot opened it first: one open alert per cause
        return None
    log = logger.critical if rule.severity == "critical" else logger.warning
    _log_on_commit(log, "alert opened [%s] %s: %s", rule.severity, cause, finding.message)
    _notify(alert.pk, "opened")
    return alert


def _on_open(alert: Alert, *, rule: AlertRule, version: ModelVersion, score, now: datetime) -> None:
    if rule.queue_retraining:
        # The degradation hook: recorded as a retraining (started, or skipped with why: one in flight, the cooldown
        # of the market's retraining policy, too few new bars).
        from mlcore import retraining

        retraining.retraining_request(symbol=version.instrument.symbol, timeframe=version.timeframe,
                                      trigger="degradation", requested_by="monitoring",
                                      reason=f"alert {rule.code} #{alert.pk}: {alert.message}", now=now)


def _notify(alert_id: int, event: str, *, queue: str | None = None) -> None:
    """Queue the webhook notice, if a webhook is configured, once the transaction commits (never inline); on
    `queue` rather than monitoring's when given."""
    if not getattr(settings, "MINHOS_ALERT_WEBHOOK_URL", ""):
        return
    try:
        from . import webhooks
    except ImportError:  # pragma: no cover - the webhook module ships with the app
        return
    webhooks.webhook_queue(alert_id=alert_id, event=event, queue=queue)


@dataclass
class AlertKept:
    """What `_alert_keep` did: the alert it opened, or the one it resolved (ids), or neither."""

    opened: Alert | None = None
    resolved: int | None = None


def _alert_keep(*, cause: str, rule: AlertRule | None, failing: str | None, resolution: str | None, now: datetime,
                fields: dict | None = None, queue: str | None = None) -> AlertKept:
    """The one open alert of a cause that outcomes open and clear (a failed training or retraining, a dead worker),
    under a row lock. `failing` (its message): opened if none is open (a concurrent opener wins the unique constraint
    and this one opens nothing), else refreshed (last seen, times seen, message, `fields`). Not failing and
    `resolution` given: the open one is resolved with it. The log line, the webhook notice (on `queue` if given) and
    the pages' push follow the commit: a change rolled back was never made."""
    kept = AlertKept()
    fields = fields or {}
    with transaction.atomic():
        current = Alert.objects.select_for_update().filter(cause=cause).exclude(status=Alert.Status.RESOLVED).first()
        if failing is not None and rule is not None:
            if current is None:
                try:
                    with transaction.atomic():
                        kept.opened = Alert.objects.create(rule=rule, cause=cause, severity=rule.severity,
                                                           message=failing, opened_at=now, last_seen_at=now, **fields)
                except IntegrityError:
                    return kept
                log = logger.critical if rule.severity == "critical" else logger.warning
                _log_on_commit(log, "alert opened [%s] %s: %s", rule.severity, cause, failing)
                _notify(kept.opened.pk, "opened", queue=queue)
                opened = kept.opened
                transaction.on_commit(lambda: _publish_alert(opened, "alert.opened"))
            else:
                Alert.objects.filter(pk=current.pk).update(last_seen_at=now, times_seen=current.times_seen + 1,
                                                           message=failing, **fields)
        elif failing is None and resolution is not None and current is not None:
            Alert.objects.filter(pk=current.pk).update(status=Alert.Status.RESOLVED, resolved_at=now,
                                                       resolution=resolution)
            kept.resolved = current.pk
            _log_on_commit(logger.warning, "alert resolved: %s", cause)
            _notify(current.pk, "resolved", queue=queue)
            transaction.on_commit(lambda: _publish_alert(
                Alert.objects.select_related("instrument", "acknowledged_by").get(pk=current.pk), "alert.resolved"))
    return kept


def alert_acknowledge(*, alert_id: int, user, note: str = "", now: datetime | None = None) -> Alert:
    """A person with monitoring.acknowledge_alert says they have seen an alert (audited: who, when, note). It stays
    listed until its cause clears. Acknowledging twice keeps the first acknowledgement."""
    if user is None or not user.has_perm("monitoring.acknowledge_alert"):
        raise PermissionDenied("Acknowledging alerts needs the monitoring.acknowledge_alert permission")
    note = (note or "").strip()
    if len(note) > 2000:
        raise ValidationError({"note": "The note is longer than 2000 characters."})
    problem = control_character_problem(note, text=True)
    if problem:  # a NUL was a 500 from PostgreSQL; an escape sequence would reach the log as it came
        raise ValidationError({"note": f"The note is refused: {problem}"})
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise ValidationError(f"there is no alert #{alert_id}")
        if alert.status == Alert.Status.OPEN:
            alert.status, alert.acknowledged_by, alert.acknowledged_at = Alert.Status.ACKNOWLEDGED, user, now
            alert.acknowledgement_note = note
            alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "acknowledgement_note"])
            _log_on_commit(logger.warning, "alert acknowledged: %s by %s%s", alert.cause, user.get_username(),
                           f" ({note})" if note else "")
            transaction.on_commit(lambda: _publish_alert(alert, "alert.acknowledged"))
    return alert


# ---------------------------------------------------------------------------------------------- worker down

WORKERS_RULE = "workers"
# What a queue without a worker stops.
_QUEUE_STOPS = {"trading": "bars are not settled", "inference": "settled bars are not predicted or sized",
                "monitoring": "snapshots and alert notices wait"}


@dataclass(frozen=True)
class WorkersCheck:
    ages: dict[str, float | None]  # queue -> seconds since its heartbeat (None: never)
    dead: tuple[str, ...]
    opened: int | None = None
    resolved: int | None = None


def workers_check(*, watching_since: datetime, now: datetime | None = None) -> WorkersCheck | None:
    """The "Worker down" alert: open (one, cause "workers") while a watched queue's heartbeat is older than the
    rule's threshold, refreshed with the queues and backlog, resolved once every one answers again; its notices go
    out on a queue that still has a live worker. A queue never seen counts as dead only once the threshold has passed
    since `watching_since` (a fresh start is not an outage). Run by beat itself (minhos_site/beat.py), never on a
    worker: the worker that is dead cannot say so. None in embedded mode or with the rule disabled."""
    now = now or timezone.now()
    ages = selectors.worker_ages(now=now, queues=selectors.WATCHED_QUEUES)
    rule = AlertRule.objects.filter(code=WORKERS_RULE, enabled=True).first() if ages is not None else None
    if rule is None:
        return None
    judged_never_seen = (now - watching_since).total_seconds() > rule.threshold
    dead = tuple(q for q, age in ages.items() if (age is None and judged_never_seen) or
                 (age is not None and age > rule.threshold))
    # The notices go to monitoring's workers, or, when they are the ones down, to the queue heard from last (a
    # worker dying now is not heard from any more, however young its heartbeat still is).
    live = sorted((age, q) for q, age in ages.items() if q not in dead and age is not None)
    notices_on = live[0][1] if live and "monitoring" in dead else None
    message = worst = None
    if dead:
        message = _workers_message(dead, ages, threshold=rule.threshold)
        worst = max((age for q, age in ages.items() if q in dead and age is not None), default=None)
    resolution = ("every watched queue's worker answered within "
                  f"{rule.threshold:.0f} s ({', '.join(f'{q} {_fmt(a)} s' for q, a in ages.items())})")
    # The notices of an opening go to monitoring's workers, or, when they are down, to the queue heard from last.
    kept = _alert_keep(cause=WORKERS_RULE, rule=rule, failing=message, resolution=resolution, now=now,
                       fields={"value": worst, **({"threshold": rule.threshold} if dead else {})},
                       queue=notices_on if dead else None)
    return WorkersCheck(ages=ages, dead=dead, opened=kept.opened.pk if kept.opened else None, resolved=kept.resolved)


def _workers_message(dead: tuple[str, ...], ages: dict[str, float | None], *, threshold: float) -> str:
    parts = [f"{q} ({'never seen' if ages[q] is None else f'last seen {ages[q]:.0f} s ago'})" for q in dead]
    message = (f"no live worker on queue(s) {', '.join(parts)}, over the {threshold:.0f} s limit: "
               + "; ".join(_QUEUE_STOPS[q] for q in dead if q in _QUEUE_STOPS))
    depths = _broker_depths(dead)
    if depths is None:
        message += ". Redis does not answer either: no heartbeat reaches any worker"
    elif any(depths.values()):
        message += ". Waiting: " + ", ".join(f"{n} on {q}" for q, n in depths.items() if n)
    return message[:2000]


def _broker_depths(queues: tuple[str, ...]) -> dict[str, int] | None:
    """Messages waiting per queue; None when Redis does not answer (said in the alert, not logged: the check runs
    every few seconds)."""
    if not getattr(settings, "REDIS_URL", None):
        return {}
    try:
        return _queue_depths_read(queues)
    except Exception:
        return None


# ------------------------------------------------------------------------------------------ retraining hook

RETRAINING_RULE = "retraining_failed"
_RETRAINING_DECIDED = ("kept", "proposed", "promoted", "shadow")


def retraining_outcome_record(*, retraining_id: int, now: datetime | None = None) -> Alert | None:
    """Open the market's retraining alert when a retraining failed or its promotion was refused; resolve it when a
    later one reached a decision. Pushes the retraining to every page. Returns the alert opened, if any."""
    from mlcore.models import Retraining

    now = now or timezone.now()
    record = Retraining.objects.select_related("instrument").filter(pk=retraining_id).first()
    if record is None:
        return None
    market = f"{record.instrument.symbol} {record.timeframe}"
    cause = f"{RETRAINING_RULE}:{market}"
    failed = record.status == Retraining.Status.FAILED or (
        record.status == Retraining.Status.REJECTED and record.error.startswith("promotion refused"))
    message = None
    if failed:
        message = (f"{market}: retraining #{record.pk} ({record.trigger}) "
                   f"{'failed' if record.status == Retraining.Status.FAILED else 'was refused'}: "
                   f"{record.error or record.note}; the champion keeps serving")[:2000]
    decided = record.status in _RETRAINING_DECIDED
    opened = _alert_keep(
        cause=cause, rule=AlertRule.objects.filter(code=RETRAINING_RULE, enabled=True).first(), failing=message,
        resolution=f"retraining #{record.pk} reached a decision ({record.status})" if decided else None, now=now,
        fields={"instrument": record.instrument, "timeframe": record.timeframe,
                "version": record.challenger or record.champion}).opened
    from trading import realtime

    realtime.broadcast_all("retraining.decided", {"symbol": record.instrument.symbol, "timeframe": record.timeframe,
                                                  "id": record.pk, "status": record.status})
    return opened


# -------------------------------------------------------------------------------------------------- publishing

def _publish(snapshot: MetricSnapshot, opened, resolved) -> None:
    from trading import realtime

    realtime.broadcast(snapshot.instrument.symbol, snapshot.timeframe, "monitoring.snapshot",
                       snapshot_brief(snapshot))
    for alert in Alert.objects.filter(pk__in=[*opened, *resolved]).select_related("instrument", "acknowledged_by"):
        _publish_alert(alert, "alert.opened" if alert.pk in opened else "alert.resolved")


def _publish_alert(alert: Alert, message_type: str) -> None:
    from trading import realtime

    realtime.broadcast_all(message_type, alert_payload(alert))


def snapshot_brief(snapshot: MetricSnapshot) -> dict:
    return {"id": snapshot.pk, "taken_at": _iso(snapshot.taken_at), "version": snapshot.version_id,
            "health_score": snapshot.health_score, "components": snapshot.health_components,
            "caps": snapshot.health_caps}


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk, "cause": alert.cause, "rule": alert.rule.code if alert.rule_id else None,
        "severity": alert.severity, "status": alert.status, "message": alert.message, "value": alert.value,
        "threshold": alert.threshold, "symbol": alert.instrument.symbol if alert.instrument_id else None,
        "timeframe": alert.timeframe, "version": alert.version_id, "opened_at": _iso(alert.opened_at),
        "last_seen_at": _iso(alert.last_seen_at), "times_seen": alert.times_seen,
        "resolved_at": _iso(alert.resolved_at) if alert.resolved_at else None, "resolution": alert.resolution,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": _iso(alert.acknowledged_at) if alert.acknowledged_at else None,
        "acknowledgement_note": alert.acknowledgement_note,
    }


def _iso(value) -> str:
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value).tz_localize("UTC").to_pydatetime()
    return value.isoformat().replace("+00:00", "Z")


def _fmt(value) -> str:
    return "none" if value is None else f"{value:.4g}"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value


TRAINING_RULE = "training_failed"


def training_run_outcome_record(*, run_id: int, now: datetime | None = None) -> Alert | None:
    """Open the market's training alert when a training run failed (its worker killed mid-fit, say); resolve it when
    a later run of the market succeeded. Returns the alert opened, if any."""
    now = now or timezone.now()
    run = TrainingRun.objects.select_related("instrument").filter(pk=run_id).first()
    if run is None:
        return None
    market = f"{run.instrument.symbol} {run.timeframe}"
    cause = f"{TRAINING_RULE}:{market}"
    failed = run.status == TrainingRun.Status.FAILED
    return _alert_keep(
        cause=cause, rule=AlertRule.objects.filter(code=TRAINING_RULE, enabled=True).first(),
        failing=f"{market}: training run #{run.pk} ({run.preset}) failed: {run.error}"[:2000] if failed else None,
        resolution=(f"training run #{run.pk} succeeded (v{run.version_id})"
                    if run.status == TrainingRun.Status.SUCCEEDED else None),
        now=now, fields={"instrument": run.instrument, "timeframe": run.timeframe}).opened

