"""/readyz: 200 when the deployment can decide bars (database, Redis when configured, an active model with registered
artifacts for every active market with bars, bars fresh while the market is open), 503 naming the check that fails."""
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from mlcore.models import ModelVersion
from trading import health, readiness, selectors
from trading.models import BarWorkflow, FeedStatus, WorkerHeartbeat
from trading.tests.decisions import model_version
from trading.tests.factories import BarFactory, InstrumentFactory
from trading.tests.processes import process_stack  # noqa: F401  (fixture)
from trading.tests.redis_server import private_redis  # noqa: F401  (fixture)

# A Tuesday at noon in New York (the market is open) and a Saturday (closed all day).
TUESDAY_NOON = datetime(2024, 1, 9, 17, 0, tzinfo=UTC)
SATURDAY = datetime(2024, 1, 13, 17, 0, tzinfo=UTC)


def get_ready():
    response = Client().get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def active_version(instrument, *, timeframe="1m", artifacts=None):
    version = model_version(instrument, timeframe=timeframe)
    version.status = ModelVersion.Status.ACTIVE
    version.artifacts = {"members/lightgbm.txt": "ab" * 32} if artifacts is None else artifacts
    version.save(update_fields=["status", "artifacts"])
    return version


def feed_received(instrument, *, at, timeframe="1m"):
    FeedStatus.objects.update_or_create(instrument=instrument, timeframe=timeframe, defaults={
        "source": "synthetic", "running": True, "heartbeat_at": at, "last_bar_received_at": at})


@pytest.fixture
def nq(db):
    return InstrumentFactory(symbol="NQ")


def heartbeat(queue, *, age_seconds=0.0):
    WorkerHeartbeat.objects.update_or_create(queue=queue, defaults={
        "hostname": "test", "seen_at": timezone.now() - timedelta(seconds=age_seconds)})


@pytest.fixture(autouse=True)
def per_bar_workers_alive(request, settings):
    """Deployment mode needs a live worker on each per-bar queue: the tests about the other checks have them."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    request.getfixturevalue("db")
    for queue in readiness.PER_BAR_QUEUES:
        heartbeat(queue)


@pytest.mark.embedded
@pytest.mark.django_db
def test_no_market_with_bars_is_ready_with_each_check_named(settings):
    status, body = get_ready()

    assert (status, body["status"]) == (200, "ready")
    expected = ({"database", "models", "feed"} | ({"redis"} if settings.REDIS_URL else set())
                | ({"workers"} if not settings.CELERY_TASK_ALWAYS_EAGER else set()))
    assert set(body["checks"]) == expected
    assert all(check["ok"] is True and check["reason"] for check in body["checks"].values())
    assert body["checks"]["models"]["reason"] == "no active market has bars yet"


@pytest.mark.embedded
def test_a_market_with_bars_and_no_active_model_is_503_naming_it(nq):
    BarFactory(instrument=nq)
    feed_received(nq, at=timezone.now())
    model_version(nq)  # a candidate only: nothing to predict with

    status, body = get_ready()

    assert (status, body["status"]) == (503, "not ready")
    assert body["checks"]["models"] == {"ok": False, "reason": "NQ 1m: no active model version"}
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["feed"]["ok"] is True


@pytest.mark.embedded
def test_an_active_model_and_fresh_bars_is_200_naming_the_version(nq):
    BarFactory(instrument=nq)
    feed_received(nq, at=timezone.now())
    version = active_version(nq)

    status, body = get_ready()

    assert (status, body["status"]) == (200, "ready")
    assert body["checks"]["models"] == {"ok": True, "reason": f"NQ 1m: version {version.pk}"}


@pytest.mark.embedded
def test_an_active_version_without_registered_artifacts_is_not_ready(nq):
    BarFactory(instrument=nq)
    feed_received(nq, at=timezone.now())
    version = active_version(nq, artifacts={})

    status, body = get_ready()

    assert status == 503
    assert body["checks"]["models"]["reason"] == f"NQ 1m: active version {version.pk} has no registered artifacts"


@pytest.mark.embedded
def test_every_market_with_bars_needs_its_own_model_and_inactive_instruments_do_not_count(nq):
    es = InstrumentFactory(symbol="ES")
    old = InstrumentFactory(symbol="OLD", active=False)
    for instrument in (nq, es, old):
        BarFactory(instrument=instrument)
        feed_received(instrument, at=timezone.now())
    BarFactory(instrument=nq, timeframe="5m")
    feed_received(nq, at=timezone.now(), timeframe="5m")
    active_version(nq)

    status, body = get_ready()

    assert status == 503
    assert body["checks"]["models"]["reason"] == "ES 1m: no active model version; NQ 5m: no active model version"


@pytest.mark.embedded
def test_bars_stale_while_the_market_is_open_fail_the_feed_check(nq):
    BarFactory(instrument=nq)
    active_version(nq)
    feed_received(nq, at=TUESDAY_NOON - timedelta(minutes=10))

    report = readiness.readiness_report(now=TUESDAY_NOON)

    assert not report.ok
    assert report.checks["feed"] == {"ok": False, "reason": "NQ 1m: newest bar 600 s old, over the 240 s limit"}
    assert report.checks["models"]["ok"] is True


@pytest.mark.embedded
def test_bars_within_the_limit_while_open_are_fresh(nq):
    BarFactory(instrument=nq)
    active_version(nq)
    feed_received(nq, at=TUESDAY_NOON - timedelta(seconds=200))

    report = readiness.readiness_report(now=TUESDAY_NOON)

    assert report.ok
    assert report.checks["feed"] == {"ok": True, "reason": "NQ 1m: newest bar 200 s old"}


@pytest.mark.embedded
def test_old_bars_during_market_closure_are_not_stale(nq):
    BarFactory(instrument=nq)
    active_version(nq)
    feed_received(nq, at=SATURDAY - timedelta(hours=20))

    report = readiness.readiness_report(now=SATURDAY)

    assert report.ok
    assert report.checks["feed"] == {"ok": True, "reason": "NQ 1m: market closed"}


@pytest.mark.embedded
def test_without_a_feed_record_the_age_runs_from_the_bar_close(nq):
    bar = BarFactory(instrument=nq, timestamp=TUESDAY_NOON - timedelta(minutes=3))
    active_version(nq)

    fresh = selectors.market_freshness_list(now=TUESDAY_NOON)
    stale = selectors.market_freshness_list(now=TUESDAY_NOON + timedelta(minutes=5))

    assert [(m.symbol, m.timeframe, m.latest_bar_timestamp, m.bar_received_at) for m in fresh] == [
        ("NQ", "1m", bar.timestamp, None)]
    assert fresh[0].age_seconds == 120.0 and not fresh[0].stale
    assert stale[0].age_seconds == 420.0 and stale[0].stale


@pytest.mark.embedded
def test_a_database_that_is_down_fails_every_check_that_needs_it(nq, monkeypatch):
    monkeypatch.setattr(health, "_database", lambda: {"status": "down", "error": "OperationalError"})

    status, body = get_ready()

    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "reason": "down (OperationalError)"}
    assert body["checks"]["models"] == body["checks"]["feed"] == {"ok": False,
                                                                   "reason": "unknown: the database is down"}


@pytest.mark.django_db
def test_redis_down_is_503_naming_redis_and_200_once_it_is_back(private_redis):
    assert get_ready()[0] == 200

    private_redis.stop()
    status, body = get_ready()

    assert (status, body["status"]) == (503, "not ready")
    assert body["checks"]["redis"] == {"ok": False, "reason": "down (ConnectionError)"}
    assert body["checks"]["database"]["ok"] is True

    private_redis.start()
    status, body = get_ready()
    assert (status, body["checks"]["redis"]) == (200, {"ok": True, "reason": "answers"})


@pytest.mark.embedded
@pytest.mark.django_db
def test_readyz_needs_no_login_and_is_not_redirected_to_https(settings):
    assert any(re.match(pattern, "readyz") for pattern in settings.SECURE_REDIRECT_EXEMPT)
    assert Client().get("/readyz").status_code == 200


# ---- the per-bar queues' workers (deployment mode) -----------------------------------------------------------------

@pytest.fixture
def deployment(settings, db):
    """As in deployment (workers serve the queues), with no heartbeat yet: each test writes its own."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.MINHOS_WORKER_STALE_SECONDS = 30.0
    WorkerHeartbeat.objects.all().delete()


def waiting_bar(instrument, *, stage, stored_ago):
    bar = BarFactory(instrument=instrument)
    at = timezone.now() - timedelta(seconds=stored_ago)
    BarWorkflow.objects.create(bar=bar, instrument=instrument, timeframe=bar.timeframe, timestamp=bar.timestamp,
                               stage=stage, stored_at=at, touched_at=at)


def test_a_per_bar_queue_without_a_live_worker_is_503_naming_it_and_the_bars_waiting(nq, deployment):
    heartbeat("trading")
    heartbeat("inference", age_seconds=95)
    waiting_bar(nq, stage=BarWorkflow.Stage.SETTLED, stored_ago=95)
    waiting_bar(nq, stage=BarWorkflow.Stage.SETTLED, stored_ago=30)

    status, body = get_ready()

    assert (status, body["status"]) == (503, "not ready")
    assert body["checks"]["workers"] == {
        "ok": False, "reason": "inference: no live worker (last heartbeat 95 s ago); 2 bar(s) waiting to be decided, "
                               "the oldest stored 95 s ago"}


def test_both_per_bar_queues_down_or_never_seen_are_named(nq, deployment):
    heartbeat("trading", age_seconds=40)
    heartbeat("training")  # not a per-bar queue: does not make the deployment ready
    heartbeat("monitoring")

    report = readiness.readiness_report()

    assert not report.ok
    assert report.checks["workers"] == {
        "ok": False, "reason": "trading: no live worker (last heartbeat 40 s ago); inference: no live worker (no "
                               "heartbeat ever)"}


def test_live_per_bar_workers_are_ready_and_a_backlog_is_said(nq, deployment):
    heartbeat("trading", age_seconds=3)
    heartbeat("inference", age_seconds=29)
    waiting_bar(nq, stage=BarWorkflow.Stage.STORED, stored_ago=12)

    report = readiness.readiness_report()

    assert report.checks["workers"] == {
        "ok": True, "reason": "live worker on trading, inference; 1 bar(s) waiting to be settled, the oldest stored "
                              "12 s ago"}


@pytest.mark.embedded
def test_embedded_mode_has_no_workers_to_wait_for(nq, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True

    report = readiness.readiness_report()

    assert "workers" not in report.checks
    assert report.ok


@pytest.mark.deployment
@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_per_bar_workers_killed_make_it_not_ready_until_they_are_back(process_stack, settings):
    """Real workers and beat on a private redis-server: ready while they run, 503 naming both queues within the
    staleness limit once the trading and inference workers are SIGKILLed, ready again once they are back (before:
    200 throughout)."""
    stack = process_stack
    stack.extra_env["MINHOS_WORKER_HEARTBEAT_SECONDS"] = "1"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.MINHOS_WORKER_STALE_SECONDS = 3.0
    WorkerHeartbeat.objects.all().delete()  # only the real workers' heartbeats count here
    beat = stack.beat(wait=False)
    workers = stack.workers(["trading", "monitoring"], ["inference"], concurrency=1)
    beat.wait_ready()

    stack.wait_for(lambda: get_ready()[0] == 200, 30, lambda: f"never ready: {get_ready()[1]}")

    stack.kill(*workers)
    status, body = stack.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get_ready()), 15,
                                  "still ready with the trading and inference workers dead")
    assert body["checks"]["workers"]["ok"] is False
    # Both named once both heartbeats are past the limit (their last ones were a moment apart).
    status, body = stack.wait_for(
        lambda: (lambda r: r if "inference: no live worker" in r[1]["checks"]["workers"]["reason"] else None)(
            get_ready()), 5, lambda: f"inference not named: {get_ready()[1]}")
    assert status == 503
    assert body["checks"]["workers"]["reason"].startswith("trading: no live worker (last heartbeat ")
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]

    for worker in workers:
        worker.restart()
    stack.wait_for(lambda: get_ready()[0] == 200, 40, lambda: f"not ready again: {get_ready()[1]}")
