"""Snapshots end to end on the database: the health score written where sizing reads it, alerts de-duplicated,
acknowledged and resolved, the degradation response (scaled, then blocked), drift on a volatility shock."""
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction

from mlcore.domain.drift import reference_bins
from mlcore.domain.features import FEATURE_NAMES, compute_features
from mlcore.models import ModelVersion, Prediction, Retraining, RetrainingPolicy
from monitoring import services
from monitoring.models import Alert, AlertRule, MetricSnapshot
from trading import services as trading_services
from trading.models import Bar, Recommendation
from trading.tests.decisions import ONE_MINUTE, bar_at, close_time, model_version, prediction, user_with
from trading.tests.factories import SERIES_ORIGIN

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
TRAINING = {"accuracy": 0.62, "log_loss": 0.66, "brier": 0.234, "ece": 0.03, "roc_auc": 0.62, "n": 3000,
            "base_rate": 0.5}


def active_version(nq, *, has_edge=True, drift_reference=None):
    version = model_version(nq, health_score=None)
    version.has_edge, version.status = has_edge, ModelVersion.Status.ACTIVE
    version.edge_statement = "Long: Edge (log loss 0.655 beats every baseline by 0.004)" if has_edge else "No edge"
    version.metrics = {"long": {"meta": TRAINING}, "short": {"meta": TRAINING}}
    version.drift_reference = drift_reference or {}
    version.save()
    return version


def resolved_predictions(nq, version, *, count=120, p=0.6, hit_share=0.6, start=0):
    """`count` bars with a resolved long prediction each at probability p; the first hit_share of them won."""
    bars = [bar_at(nq, start + i) for i in range(count)]
    wins = int(round(count * hit_share))
    for i, bar in enumerate(bars):
        made = prediction(bar, version, side="long", p=p, atr=10.0)
        won = i % count < wins
        Prediction.objects.filter(pk=made.pk).update(
            outcome_status="resolved", outcome_long="take_profit" if won else "stop",
            outcome_short="stop" if won else "take_profit", return_long=0.001 if won else -0.0007)
    return bars


def snap(version, bars, **kwargs):
    version.refresh_from_db()
    return services.snapshot_take(version=version, now=close_time(bars[-1]) + timedelta(seconds=5), **kwargs)


def recommend_on(nq, version, bar_index, now_bar=None):
    bar = bar_at(nq, bar_index)
    made = prediction(bar, version, p=0.62, atr=10.0)
    [recommendation] = trading_services.recommendations_create_for_prediction(prediction_id=made.pk,
                                                                              now=close_time(bar))
    return recommendation


def test_a_version_with_an_edge_and_calibrated_outcomes_is_healthy_and_sized_in_full(nq):
    version = active_version(nq)
    bars = resolved_predictions(nq, version)
    result = snap(version, bars)
    version.refresh_from_db()
    snapshot = result.snapshot
    assert version.health_score == snapshot.health_score >= 85  # drift not measured (no reference): half credit
    assert version.health_checked_at is not None and "drift" in version.health_reason
    names = [c["name"] for c in snapshot.health_components]
    assert names == ["edge", "calibration", "accuracy", "drift", "latency", "freshness", "workers"]
    assert sum(c["contribution"] for c in snapshot.health_components) == pytest.approx(snapshot.health_score, abs=0.1)
    chosen = snapshot.metrics["windows"]["count"]["chosen"]
    assert chosen["n"] == 120 and chosen["hit_rate"]["realised_rate"] == pytest.approx(0.6)
    assert snapshot.metrics["windows"]["count"]["long"]["metrics"]["accuracy"]["expected"] == 0.62
    assert not Alert.objects.exclude(status="resolved").filter(rule__code__in=["accuracy", "health_low"]).exists()
    recommendation = recommend_on(nq, version, 200)
    assert recommendation.kelly["health_factor"] == 1.0


def test_a_model_that_stopped_winning_is_scaled_down_alerted_once_acknowledged_and_resolved(nq):
    version = active_version(nq)
    bars = resolved_predictions(nq, version, p=0.7, hit_share=0.3)  # 30% hits against 70% promised
    first = snap(version, bars)
    version.refresh_from_db()
    assert version.health_score <= 60  # accuracy and calibration failing: capped under the full-size floor
    accuracy = Alert.objects.get(rule__code="accuracy", status="open")
    low = Alert.objects.get(rule__code="health_low", status="open")
    assert accuracy.pk in first.opened and "hit rate 30.0% against 70.0% expected" in accuracy.message
    assert low.value == version.health_score

    recommendation = recommend_on(nq, version, 300)
    factor = (version.health_score / 100 - 0.4) / 0.3
    assert recommendation.kelly["health_factor"] == pytest.approx(factor)
    assert any("under the full-size floor 70" in reason and "accuracy failing" in reason
               for reason in recommendation.reasons)

    second = snap(version, bars)
    assert not second.opened  # one open alert per cause
    assert Alert.objects.filter(rule__code="accuracy").count() == 1
    assert Alert.objects.get(pk=accuracy.pk).times_seen == 2

    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(alert_id=accuracy.pk, user=user_with("viewer"))
    assert Alert.objects.get(pk=accuracy.pk).status == "open"
    operator = user_with("operator", "monitoring.acknowledge_alert")
    services.alert_acknowledge(alert_id=accuracy.pk, user=operator, note="looking at it")
    acknowledged = Alert.objects.get(pk=accuracy.pk)
    assert (acknowledged.status, acknowledged.acknowledged_by, acknowledged.acknowledgement_note) == \
        ("acknowledged", operator, "looking at it")

    # The model wins again as promised: the cause clears and the alert resolves, acknowledged or not.
    Prediction.objects.filter(version=version).update(outcome_long="take_profit")
    Prediction.objects.filter(version=version, bar__timestamp__gte=bars[84].timestamp).update(outcome_long="stop")
    third = snap(version, bars)
    assert accuracy.pk in third.resolved
    resolved = Alert.objects.get(pk=accuracy.pk)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert resolved.acknowledged_by == operator  # the audit stays


def test_alerts_are_logged_once_committed_and_not_when_the_snapshots_transaction_rolls_back(
        nq, caplog, django_capture_on_commit_callbacks):
    version = active_version(nq)
    bars = resolved_predictions(nq, version, p=0.7, hit_share=0.3)  # fires the accuracy alert

    with caplog.at_level("WARNING", logger="monitoring.services"), django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            assert snap(version, bars).opened
            raise RuntimeError("the transaction around the snapshot fails")
    assert not Alert.objects.exists()
    assert "alert opened" not in caplog.text

    with caplog.at_level("WARNING", logger="monitoring.services"), django_capture_on_commit_callbacks(execute=True):
        snap(version, bars)
    assert f"alert opened [warning] accuracy:{nq.symbol} 1m" in caplog.text


def test_a_version_without_an_edge_is_not_called_healthy_nor_sized(nq):
    version = active_version(nq, has_edge=False)
    bars = resolved_predictions(nq, version)
    snap(version, bars)
    version.refresh_from_db()
    assert version.health_score <= 30
    assert Alert.objects.filter(rule__code="no_edge", status="open").exists()
    assert Alert.objects.filter(rule__code="health_critical", status="open").exists()
    recommendation = recommend_on(nq, version, 400)
    assert recommendation.state == Recommendation.State.BLOCKED and recommendation.contracts == 0
    assert any("blocking floor" in reason for reason in recommendation.reasons)
    assert any(c["name"] == "model_health" and not c["passed"] for c in recommendation.risk["checks"])


def test_the_degradation_hook_starts_one_retraining_at_a_time_and_one_per_cooldown(nq):
    AlertRule.objects.filter(code="health_critical").update(queue_retraining=True)
    RetrainingPolicy.objects.create(instrument=nq, timeframe="1m", cooldown_minutes=60, min_new_bars=100)
    version = active_version(nq, has_edge=False)
    ModelVersion.objects.filter(pk=version.pk).update(data_end=bar_at(nq, 0).timestamp)
    bars = resolved_predictions(nq, version, start=1)
    snap(version, bars)
    [first] = Retraining.objects.all()
    assert (first.trigger, first.requested_by, first.status, first.champion) == (
        "degradation", "monitoring", "queued", version)
    alert = Alert.objects.get(rule__code="health_critical")
    assert f"alert health_critical #{alert.pk}" in first.reason
    # The alert resolves and opens again while that one is in flight: recorded, not started twice.
    Alert.objects.filter(rule__code="health_critical").update(status="resolved")
    snap(version, bars)
    second = Retraining.objects.order_by("-id").first()
    assert (second.status, second.note) == ("skipped", f"retraining #{first.pk} is still queued")
    # Once it ended, a third opening within the cooldown is skipped for the cooldown.
    Retraining.objects.filter(pk=first.pk).update(status="kept")
    Alert.objects.filter(rule__code="health_critical").update(status="resolved")
    snap(version, bars)
    third = Retraining.objects.order_by("-id").first()
    assert third.status == "skipped" and "within the cooldown of 60 min" in third.note
    assert Retraining.objects.exclude(status="skipped").count() == 1


def shocked_bars(nq, *, calm, shocked, seed=0):
    """A calm random walk then a stretch four times as volatile; stored as bars of the market."""
    rng = np.random.default_rng(seed)
    sigma = np.r_[np.full(calm, 2.0), np.full(shocked, 8.0)]
    close = 18000 + np.cumsum(rng.normal(0, sigma))
    spread = np.abs(rng.normal(0, sigma)) + 0.25
    stamps = pd.date_range(SERIES_ORIGIN, periods=calm + shocked, freq="1min")
    frame = pd.DataFrame({"timestamp": stamps, "open": np.r_[close[0], close[:-1]], "close": close,
                          "volume": rng.integers(50, 150, calm + shocked).astype(float)})
    frame["high"] = frame[["open", "close"]].max(axis=1) + spread
    frame["low"] = frame[["open", "close"]].min(axis=1) - spread
    Bar.objects.bulk_create([Bar(instrument=nq, timeframe="1m", timestamp=r.timestamp.to_pydatetime(),
                                 open=Decimal(f"{r.open:.2f}"), high=Decimal(f"{r.high:.2f}"),
                                 low=Decimal(f"{r.low:.2f}"), close=Decimal(f"{r.close:.2f}"),
                                 volume=Decimal(int(r.volume))) for r in frame.itertuples()])
    return frame


def test_a_volatility_shock_drives_drift_up_and_the_health_down(nq):
    frame = shocked_bars(nq, calm=1500, shocked=1380)
    features = compute_features(frame.iloc[:1500].reset_index(drop=True))
    reference = {"features": {name: reference_bins(features[name].to_numpy()[100:]) for name in FEATURE_NAMES}}
    version = active_version(nq, drift_reference=reference)
    ModelVersion.objects.filter(pk=version.pk).update(data_end=frame["timestamp"].iloc[1499].to_pydatetime())
    last = Bar.objects.filter(instrument=nq).order_by("-timestamp").first()
    result = services.snapshot_take(version=ModelVersion.objects.get(pk=version.pk),
                                    now=last.timestamp + ONE_MINUTE + timedelta(seconds=5))
    drift = result.snapshot.drift
    assert drift["live_bars"] == 1380
    assert drift["features"]["atr_pct"]["band"] == "significant"
    assert drift["features"]["rvol_20"]["psi"] > 1.0
    assert "tod_sin" not in drift["features"]  # calendar features are not judged
    component = next(c for c in result.snapshot.health_components if c["name"] == "drift")
    assert component["status"] == "failing"
    assert result.snapshot.health_score <= 60
    alert = Alert.objects.get(rule__code="drift", status="open")
    assert "atr_pct" in alert.message or "rvol" in alert.message


def test_a_calm_live_window_is_not_called_drifted(nq):
    frame = shocked_bars(nq, calm=1500 + 1380, shocked=0, seed=1)
    features = compute_features(frame.iloc[:1500].reset_index(drop=True))
    reference = {"features": {name: reference_bins(features[name].to_numpy()[100:]) for name in FEATURE_NAMES}}
    version = active_version(nq, drift_reference=reference)
    ModelVersion.objects.filter(pk=version.pk).update(data_end=frame["timestamp"].iloc[1499].to_pydatetime())
    last = Bar.objects.filter(instrument=nq).order_by("-timestamp").first()
    result = services.snapshot_take(version=ModelVersion.objects.get(pk=version.pk),
                                    now=last.timestamp + ONE_MINUTE + timedelta(seconds=5))
    component = next(c for c in result.snapshot.health_components if c["name"] == "drift")
    assert component["status"] in ("healthy", "degraded") and component["score"] >= 0.75, component


def test_the_monitor_command_stores_and_prints_a_snapshot(nq, capsys):
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    version = active_version(nq)
    resolved_predictions(nq, version, count=60)
    call_command("monitor", "--symbol", "NQ", "--timeframe", "1m", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == version.pk and 0 <= report["health_score"] <= 100
    assert len(report["components"]) == 7 and report["metrics"]["windows"]["count"]["chosen"]["n"] == 60
    assert MetricSnapshot.objects.filter(pk=report["snapshot"], trigger="on_demand").exists()
    with pytest.raises(CommandError, match="unknown symbol 'ZZ'"):
        call_command("monitor", "--symbol", "ZZ", "--timeframe", "1m")


def test_member_and_total_latency_percentiles_come_from_the_stored_predictions(nq):
    version = active_version(nq)
    bars = resolved_predictions(nq, version, count=20)
    for i, made in enumerate(Prediction.objects.filter(version=version).order_by("id")):
        Prediction.objects.filter(pk=made.pk).update(
            latency_ms=float(i + 1), members={"members": {}, "member_ms": {"lstm": 0.5 * (i + 1), "xgboost": 0.1}})
    latency = snap(version, bars).snapshot.operations["latency"]
    assert latency["n"] == 20 and latency["p50"] == pytest.approx(10.5)
    assert latency["members"]["lstm"]["p50"] == pytest.approx(5.25)
    assert latency["members"]["xgboost"]["p99"] == pytest.approx(0.1)


def test_a_promoted_version_is_scored_at_once(nq, settings, tmp_path, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from mlcore import registry

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                                          "OPTIONS": {"location": str(tmp_path)}}}
    version = model_version(nq, health_score=None)  # a candidate without an edge, never scored
    import hashlib

    default_storage.save("v/model.bin", ContentFile(b"weights"))
    ModelVersion.objects.filter(pk=version.pk).update(
        artifact_root="v", artifacts={"model.bin": hashlib.sha256(b"weights").hexdigest()})
    with django_capture_on_commit_callbacks(execute=True):
        registry.model_version_promote(version_id=version.pk)
    version.refresh_from_db()
    assert version.health_score is not None and version.health_score <= 30  # no edge: capped
    assert MetricSnapshot.objects.filter(version=version, trigger="promotion").count() == 1


def test_an_alert_hovering_around_its_threshold_stays_open_until_clear_by_the_margin(nq):
    version = active_version(nq)
    bars = resolved_predictions(nq, version, p=0.7, hit_share=0.3)
    snap(version, bars)
    alert = Alert.objects.get(rule__code="accuracy", status="open")
    rule = AlertRule.objects.get(code="accuracy")
    # The same outcomes, a rule threshold moved just under the p-value: not firing any more, but not clear by the
    # margin (5x the threshold) either: the alert stays open.
    p_value = alert.value
    AlertRule.objects.filter(pk=rule.pk).update(threshold=p_value / 2)
    snap(version, bars)
    assert Alert.objects.get(pk=alert.pk).status == "open"
    AlertRule.objects.filter(pk=rule.pk).update(threshold=p_value / 10)
    snap(version, bars)
    assert Alert.objects.get(pk=alert.pk).status == "resolved"
