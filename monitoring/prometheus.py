"""/metrics in the Prometheus text format: a collector that reads the database at scrape time.

Predictions are made in Celery worker processes and scraped from a web process, so no figure here lives in process
memory: every scrape reads the rows (a handful of aggregate or index-ordered queries), and any web process answers
the same. Families (labels `instrument`, `timeframe`, `version` unless said):

- `minhos_model_health_score` (0-100) and `minhos_health_component{component}` (each component's score, 0-1) and
  `minhos_health_component_contribution{component}` (its points), from the market's latest snapshot;
- `minhos_snapshot_age_seconds` (instrument, timeframe): since that snapshot was taken;
- `minhos_predictions_total` (counter), `minhos_predictions_by_status{outcome_status}` (pending, resolved,
  unresolvable) and `minhos_prediction_outcomes_total{side, outcome}` (take_profit, stop, timeout; resolved only);
- `minhos_inference_latency_ms{quantile}` (0.5, 0.95, 0.99) of the active version: the latest snapshot's figures, or
  computed from its newest 1000 predictions when no snapshot has any; `minhos_member_inference_latency_ms{member,
  quantile}`, each member model's, from the snapshot;
- `minhos_data_freshness_seconds` and `minhos_data_stale` (instrument, timeframe): the newest bar's age and whether
  that is stale while the market is open (trading's freshness selector);
- `minhos_alerts_open{severity, status}` (open and acknowledged alerts; every combination, zeros included);
- `minhos_queue_depth{queue}`: messages waiting per Celery queue, from the newest snapshot (deployment only);
- `minhos_metrics_scrape_seconds`: how long this scrape's reads took.
"""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mlcore import selectors as ml_selectors
from trading import selectors as trading_selectors

from .models import Alert, MetricSnapshot, Severity

MARKET = ["instrument", "timeframe"]
VERSION = ["instrument", "timeframe", "version"]
QUANTILES = (("0.5", "p50", 50), ("0.95", "p95", 95), ("0.99", "p99", 99))
LATENCY_WINDOW = 1000
OUTCOME_STATUSES = ("pending", "resolved", "unresolvable")
OPEN_STATUSES = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)


class MinhosCollector:
    """Builds every family from the database on each `collect()` (prometheus_client calls it per scrape)."""

    def collect(self):
        started = time.perf_counter()
        now = timezone.now()
        active = {(v.symbol, v.timeframe): v for v in ml_selectors.model_version_active_list()}
        freshness = {(m.symbol, m.timeframe): m for m in trading_selectors.market_freshness_list(now=now)}
        markets = sorted(set(active) | set(freshness))
        instrument_ids = {(v.symbol, v.timeframe): v.instrument_id for v in active.values()}
        instrument_ids.update({key: m.instrument_id for key, m in freshness.items()})
        snapshots = {market: _snapshot_latest(instrument_id=instrument_ids[market], timeframe=market[1])
                     for market in markets}

        yield from _health_families(snapshots, now=now)
        yield from _prediction_families(ml_selectors.prediction_tallies())
        yield _latency_family(active, snapshots)
        yield _member_latency_family(active, snapshots)
        yield from _freshness_families(freshness)
        yield _alerts_family()
        yield _queue_family(snapshots)
        scrape = GaugeMetricFamily("minhos_metrics_scrape_seconds", "Seconds this scrape spent reading the database.")
        scrape.add_metric([], time.perf_counter() - started)
        yield scrape


def _snapshot_latest(*, instrument_id: int, timeframe: str) -> dict | None:
    """The market's newest snapshot (one step along its (instrument, timeframe, -taken_at) index), only the fields
    scraped."""
    return (MetricSnapshot.objects.filter(instrument_id=instrument_id, timeframe=timeframe)
            .order_by("-taken_at", "-id")
            .values("version_id", "taken_at", "health_score", "health_components", "operations").first())


def _health_families(snapshots: dict, *, now):
    score = GaugeMetricFamily("minhos_model_health_score",
                              "Health score (0-100) of the market's model version, from its latest snapshot.",
                              labels=VERSION)
    component = GaugeMetricFamily("minhos_health_component",
                                  "Score (0-1) of one component of the health score, from the latest snapshot.",
                                  labels=[*VERSION, "component"])
    contribution = GaugeMetricFamily("minhos_health_component_contribution",
                                     "Points (weight x score) one component adds to the health score.",
                                     labels=[*VERSION, "component"])
    age = GaugeMetricFamily("minhos_snapshot_age_seconds", "Seconds since the market's latest monitoring snapshot.",
                            labels=MARKET)
    for (symbol, timeframe), snapshot in snapshots.items():
        if snapshot is None:
            continue
        age.add_metric([symbol, timeframe], max(0.0, (now - snapshot["taken_at"]).total_seconds()))
        labels = [symbol, timeframe, _version_label(snapshot["version_id"])]
        if snapshot["health_score"] is not None:
            score.add_metric(labels, snapshot["health_score"])
        for part in snapshot["health_components"] or []:
            if part.get("score") is not None:
                component.add_metric([*labels, str(part["name"])], float(part["score"]))
            if part.get("contribution") is not None:
                contribution.add_metric([*labels, str(part["name"])], float(part["contribution"]))
    return score, component, contribution, age


def _version_label(version_id: int | None) -> str:
    return "" if version_id is None else str(version_id)


def _prediction_families(tallies):
    total = CounterMetricFamily("minhos_predictions", "Predictions stored, per model version.", labels=VERSION)
    by_status = GaugeMetricFamily("minhos_predictions_by_status",
                                  "Predictions per outcome status: pending (horizon not passed), resolved, "
                                  "unresolvable.", labels=[*VERSION, "outcome_status"])
    outcomes = CounterMetricFamily("minhos_prediction_outcomes",
                                   "Resolved outcomes per side: which barrier came first (take_profit, stop, "
                                   "timeout).", labels=[*VERSION, "side", "outcome"])
    counts = defaultdict(int)
    statuses = defaultdict(int)
    sides = defaultdict(int)
    for t in tallies:
        version = (t.symbol, t.timeframe, str(t.version_id))
        counts[version] += t.count
        statuses[(*version, t.outcome_status)] += t.count
        for side, outcome in (("long", t.outcome_long), ("short", t.outcome_short)):
            if t.outcome_status == "resolved" and outcome:
                sides[(*version, side, outcome)] += t.count
    for version, count in sorted(counts.items()):
        total.add_metric(list(version), count)
        for status in OUTCOME_STATUSES:  # each status of each version, zeros too, so rates and ratios line up
            by_status.add_metric([*version, status], statuses.get((*version, status), 0))
    for key, count in sorted(sides.items()):
        outcomes.add_metric(list(key), count)
    return total, by_status, outcomes


def _latency_family(active: dict, snapshots: dict):
    latency = GaugeMetricFamily("minhos_inference_latency_ms",
                                "Total inference latency of the market's active version (ms): its latest "
                                "snapshot's quantiles, else those of its newest 1000 predictions.",
                                labels=[*VERSION, "quantile"])
    for (symbol, timeframe), version in sorted(active.items()):
        figures = _snapshot_latency(snapshots.get((symbol, timeframe)), version_id=version.version_id)
        if figures is None:
            recent = ml_selectors.prediction_latencies_recent(instrument_id=version.instrument_id,
                                                              version_id=version.version_id, n=LATENCY_WINDOW)
            if not recent:
                continue
            values = np.percentile(np.asarray(recent, dtype=np.float64), [q for _, _, q in QUANTILES])
            figures = {key: float(v) for (_, key, _), v in zip(QUANTILES, values, strict=True)}
        for quantile, key, _ in QUANTILES:
            latency.add_metric([symbol, timeframe, str(version.version_id), quantile], figures[key])
    return latency


def _member_latency_family(active: dict, snapshots: dict):
    members = GaugeMetricFamily("minhos_member_inference_latency_ms",
                                "Inference latency of each member model of the market's active version (ms), from "
                                "its latest snapshot.", labels=[*VERSION, "member", "quantile"])
    for (symbol, timeframe), version in sorted(active.items()):
        snapshot = snapshots.get((symbol, timeframe))
        if snapshot is None or snapshot["version_id"] != version.version_id:
            continue
        per_member = ((snapshot["operations"] or {}).get("latency") or {}).get("members") or {}
        for member, figures in sorted(per_member.items()):
            for quantile, key, _ in QUANTILES:
                if (figures or {}).get(key) is not None:
                    members.add_metric([symbol, timeframe, str(version.version_id), member, quantile],
                                       float(figures[key]))
    return members


def _snapshot_latency(snapshot: dict | None, *, version_id: int) -> dict | None:
    """{"p50", "p95", "p99"} of a snapshot of this version that measured any (operations.latency), else None."""
    if snapshot is None or snapshot["version_id"] != version_id:
        return None
    latency = (snapshot["operations"] or {}).get("latency") or {}
    if not latency.get("n") or any(latency.get(key) is None for _, key, _ in QUANTILES):
        return None
    return {key: float(latency[key]) for _, key, _ in QUANTILES}


def _freshness_families(freshness: dict):
    age = GaugeMetricFamily("minhos_data_freshness_seconds",
                            "Seconds since the market's newest bar arrived (since it closed, without a feed's record).",
                            labels=MARKET)
    stale = GaugeMetricFamily("minhos_data_stale",
                              "1 when the newest bar is older than the limit while the market is open, else 0.",
                              labels=MARKET)
    for (symbol, timeframe), market in sorted(freshness.items()):
        age.add_metric([symbol, timeframe], market.age_seconds)
        stale.add_metric([symbol, timeframe], 1.0 if market.stale else 0.0)
    return age, stale


def _alerts_family():
    alerts = GaugeMetricFamily("minhos_alerts_open", "Alerts not resolved yet, per severity and status.",
                               labels=["severity", "status"])
    counts = {(severity, status): n for severity, status, n in Alert.objects.filter(status__in=OPEN_STATUSES)
              .order_by().values_list("severity", "status").annotate(n=Count("pk"))}
    for severity in Severity.values:
        for status in OPEN_STATUSES:
            alerts.add_metric([severity, status], counts.get((severity, status), 0))
    return alerts


def _queue_family(snapshots: dict):
    queues = GaugeMetricFamily("minhos_queue_depth", "Messages waiting per Celery queue, at the newest snapshot.",
                               labels=["queue"])
    taken = [s for s in snapshots.values() if s is not None and (s["operations"] or {}).get("queues")]
    if taken:
        newest = max(taken, key=lambda s: s["taken_at"])
        for queue, depth in sorted(newest["operations"]["queues"].items()):
            if depth is not None:
                queues.add_metric([queue], depth)
    return queues


REGISTRY = CollectorRegistry()  # this collector alone: nothing in it is per process
REGISTRY.register(MinhosCollector())


@require_safe
def metrics(request):
    """Prometheus scrapes this (no login: an internal endpoint, like /healthz). 503 when the database cannot be read,
    so the scrape fails visibly rather than reporting zeros."""
    try:
        body = generate_latest(REGISTRY)
    except DatabaseError as error:
        return HttpResponse(f"database unavailable: {type(error).__name__}\n", status=503,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
