"""A retraining whose training worker is killed mid-fit is failed within the heartbeat timeout, with the reason and an
alert, and its market can retrain at once (not six hours later); a retraining task delivered twice trains once. Real
Celery training workers on a private Redis; the watchdog runs in the test process on a simulated clock."""
from datetime import timedelta

import pytest
from django.db.models import F

from mlcore import retraining
from mlcore.models import ModelVersion, Retraining, RetrainingHeartbeat, RetrainingPolicy
from monitoring.defaults import RULES
from monitoring.models import Alert, AlertRule, WebhookDelivery
from trading.tests.processes import ProcessStack, process_stack, send  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

TIMEOUT = 90.0
HEARTBEAT_TIMEOUT = 30.0  # the watchdog's, in the test process (its clock is simulated: nothing waits for it)
# The workers: the fast preset for a market without a champion, and a beat every half second.
WORKER_ENV = {"MINHOS_RETRAIN_PRESET": "fast", "MINHOS_TRAINING_HEARTBEAT_SECONDS": "0.5",
              "MINHOS_TRAINING_HEARTBEAT_TIMEOUT": "120"}


def with_env(stack: ProcessStack, **extra: str) -> ProcessStack:
    base = stack.env
    stack.env = lambda: {**base(), **WORKER_ENV, **extra}
    return stack


@pytest.fixture
def market(nq, stored_bars, settings):
    """NQ 1m: 1,500 bars, no model yet; a policy whose retraining trains on ~1,270 bars and scores 200."""
    settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/minhos-hook"  # recorded, never delivered: no worker
    RetrainingPolicy.objects.create(instrument=nq, timeframe="1m", window_bars=1_500, holdout_bars=200,
                                    min_new_bars=100)
    name, severity, threshold, description = RULES["retraining_failed"]
    AlertRule.objects.update_or_create(code="retraining_failed", defaults={
        "name": name, "severity": severity, "threshold": threshold, "description": description})
    return nq


@pytest.mark.parametrize("distributed", ["1", "0"], ids=["member-fits-on-the-queue", "fitted-by-the-task"])
def test_a_training_worker_killed_mid_fit_fails_its_retraining_with_an_alert_and_the_market_can_retrain(
        process_stack, market, distributed):  # noqa: F811
    stack = with_env(process_stack, MINHOS_TRAINING_DISTRIBUTED=distributed)
    worker = stack.worker(["training"], concurrency=1)
    record = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t",
                                           run="none")
    send(stack, "mlcore.tasks.retrain", record.pk)

    # The heartbeat shows a fit running, written again since it started (its thread beats).
    fitting = RetrainingHeartbeat.objects.filter(retraining=record, ended_at__isnull=True,
                                                 progress__startswith="fitting ", beat_at__gt=F("started_at"))
    part = stack.wait_for(fitting.first, TIMEOUT, "no fit of the retraining beat")
    shown = retraining.retraining_payload(Retraining.objects.get(pk=record.pk))
    assert shown["status"] == "training" and shown["progress"].startswith("fitting ") and shown["heartbeat_at"]
    assert any(p["part"] == part.part and p["ended_at"] is None for p in shown["parts"])

    worker.kill()  # SIGKILL, the pool with it: its fit stays unacknowledged in Redis for the visibility timeout
    last = Retraining.objects.get(pk=record.pk).heartbeat_at

    # Within the timeout of the last beat it is still taken for alive; past it, failed.
    assert retraining.retrainings_advance(now=last + timedelta(seconds=HEARTBEAT_TIMEOUT - 1))["abandoned"] == []
    now = last + timedelta(seconds=HEARTBEAT_TIMEOUT + 1)
    assert retraining.retrainings_advance(now=now)["abandoned"] == [record.pk]

    record.refresh_from_db()
    assert record.status == "failed" and record.challenger_id is None
    beat = RetrainingHeartbeat.objects.filter(retraining=record, ended_at__isnull=True).order_by("beat_at").first()
    assert record.error.startswith(f"training worker stopped answering at {beat.beat_at:%H:%M:%S} UTC ({beat.part} "
                                   f"on {beat.worker}, pid {beat.pid}; no heartbeat for "), record.error
    assert f"last progress: {beat.progress}" in record.error
    shown = retraining.retraining_payload(record)
    assert shown["reason"] == record.error and shown["progress"].startswith("fitting ")
    alert = Alert.objects.get(rule__code="retraining_failed", status="open")
    assert f"retraining #{record.pk}" in alert.message and "stopped answering" in alert.message
    assert WebhookDelivery.objects.filter(alert=alert, event="opened").exists()
    assert not ModelVersion.objects.exists()

    # The market is not blocked: the next retraining starts.
    again = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="schedule", requested_by="schedule",
                                          run="none")
    assert again.status == "queued", again.note


def test_a_retraining_task_delivered_twice_trains_once_and_a_fit_delivered_after_the_end_does_nothing(
        process_stack, market):  # noqa: F811
    stack = with_env(process_stack, MINHOS_TRAINING_DISTRIBUTED="1")
    worker = stack.worker(["training"], concurrency=1)
    record = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t",
                                           run="none")
    # The same task twice, as Redis delivers it again after the visibility timeout or a lost worker: the second
    # runs after the first dispatched the member fits, before they run.
    send(stack, "mlcore.tasks.retrain", record.pk)
    send(stack, "mlcore.tasks.retrain", record.pk)

    def decided():
        row = Retraining.objects.get(pk=record.pk)
        return row if row.status not in Retraining.IN_FLIGHT else None

    done = stack.wait_for(decided, TIMEOUT, lambda: f"the retraining did not end: {Retraining.objects.get(pk=record.pk)}")
    assert done.status != "failed", done.error
    log = worker.log_text()
    assert log.count("member fits dispatched") == 1, "the member fits were dispatched more than once"
    assert "not started again (a redelivered task): its member fits were dispatched" in log
    fits = sum(1 for line in log.splitlines() if "fit_member_unit[" in line and " succeeded in " in line)
    units = RetrainingHeartbeat.objects.filter(retraining=record, part__startswith="fit ")
    assert fits == units.count(), f"{fits} fits for {units.count()} units"

    # The whole task and one of its fits delivered again once it ended: nothing trains, nothing is registered.
    unit = units.first().part.removeprefix("fit ")
    send(stack, "mlcore.tasks.fit_member_unit", done.plan_key, unit, record.pk)
    send(stack, "mlcore.tasks.retrain", record.pk)
    def ran(text: str) -> int:
        return sum(1 for line in worker.log_text().splitlines() if text in line and " succeeded in " in line)

    stack.wait_for(lambda: ran("mlcore.tasks.retrain[") == 3 and ran("fit_member_unit[") == fits + 1, TIMEOUT,
                   "the redelivered tasks did not run")
    assert f"member fit {unit} of plan {done.plan_key} not run: retraining #{record.pk} is {done.status}" in (
        worker.log_text())
    assert ModelVersion.objects.count() == 1 and ModelVersion.objects.get().pk == done.challenger_id
    after = Retraining.objects.get(pk=record.pk)
    assert (after.status, after.decided_at, after.challenger_id, after.error) == (
        done.status, done.decided_at, done.challenger_id, done.error)
