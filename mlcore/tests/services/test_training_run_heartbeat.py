"""The watchdog over training runs (`manage.py train`, `train_version`): a run whose running part is silent past
MINHOS_TRAINING_HEARTBEAT_TIMEOUT is failed with the reason, shown in the admin, and the market can train again; a
delivery of a run another process trains with a live heartbeat does nothing; a model that arrives after its run was
failed registers nothing. (The killed worker itself, with real processes: mlcore/tests/pipeline/
test_killed_training_run.py.)"""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mlcore import retraining, services
from mlcore.models import ModelVersion, RetrainingHeartbeat, TrainingRun
from monitoring.defaults import RULES
from monitoring.models import Alert, AlertRule, WebhookDelivery

TIMEOUT = 180.0


@pytest.fixture
def market(nq, settings):
    settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT = TIMEOUT
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/minhos-hook"  # recorded, never delivered here
    name, severity, threshold, description = RULES["training_failed"]
    AlertRule.objects.update_or_create(code="training_failed", defaults={
        "name": name, "severity": severity, "threshold": threshold, "description": description})
    return nq


def running(*, beat_ago: float, part: str = "fit long/shipped/lstm") -> TrainingRun:
    """A run taken up by a process whose part last beat `beat_ago` seconds ago and never ended."""
    run = services.training_run_record(symbol="NQ", timeframe="1m", preset="fast")
    beat = timezone.now() - timedelta(seconds=beat_ago)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", started_at=beat, heartbeat_at=beat,
                                                 progress=f"fitting {part.removeprefix('fit ')}")
    RetrainingHeartbeat.objects.create(training_run=run, part=part, worker="training@box", pid=4242,
                                       started_at=beat, beat_at=beat, progress=f"fitting {part.removeprefix('fit ')}")
    return TrainingRun.objects.get(pk=run.pk)


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_silent_run_is_failed_with_the_reason_and_an_alert_shown_in_the_admin_and_the_market_trains_again(
        market, admin_client, django_capture_on_commit_callbacks):
    run = running(beat_ago=TIMEOUT - 5)
    assert retraining.retrainings_advance()["training_runs_failed"] == []
    with pytest.raises(services.TrainingAlreadyRunning, match="last heartbeat .*: fitting long/shipped/lstm"):
        services.training_run_record(symbol="NQ", timeframe="1m", preset="fast")

    with django_capture_on_commit_callbacks(execute=True):
        assert retraining.retrainings_advance(now=timezone.now() + timedelta(seconds=10))[
            "training_runs_failed"] == [run.pk]
    alert = Alert.objects.get(rule__code="training_failed", status="open")
    assert alert.cause == "training_failed:NQ 1m" and f"training run #{run.pk}" in alert.message
    assert "stopped answering" in alert.message
    assert WebhookDelivery.objects.filter(alert=alert, event="opened").exists()
    run.refresh_from_db()
    assert (run.status, run.version_id) == ("failed", None) and run.finished_at
    assert run.error.startswith(f"training worker stopped answering at {run.heartbeat_at:%H:%M:%S} UTC (fit "
                                "long/shipped/lstm on training@box, pid 4242; no heartbeat for ")
    assert run.error.endswith("last progress: fitting long/shipped/lstm; nothing was registered or promoted")
    listing = admin_client.get(reverse("admin:mlcore_trainingrun_changelist")).content.decode()
    assert "training worker stopped answering" in listing
    page = admin_client.get(reverse("admin:mlcore_trainingrun_change", args=[run.pk])).content.decode()
    assert "training@box" in page and "fit long/shipped/lstm" in page
    assert services.training_run_record(symbol="NQ", timeframe="1m", preset="fast").status == "queued"


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_new_training_fails_the_silent_run_itself_without_waiting_for_the_periodic_job(market):
    run = running(beat_ago=TIMEOUT + 5)
    assert services.training_run_record(symbol="NQ", timeframe="1m", preset="fast").status == "queued"
    assert TrainingRun.objects.get(pk=run.pk).status == "failed"


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_delivery_of_a_run_another_process_trains_with_a_live_heartbeat_does_nothing(market, caplog):
    run = running(beat_ago=5)
    assert services.training_run_execute(run_id=run.pk) is None
    assert TrainingRun.objects.get(pk=run.pk).status == "running"
    assert f"training run #{run.pk}: not trained again (a redelivered task): another process trains it, last " \
           "heartbeat " in caplog.text
    assert services.training_run_execute(run_id=run.pk + 1000) is None
    assert "a task for a run that does not exist" in caplog.text


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.usefixtures("storage")
def test_a_model_that_arrives_after_its_run_was_failed_registers_nothing(market, trained):
    from mlcore.training import TrainConfig

    run = running(beat_ago=TIMEOUT + 5)
    assert services.training_runs_silent_fail() == [run.pk]
    with pytest.raises(services.TrainingError, match=f"training run #{run.pk} ended before its model was registered"):
        services.training_run_register(run_id=run.pk, config=TrainConfig(preset="fast"), trained=trained)
    assert not ModelVersion.objects.exists()
    run.refresh_from_db()
    assert run.status == "failed" and "the trained model arrived after all: discarded" in run.error
