"""/metrics: the Prometheus text format, parsed back with prometheus_client's own parser; every figure read from the
database at scrape time, so predictions stored by any process (a Celery worker) show in any web process's scrape."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from mlcore.models import ModelVersion, Prediction
from monitoring import prometheus
from monitoring.models import Alert, AlertRule, MetricSnapshot
from trading.models import FeedStatus
from trading.tests.decisions import flat_bars, model_version, prediction
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

COMPONENTS = [
    {"name": "edge", "weight": 25, "score": 1.0, "contribution": 25.0, "status": "healthy", "detail": "edge"},
    {"name": "drift", "weight": 20, "score": 0.25, "contribution": 5.0, "status": "failing", "detail": "PSI 0.4"},
]


def scrape() -> dict:
    """{family name: {(sample name, sorted labels): value}} of one scrape, through the text parser."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {}
    for family in text_string_to_metric_families(response.content.decode()):
        families[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return families


def labels(**values) -> tuple:
    return tuple(sorted(values.items()))


@pytest.fixture
def market():
    """NQ 1m with five bars, an active version and a retired one, and a feed that stored its last bar 30 s ago."""
    nq = InstrumentFactory(symbol="NQ")
    bars = flat_bars(nq, 5)
    active = model_version(nq)
    ModelVersion.objects.filter(pk=active.pk).update(status=ModelVersion.Status.ACTIVE, artifacts={"a": "b"})
    retired = model_version(nq)
    ModelVersion.objects.filter(pk=retired.pk).update(status=ModelVersion.Status.RETIRED)
    FeedStatus.objects.create(instrument=nq, timeframe="1m", source="synthetic", running=True,
                              last_bar_received_at=timezone.now() - timedelta(seconds=30))
    return nq, bars, active, retired


def test_an_empty_database_answers_with_the_always_present_families():
    families = scrape()

    assert families["minhos_alerts_open"][("minhos_alerts_open", labels(severity="critical", status="open"))] == 0
    assert len(families["minhos_alerts_open"]) == 6  # three severities x open, acknowledged
    assert families["minhos_predictions"] == {}
    assert families["minhos_model_health_score"] == {}
    assert families["minhos_metrics_scrape_seconds"][("minhos_metrics_scrape_seconds", ())] >= 0


def test_predictions_are_counted_per_version_status_and_outcome(market):
    nq, bars, active, retired = market
    resolved = [prediction(bar, active) for bar in bars[:3]]
    Prediction.objects.filter(pk__in=[p.pk for p in resolved[:2]]).update(
        outcome_status="resolved", outcome_long="take_profit", outcome_short="stop")
    Prediction.objects.filter(pk=resolved[2].pk).update(
        outcome_status="resolved", outcome_long="timeout", outcome_short="timeout")
    prediction(bars[3], active)  # pending
    Prediction.objects.filter(pk=prediction(bars[4], active).pk).update(outcome_status="unresolvable")
    prediction(bars[0], retired)

    families = scrape()

    v, old = str(active.pk), str(retired.pk)
    assert families["minhos_predictions"] == {
        ("minhos_predictions_total", labels(instrument="NQ", timeframe="1m", version=v)): 5,
        ("minhos_predictions_total", labels(instrument="NQ", timeframe="1m", version=old)): 1,
    }
    by_status = families["minhos_predictions_by_status"]
    assert {dict(k[1])["outcome_status"]: n for k, n in by_status.items() if dict(k[1])["version"] == v} == {
        "pending": 1, "resolved": 3, "unresolvable": 1}
    outcomes = {(dict(k[1])["side"], dict(k[1])["outcome"]): n
                for k, n in families["minhos_prediction_outcomes"].items()}
    assert outcomes == {("long", "take_profit"): 2, ("long", "timeout"): 1, ("short", "stop"): 2,
                        ("short", "timeout"): 1}


def test_a_row_stored_by_another_process_shows_in_the_next_scrape(market):
    """Nothing is counted in this process: a prediction inserted straight into the table (as a worker's would be,
    with no code of this process running) is in the next scrape."""
    nq, bars, active, _ = market
    key = ("minhos_predictions_total", labels(instrument="NQ", timeframe="1m", version=str(active.pk)))
    assert key not in scrape()["minhos_predictions"]

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mlcore_prediction (instrument_id, bar_id, version_id, created_at, p_long, p_short, side, "
            "confidence, agreement, members, latency_ms, outcome_status, outcome_long, outcome_short, outcome_note) "
            "VALUES (%s, %s, %s, %s, 0.6, 0.4, 'long', 0.6, 1.0, '{}', 42.0, 'pending', '', '', '')",
            [nq.pk, bars[0].pk, active.pk, connection.ops.adapt_datetimefield_value(timezone.now())])

    families = scrape()
    assert families["minhos_predictions"][key] == 1
    latency = families["minhos_inference_latency_ms"]
    assert latency[("minhos_inference_latency_ms", labels(instrument="NQ", timeframe="1m", version=str(active.pk),
                                                          quantile="0.99"))] == 42.0


def test_health_score_components_and_snapshot_age_come_from_the_latest_snapshot(market):
    nq, _, active, _ = market
    now = timezone.now()
    MetricSnapshot.objects.create(instrument=nq, timeframe="1m", version=active, taken_at=now - timedelta(hours=1),
                                  health_score=91.0, health_components=[])
    MetricSnapshot.objects.create(instrument=nq, timeframe="1m", version=active, taken_at=now - timedelta(seconds=20),
                                  health_score=58.5, health_components=COMPONENTS,
                                  operations={"latency": {"n": 700, "p50": 3.5, "p95": 8.0, "p99": 12.25,
                                                          "members": {"lightgbm": {"n": 700, "p50": 0.03,
                                                                                   "p95": 0.05, "p99": 0.08}}},
                                              "queues": {"trading": 2, "inference": 0, "monitoring": None}})

    families = scrape()

    version = dict(instrument="NQ", timeframe="1m", version=str(active.pk))
    assert families["minhos_model_health_score"] == {("minhos_model_health_score", labels(**version)): 58.5}
    assert families["minhos_health_component"] == {
        ("minhos_health_component", labels(**version, component="edge")): 1.0,
        ("minhos_health_component", labels(**version, component="drift")): 0.25,
    }
    assert families["minhos_health_component_contribution"][
        ("minhos_health_component_contribution", labels(**version, component="drift"))] == 5.0
    age = families["minhos_snapshot_age_seconds"][("minhos_snapshot_age_seconds", labels(instrument="NQ",
                                                                                         timeframe="1m"))]
    assert 20 <= age < 3600
    # The snapshot's latency figures, not a recomputation (this version has no prediction at all).
    assert {dict(k[1])["quantile"]: v for k, v in families["minhos_inference_latency_ms"].items()} == {
        "0.5": 3.5, "0.95": 8.0, "0.99": 12.25}
    assert families["minhos_member_inference_latency_ms"] == {
        ("minhos_member_inference_latency_ms", labels(**version, member="lightgbm", quantile=q)): v
        for q, v in (("0.5", 0.03), ("0.95", 0.05), ("0.99", 0.08))}
    assert families["minhos_queue_depth"] == {("minhos_queue_depth", labels(queue="trading")): 2,
                                              ("minhos_queue_depth", labels(queue="inference")): 0}


def test_latency_is_computed_from_the_newest_predictions_without_a_snapshot(market):
    nq, bars, active, _ = market
    for bar, ms in zip(bars, (10.0, 20.0, 30.0, 40.0, 50.0), strict=True):
        Prediction.objects.filter(pk=prediction(bar, active).pk).update(latency_ms=ms)

    latency = scrape()["minhos_inference_latency_ms"]

    assert {dict(k[1])["quantile"]: v for k, v in latency.items()} == pytest.approx(
        {"0.5": 30.0, "0.95": 48.0, "0.99": 49.6})


def test_data_freshness_per_market_from_the_feed_record(market):
    families = scrape()

    key = labels(instrument="NQ", timeframe="1m")
    assert 30 <= families["minhos_data_freshness_seconds"][("minhos_data_freshness_seconds", key)] < 300
    assert families["minhos_data_stale"][("minhos_data_stale", key)] == 0


def test_open_and_acknowledged_alerts_are_counted_by_severity_and_resolved_ones_are_not():
    now = timezone.now()
    drift, stale = AlertRule.objects.get(code="drift"), AlertRule.objects.get(code="stale_data")
    for cause, rule, status in (("drift:NQ:1m", drift, "open"), ("drift:ES:1m", drift, "acknowledged"),
                                ("stale:NQ:1m", stale, "open"), ("drift:YM:1m", drift, "resolved")):
        Alert.objects.create(rule=rule, cause=cause, severity=rule.severity, status=status, message=cause,
                             opened_at=now, last_seen_at=now)

    alerts = scrape()["minhos_alerts_open"]

    counts = {tuple(v for _, v in key[1]): n for key, n in alerts.items() if n}
    assert counts == {("warning", "open"): 1, ("warning", "acknowledged"): 1, ("critical", "open"): 1}


def test_metrics_needs_no_login_and_is_exempt_from_the_https_redirect(settings):
    import re

    assert any(re.match(pattern, "metrics") for pattern in settings.SECURE_REDIRECT_EXEMPT)
    assert Client().get("/metrics").status_code == 200
    assert Client().post("/metrics").status_code == 405


def test_a_database_failure_is_a_503_not_a_page_of_zeros(monkeypatch):
    from django.db import OperationalError

    def broken():
        raise OperationalError("the database is down")

    monkeypatch.setattr(prometheus.ml_selectors, "model_version_active_list", broken)

    response = Client().get("/metrics")

    assert response.status_code == 503
    assert b"database unavailable: OperationalError" in response.content
