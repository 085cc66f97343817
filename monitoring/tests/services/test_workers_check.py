"""The "Worker down" alert (monitoring.services.workers_check, run by beat itself): opened while a watched queue's
heartbeat is older than the rule's threshold, refreshed, resolved once every watched queue answers; a queue never
seen is given the threshold from the first check; its notice goes out on a queue that has a live worker."""
from datetime import timedelta

import pytest
from django.utils import timezone

from minhos_site.celery import app
from monitoring import services
from monitoring.models import Alert, AlertRule, WebhookDelivery
from trading.models import WorkerHeartbeat

THRESHOLD = 30.0

pytestmark = pytest.mark.embedded


@pytest.fixture
def deployment(db, settings):
    """Workers serve the queues (the suite otherwise runs tasks inline: embedded mode has no workers to watch)."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    settings.REDIS_URL = None  # no backlog read: these tests are about the heartbeats
    AlertRule.objects.filter(code="workers").update(threshold=THRESHOLD, enabled=True)
    yield timezone.now()
    app.conf.task_always_eager = previous


def beat(queue, *, age, now):
    WorkerHeartbeat.objects.update_or_create(queue=queue, defaults={"hostname": "h", "seen_at": now - timedelta(
        seconds=age)})


def all_alive(now, **ages):
    for queue in ("trading", "inference", "monitoring"):
        beat(queue, age=ages.get(queue, 2.0), now=now)


def open_alert():
    return Alert.objects.filter(cause="workers").exclude(status=Alert.Status.RESOLVED).first()


def test_every_watched_queue_alive_opens_nothing(deployment):
    now = deployment
    all_alive(now)

    result = services.workers_check(watching_since=now - timedelta(hours=1), now=now)

    assert result.dead == () and result.opened is None
    assert open_alert() is None


def test_a_dead_trading_worker_opens_one_alert_naming_its_queues_and_records_its_notice(deployment, settings):
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    now = deployment
    all_alive(now, trading=31.0, monitoring=45.0)  # one worker served both

    result = services.workers_check(watching_since=now - timedelta(hours=1), now=now)

    alert = open_alert()
    assert result.dead == ("trading", "monitoring") and result.opened == alert.pk
    assert alert.severity == "critical" and alert.instrument is None and alert.value == 45.0
    assert alert.message == ("no live worker on queue(s) trading (last seen 31 s ago), monitoring (last seen 45 s "
                             "ago), over the 30 s limit: bars are not settled; snapshots and alert notices wait")
    assert WebhookDelivery.objects.filter(alert=alert, event="opened").count() == 1

    again = services.workers_check(watching_since=now - timedelta(hours=1), now=now + timedelta(seconds=5))

    assert again.opened is None
    alert.refresh_from_db()
    assert alert.times_seen == 2 and Alert.objects.filter(cause="workers").count() == 1


def test_it_resolves_once_every_watched_queue_answers_again(deployment, settings):
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    now = deployment
    all_alive(now, inference=120.0)
    opened = services.workers_check(watching_since=now - timedelta(hours=1), now=now).opened

    all_alive(now)
    result = services.workers_check(watching_since=now - timedelta(hours=1), now=now)

    assert result.resolved == opened
    alert = Alert.objects.get(pk=opened)
    assert alert.status == Alert.Status.RESOLVED and "answered within 30 s" in alert.resolution
    assert set(WebhookDelivery.objects.filter(alert=alert).values_list("event", flat=True)) == {"opened", "resolved"}


def test_a_queue_never_seen_is_dead_only_once_the_threshold_has_passed_since_the_first_check(deployment):
    now = deployment
    beat("trading", age=1.0, now=now)
    beat("monitoring", age=1.0, now=now)
    WorkerHeartbeat.objects.filter(queue="inference").delete()

    fresh_start = services.workers_check(watching_since=now - timedelta(seconds=10), now=now)
    assert fresh_start.dead == () and open_alert() is None

    later = services.workers_check(watching_since=now - timedelta(seconds=40), now=now)
    assert later.dead == ("inference",)
    assert "inference (never seen)" in open_alert().message


def test_the_training_queue_is_not_watched(deployment):
    """Its worker takes no heartbeat while it trains (hours): that is not a worker down."""
    now = deployment
    all_alive(now)
    beat("training", age=3600.0, now=now)

    assert services.workers_check(watching_since=now - timedelta(hours=1), now=now).dead == ()


def test_a_disabled_rule_or_embedded_mode_checks_nothing(deployment):
    now = deployment
    all_alive(now, trading=500.0)
    AlertRule.objects.filter(code="workers").update(enabled=False)
    assert services.workers_check(watching_since=now - timedelta(hours=1), now=now) is None

    AlertRule.objects.filter(code="workers").update(enabled=True)
    app.conf.task_always_eager = True
    assert services.workers_check(watching_since=now - timedelta(hours=1), now=now) is None
    assert open_alert() is None


def test_the_snapshot_leaves_the_worker_alert_to_the_check(deployment):
    """A snapshot runs on a worker of the monitoring queue (the trading worker's, as the Procfile has it): when that
    worker is dead no snapshot runs, so the rule is not judged there (and a snapshot cannot resolve the check's
    alert with a narrower view of the queues)."""
    from monitoring.domain import health as health_core
    from monitoring.tests.domain.test_health import healthy

    rules = {r.code: r for r in AlertRule.objects.filter(enabled=True)}
    inputs = healthy(workers={"trading": 500.0, "inference": None})
    score = health_core.health_score(inputs)

    codes = [f.code for f in services._findings(rules, score=score, inputs=inputs, market="NQ 1m")]

    assert "workers" not in codes and "workers" in rules
    assert [c.score for c in score.components if c.name == "workers"] == [0.0]  # still in the health score
