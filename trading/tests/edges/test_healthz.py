"""/healthz: 200 with each component's state when all is well, 503 naming the component that is down (Redis in
deployment, a queue nobody serves), and back to 200 when it returns."""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from trading import health
from trading.models import WorkerHeartbeat
from trading.tests.redis_server import private_redis  # noqa: F401  (fixture)


def get_health():
    response = Client().get("/healthz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


@pytest.mark.embedded
@pytest.mark.django_db
def test_all_well_is_200_with_each_component(settings):
    status, body = get_health()

    assert (status, body["status"]) == (200, "ok")
    assert body["components"]["database"] == {"status": "ok"}
    if settings.REDIS_URL:
        assert body["components"]["redis"] == {"status": "ok"}
    else:  # embedded: no Redis, and tasks run inline, so no workers to watch
        assert set(body["components"]) == {"database"}
    assert body["stream"]["status"] in ("up", "down")


@pytest.mark.django_db
def test_redis_down_is_503_naming_redis_and_200_once_it_is_back(private_redis):
    assert get_health()[0] == 200

    private_redis.stop()
    status, body = get_health()

    assert (status, body["status"]) == (503, "down")
    assert body["components"]["redis"] == {"status": "down", "error": "ConnectionError"}
    assert body["components"]["database"] == {"status": "ok"}

    private_redis.start()
    status, body = get_health()
    assert (status, body["components"]["redis"]) == (200, {"status": "ok"})


QUEUES = ("trading", "inference", "training")


def beat(queue, seconds_ago):
    WorkerHeartbeat.objects.update_or_create(
        queue=queue, defaults={"hostname": f"worker-{queue}", "seen_at": timezone.now() - timedelta(seconds=seconds_ago)})


@pytest.mark.embedded
@pytest.mark.django_db
def test_workers_every_queue_seen_lately_is_ok(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # as in deployment: workers serve the queues
    settings.CELERY_QUEUES_SERVED = QUEUES
    for queue in QUEUES:
        beat(queue, seconds_ago=3)

    status, body = get_health()

    assert status == 200
    workers = body["components"]["workers"]
    assert workers["status"] == "ok"
    assert set(workers["queues"]) == set(QUEUES)
    assert workers["queues"]["trading"]["hostname"] == "worker-trading"
    assert 2 <= workers["queues"]["trading"]["age_seconds"] < 30


@pytest.mark.embedded
@pytest.mark.django_db
def test_workers_a_queue_not_served_lately_is_503_naming_it(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_QUEUES_SERVED = QUEUES
    beat("trading", seconds_ago=3)
    beat("inference", seconds_ago=health.WORKER_STALE_SECONDS + 60)

    status, body = get_health()

    assert (status, body["status"]) == (503, "down")
    workers = body["components"]["workers"]
    assert workers["status"] == "down"
    assert workers["queues"]["inference"]["status"] == "down"
    assert workers["queues"]["trading"]["status"] == "ok"
    assert workers["queues"]["training"] == {"status": "unknown"}  # never seen: not counted as down


@pytest.mark.embedded
@pytest.mark.django_db
def test_workers_never_seen_are_unknown_not_down(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_QUEUES_SERVED = QUEUES

    status, body = get_health()

    assert status == 200
    assert body["components"]["workers"]["status"] == "unknown"


@pytest.mark.embedded
@pytest.mark.django_db
def test_embedded_mode_watches_no_workers(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    beat("trading", seconds_ago=3600)  # a stale row from some earlier deployment does not matter here

    status, body = get_health()

    assert status == 200
    assert "workers" not in body["components"]


@pytest.mark.embedded
@pytest.mark.django_db
def test_workers_without_a_list_of_queues_reports_those_that_beat(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    if hasattr(settings, "CELERY_QUEUES_SERVED"):
        del settings.CELERY_QUEUES_SERVED
    beat("trading", seconds_ago=3)
    beat("inference", seconds_ago=health.WORKER_STALE_SECONDS + 60)

    status, body = get_health()

    assert status == 503
    assert {q: v["status"] for q, v in body["components"]["workers"]["queues"].items()} == {
        "inference": "down", "trading": "ok"}


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_feed_status_pushed_to_dashboards_names_the_queues_nobody_serves(settings):
    from trading import selectors

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_QUEUES_SERVED = QUEUES
    beat("trading", seconds_ago=3)
    beat("inference", seconds_ago=health.WORKER_STALE_SECONDS + 60)

    assert selectors.feed_status_payload(symbol="NQ", timeframe="1m")["workers"] == {"status": "down",
                                                                                     "down": ["inference"]}
    settings.CELERY_TASK_ALWAYS_EAGER = True  # embedded mode: no workers to report
    assert selectors.feed_status_payload(symbol="NQ", timeframe="1m")["workers"] is None


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(("training_beat_seconds_ago", "ended", "status"), [
    (5, False, "ok"),  # busy training: the training's heartbeat says the worker is alive
    (health.WORKER_STALE_SECONDS + 60, False, "down"),  # the training went silent too: nobody serves the queue
    (5, True, "down"),  # a part that ended says nothing of the worker now
])
def test_a_training_worker_busy_with_a_long_training_is_not_down(settings, training_beat_seconds_ago, ended, status):
    """A training worker (concurrency 1) takes its heartbeat task only after the training in hand: /healthz read
    it as down for the whole of every long training."""
    from mlcore.models import RetrainingHeartbeat, TrainingRun
    from trading.models import Instrument

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_QUEUES_SERVED = QUEUES
    for queue in ("trading", "inference"):
        beat(queue, seconds_ago=3)
    beat("training", seconds_ago=3600)
    now = timezone.now()
    run = TrainingRun.objects.create(instrument=Instrument.objects.get(symbol="NQ"), timeframe="1m", preset="full")
    RetrainingHeartbeat.objects.create(training_run=run, part="run", worker="training@host", pid=1,
                                       started_at=now - timedelta(hours=1),
                                       beat_at=now - timedelta(seconds=training_beat_seconds_ago),
                                       ended_at=now if ended else None)

    code, body = get_health()

    training = body["components"]["workers"]["queues"]["training"]
    assert training["status"] == status
    assert code == (200 if status == "ok" else 503)
    assert ("busy" in training) == (status == "ok")
