"""The heartbeat of a running retraining and the watchdog over it: a thread beats while a part runs; a part silent past
MINHOS_TRAINING_HEARTBEAT_TIMEOUT fails its retraining with the reason and an alert; a task delivered again never
trains again; a slow worker's late result never overwrites the failure; the API and the page show the heartbeat.
(The thread on its own connection: mlcore/tests/pipeline/test_retraining_heartbeat_thread.py; the killed worker itself,
with real processes: mlcore/tests/pipeline/test_killed_retraining.py.)"""
from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from mlcore import retraining
from mlcore.domain.promotion import Decision
from mlcore.models import ModelVersion, Retraining, RetrainingHeartbeat, RetrainingPolicy
from monitoring.defaults import RULES
from monitoring.models import Alert, AlertRule
from trading.tests.decisions import user_with

TIMEOUT = 180.0


@pytest.fixture
def market(nq, stored_bars, settings):
    """NQ 1m: 1,500 bars, no model yet; a policy whose retraining trains on ~1,270 bars and scores 200."""
    settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT = TIMEOUT
    RetrainingPolicy.objects.create(instrument=nq, timeframe="1m", window_bars=1_500, holdout_bars=200,
                                    min_new_bars=100)
    name, severity, threshold, description = RULES["retraining_failed"]
    AlertRule.objects.update_or_create(code="retraining_failed", defaults={
        "name": name, "severity": severity, "threshold": threshold, "description": description})
    return nq


def training(*, beat_ago: float, part: str = "fit long/shipped/lstm") -> Retraining:
    """A retraining taken up by a process whose part last beat `beat_ago` seconds ago and never ended."""
    record = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t",
                                           run="none")
    beat = timezone.now() - timedelta(seconds=beat_ago)
    Retraining.objects.filter(pk=record.pk).update(status="training", started_at=beat, heartbeat_at=beat,
                                                   progress=f"fitting {part.removeprefix('fit ')}")
    RetrainingHeartbeat.objects.create(retraining=record, part=part, worker="training@box", pid=4242,
                                       started_at=beat, beat_at=beat, progress=f"fitting {part.removeprefix('fit ')}")
    return Retraining.objects.get(pk=record.pk)


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_silent_part_fails_its_retraining_with_the_reason_and_an_alert_and_unblocks_the_market(
        market, django_capture_on_commit_callbacks):
    record = training(beat_ago=TIMEOUT - 5)
    assert retraining.retrainings_advance()["abandoned"] == []  # still within the timeout
    skipped = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="schedule", requested_by="schedule",
                                            run="none")
    assert skipped.status == "skipped" and skipped.note.startswith(
        f"retraining #{record.pk} is still training (last heartbeat {record.heartbeat_at:%H:%M:%S} UTC: fitting ")

    with django_capture_on_commit_callbacks(execute=True):
        assert retraining.retrainings_advance(now=timezone.now() + timedelta(seconds=10))["abandoned"] == [record.pk]
    record.refresh_from_db()
    assert record.status == "failed"
    assert record.error.startswith(f"training worker stopped answering at {record.heartbeat_at:%H:%M:%S} UTC (fit "
                                   "long/shipped/lstm on training@box, pid 4242; no heartbeat for ")
    assert "last progress: fitting long/shipped/lstm" in record.error
    alert = Alert.objects.get(rule__code="retraining_failed", status="open")
    assert f"retraining #{record.pk}" in alert.message and "stopped answering" in alert.message
    # The nightly run is not skipped for it any more.
    again = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="schedule", requested_by="schedule",
                                          run="none")
    assert again.status == "queued", again.note


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_request_finds_the_silent_one_itself_without_waiting_for_the_periodic_job(market):
    record = training(beat_ago=TIMEOUT + 5)
    again = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t", run="none")
    assert again.status == "queued", again.note
    assert Retraining.objects.get(pk=record.pk).status == "failed"


@pytest.mark.django_db
@pytest.mark.usefixtures("storage", "model_cache")
def test_a_task_delivered_again_while_its_retraining_trains_elsewhere_does_not_train(market):
    record = training(beat_ago=1, part="run")
    result = retraining.retraining_run(retraining_id=record.pk, distributed=False)
    assert result.status == "training"
    assert not ModelVersion.objects.exists()
    assert list(RetrainingHeartbeat.objects.filter(retraining=record).values_list("part", flat=True)) == ["run"]
    assert Retraining.objects.get(pk=record.pk).started_at == record.started_at  # not taken over


@pytest.mark.django_db
@pytest.mark.usefixtures("storage", "model_cache")
def test_a_slow_workers_result_after_the_watchdog_failed_it_is_discarded_and_said_on_the_record(market, trained):
    record = training(beat_ago=TIMEOUT + 5)
    assert retraining.retrainings_advance()["abandoned"] == [record.pk]
    failure = Retraining.objects.get(pk=record.pk).error

    # The worker was alive after all: its challenger arrives (the end of `retraining_run` or of the chord's body).
    frame, _window, stretch_start, config = retraining._prepare(record)
    late = retraining.retraining_finish(retraining_id=record.pk, trained=trained, frame=frame,
                                        stretch_start=stretch_start, config=config)
    assert late.status == "failed" and late.challenger_id is None
    assert not ModelVersion.objects.exists()
    record.refresh_from_db()
    assert record.error.startswith(failure + " | later, at ") and "arrived after all: discarded" in record.error
    # Its error, if it had one instead, is added to the reason; never put in its place.
    retraining._fail(record.pk, "TrainingError: the worker's own late error")
    record.refresh_from_db()
    assert record.error.startswith(failure) and record.error.endswith("then: TrainingError: the worker's own late error")


@pytest.mark.django_db
@pytest.mark.usefixtures("storage", "model_cache")
def test_a_decision_reached_after_the_watchdog_failed_the_retraining_is_not_applied(market, register):
    record = training(beat_ago=TIMEOUT + 5)
    challenger = register()
    Retraining.objects.filter(pk=record.pk).update(challenger=challenger, trained_at=timezone.now())
    assert retraining.retrainings_advance()["abandoned"] == [record.pk]
    policy = {**record.policy, "promotion": "automatic"}
    Retraining.objects.filter(pk=record.pk).update(policy=policy)

    result = retraining._apply(record.pk, Decision(promote=True, reason="better on both sides", code="promote"))

    assert result.status == "failed" and result.decision == ""
    assert ModelVersion.objects.get(pk=challenger.pk).status == "candidate"
    assert "arrived after all" in Retraining.objects.get(pk=record.pk).error


@pytest.mark.django_db
@pytest.mark.embedded
def test_the_api_and_the_page_show_the_heartbeat_and_once_failed_why(market, client):
    record = training(beat_ago=20)
    viewer = user_with("viewer")
    client.force_login(viewer)
    detail = client.get(f"/api/retrainings/{record.pk}/").json()
    assert detail["status"] == "training" and detail["progress"] == "fitting long/shipped/lstm"
    assert pd.Timestamp(detail["heartbeat_at"]) == record.heartbeat_at
    assert [(p["part"], p["worker"], p["ended_at"]) for p in detail["parts"]] == [
        ("fit long/shipped/lstm", "training@box", None)]
    page = client.get("/monitoring/?symbol=NQ&timeframe=1m").content.decode()
    assert "Last heartbeat" in page and "fitting long/shipped/lstm" in page

    retraining.retrainings_advance(now=timezone.now() + timedelta(seconds=TIMEOUT))
    detail = client.get(f"/api/retrainings/{record.pk}/").json()
    assert detail["status"] == "failed" and detail["reason"].startswith("training worker stopped answering at ")
    assert detail["parts"] == []
    page = client.get("/monitoring/?symbol=NQ&timeframe=1m").content.decode()
    assert "training worker stopped answering at" in page
