"""A training run (`train_version`, `train_version_distributed`) whose training worker is killed mid-fit is failed by
the periodic watchdog within the heartbeat timeout, with the reason on the run, and its market can train at once (not
six hours later); a `train_version` task delivered twice trains once and registers one version. Real Celery training
workers on a private Redis; the watchdog runs in the test process on a simulated clock."""
from datetime import timedelta

import pytest
from django.db.models import F

from mlcore import retraining, services
from mlcore.models import ModelVersion, RetrainingHeartbeat, TrainingRun
from trading.tests.processes import ProcessStack, process_stack, send  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

TIMEOUT = 90.0
HEARTBEAT_TIMEOUT = 30.0  # the watchdog's, in the test process (its clock is simulated: nothing waits for it)
WORKER_ENV = {"MINHOS_TRAINING_HEARTBEAT_SECONDS": "0.5", "MINHOS_TRAINING_HEARTBEAT_TIMEOUT": "120"}


def with_env(stack: ProcessStack) -> ProcessStack:
    base = stack.env
    stack.env = lambda: {**base(), **WORKER_ENV}
    return stack


@pytest.fixture
def market(nq, stored_bars, settings):
    settings.MINHOS_TRAINING_HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT
    return nq


@pytest.mark.parametrize("task", ["mlcore.tasks.train_version", "mlcore.tasks.train_version_distributed"],
                         ids=["fitted-by-the-task", "member-fits-on-the-queue"])
def test_a_training_worker_killed_mid_fit_fails_its_run_with_the_reason_and_the_market_can_train(
        process_stack, market, task):  # noqa: F811
    stack = with_env(process_stack)
    worker = stack.worker(["training"], concurrency=1)
    run = services.training_run_record(symbol="NQ", timeframe="1m", preset="fast", seed=0)
    send(stack, task, run.pk)

    # A fit of the run beats while it runs (written again since it started: its thread beats).
    fitting = RetrainingHeartbeat.objects.filter(training_run=run, ended_at__isnull=True,
                                                 progress__startswith="fitting ", beat_at__gt=F("started_at"))
    stack.wait_for(fitting.first, TIMEOUT, "no fit of the training run beat")
    shown = TrainingRun.objects.get(pk=run.pk)
    assert shown.status == "running" and shown.heartbeat_at and shown.progress  # what it does now, for the admin

    worker.kill()  # SIGKILL, the pool with it: the task stays unacknowledged in Redis for the visibility timeout
    last = TrainingRun.objects.get(pk=run.pk).heartbeat_at

    # Within the timeout of the last beat it is still taken for alive, and it blocks the market; past it, failed.
    assert retraining.retrainings_advance(now=last + timedelta(seconds=HEARTBEAT_TIMEOUT - 1))[
        "training_runs_failed"] == []
    with pytest.raises(services.TrainingAlreadyRunning, match=f"training run #{run.pk} running, last heartbeat"):
        services.training_run_record(symbol="NQ", timeframe="1m", preset="fast")
    now = last + timedelta(seconds=HEARTBEAT_TIMEOUT + 1)
    assert retraining.retrainings_advance(now=now)["training_runs_failed"] == [run.pk]

    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at and run.version_id is None
    beat = RetrainingHeartbeat.objects.filter(training_run=run, ended_at__isnull=True).order_by("beat_at").first()
    assert run.error.startswith(f"training worker stopped answering at {beat.beat_at:%H:%M:%S} UTC ({beat.part} on "
                                f"{beat.worker}, pid {beat.pid}; no heartbeat for "), run.error
    assert f"last progress: {beat.progress}" in run.error and run.error.endswith("nothing was registered or promoted")
    assert not ModelVersion.objects.exists()

    # The market is not blocked: the next training is recorded (before: "already running" for 6 h).
    again = services.training_run_record(symbol="NQ", timeframe="1m", preset="fast")
    assert again.status == "queued"

    # The killed task, delivered again by Redis hours later, trains nothing and says why.
    TrainingRun.objects.filter(pk=again.pk).delete()
    worker = stack.worker(["training"], concurrency=1)
    send(stack, task, run.pk)
    stack.wait_for(lambda: "not trained again (a redelivered task): it failed: training worker stopped answering"
                   in worker.log_text(), TIMEOUT, "the redelivered task did not say why it did nothing")
    assert not ModelVersion.objects.exists() and TrainingRun.objects.get(pk=run.pk).status == "failed"


def test_a_train_version_task_delivered_twice_trains_once_and_registers_one_version(
        process_stack, market):  # noqa: F811
    stack = with_env(process_stack)
    worker = stack.worker(["training"], concurrency=1)
    run = services.training_run_record(symbol="NQ", timeframe="1m", preset="fast", seed=0)
    # The same task twice, as Redis delivers it again after the visibility timeout or a worker lost between the end
    # of the training and its acknowledgement: the second comes once the first has finished.
    send(stack, "mlcore.tasks.train_version", run.pk)
    send(stack, "mlcore.tasks.train_version", run.pk)

    def ran() -> int:
        return sum(1 for line in worker.log_text().splitlines()
                   if "mlcore.tasks.train_version[" in line and " succeeded in " in line)

    stack.wait_for(lambda: ran() == 2, TIMEOUT, "the two deliveries did not both run")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [run.version_id]
    assert f"training run #{run.pk}: not trained again (a redelivered task): it succeeded (v{run.version_id})" in (
        worker.log_text())
    assert RetrainingHeartbeat.objects.filter(training_run=run, part="run").count() == 1
