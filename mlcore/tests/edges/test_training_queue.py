"""A training never holds up a prediction: it runs on the `training` queue, served by its own worker, while the
`trading` and `inference` workers settle and decide new bars (real Celery workers on a private Redis)."""
import time
from datetime import timedelta

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from mlcore import services
from mlcore.models import Prediction, TrainingRun
from mlcore.registry import model_version_promote
from trading.models import Bar, BarWorkflow
from trading.tests.live import LiveServer, database_url, wait_for_other_database_sessions_to_end
from trading.tests.redis_server import PrivateRedis

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("model_cache")]
WAIT_SECONDS = 120
NEW_BARS = 3


def _wait_for(condition, what: str, processes, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}\n{p.log_tail()}" for name, p in processes.items())
            raise AssertionError(f"waited {timeout:.0f} s for {what}\n{logs}")
        time.sleep(0.1)


@pytest.fixture
def workers(tmp_path, request, storage):
    """One worker per queue (concurrency 1) on a private Redis; returns (celery client app, processes)."""
    if connection.vendor != "postgresql":
        pytest.fail("the worker test needs DATABASE_URL (PostgreSQL); run it through make test")
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    request.addfinalizer(redis_server.stop)
    env = {"DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": redis_server.url(),
           "SECRET_KEY": django_settings.SECRET_KEY, "MINHOS_VAR_DIR": str(tmp_path / "var"),
           "MEDIA_ROOT": str(storage), "MINHOS_INSECURE_HTTP": "1"}
    processes = {}
    for queue in ("trading", "inference", "training"):
        processes[queue] = LiveServer(
            command=[str(django_settings.BASE_DIR / ".venv/bin/celery"), "-A", "minhos_site", "worker", "-Q", queue,
                     "-n", f"{queue}@%h", "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle"],
            env=env, log_path=tmp_path / f"worker-{queue}.log")
    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(lambda: [p.stop() for p in processes.values()])
    client = Celery(broker=redis_server.url())
    request.addfinalizer(client.close)
    return client, processes


def test_predictions_are_made_while_a_training_runs_on_its_own_queue(workers, stored_bars, register, nq):
    client, processes = workers
    model_version_promote(version_id=register().pk)
    run = services.training_run_record(symbol="NQ", timeframe="1m", preset="fast", seed=1)
    client.send_task("mlcore.tasks.train_version", args=(run.pk,), queue="training")
    _wait_for(lambda: TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists(),
              "the training worker to start training", processes)

    # New bars close while the training runs; each one's workflow goes through the other two queues.
    last = Bar.objects.filter(instrument=nq, timeframe="1m").order_by("-timestamp").first()
    new = []
    for i in range(1, NEW_BARS + 1):
        bar = Bar.objects.create(instrument=nq, timeframe="1m", timestamp=last.timestamp + timedelta(minutes=i),
                                 open=last.close, high=last.close + 1, low=last.close - 1, close=last.close,
                                 volume=10)
        now = timezone.now()
        BarWorkflow.objects.create(bar=bar, instrument=nq, timeframe="1m", timestamp=bar.timestamp, stored_at=now,
                                   touched_at=now)
        client.send_task("trading.tasks.workflow_settle", args=(bar.pk,), queue="trading")
        new.append(bar)

    _wait_for(lambda: BarWorkflow.objects.filter(pk__in=[b.pk for b in new], stage="done").count() == NEW_BARS,
              "the new bars to be settled and decided", processes)
    # Every new bar was predicted by the active model, and the training was still running when they were done.
    assert Prediction.objects.filter(bar__in=new).count() == NEW_BARS
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.RUNNING, f"the training ended before the bars were decided: {run}"
    assert all(w.error == "" for w in BarWorkflow.objects.filter(pk__in=[b.pk for b in new]))
