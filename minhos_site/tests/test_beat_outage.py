"""Celery beat through a Redis outage, as a real process on a private redis-server: one line when its sends start
failing, a count every MINHOS_BEAT_FAILURE_SUMMARY_SECONDS while they do, one line when they work again; no
traceback per send (before: a chained traceback per failed send, ~200 lines a second; 9,355 lines in 40 s). A worker
beside it stays as quiet, and the outage is not read as that worker dead (beat could not send it its heartbeats)."""
import re

import pytest
from django.utils import timezone

from monitoring.defaults import RULES
from monitoring.models import Alert, AlertRule
from trading.models import WorkerHeartbeat
from trading.tests.processes import process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

SUMMARY_SECONDS = 3
START = "Sending scheduled tasks to the broker failed"
STILL = "Sending scheduled tasks to the broker still failing"
END = "Sending scheduled tasks to the broker works again"
WATCHED = ("trading", "inference", "monitoring")


def workers_rule():
    name, severity, _, description = RULES["workers"]
    AlertRule.objects.update_or_create(code="workers", defaults={
        "name": name, "severity": severity, "threshold": 3.0, "description": description, "enabled": True})


def heartbeats_since(moment) -> bool:
    return WorkerHeartbeat.objects.filter(queue__in=WATCHED, seen_at__gt=moment).count() == len(WATCHED)


def test_a_redis_outage_is_a_start_line_a_count_every_few_seconds_and_an_end_line(process_stack):
    stack = process_stack
    stack.extra_env.update({"MINHOS_BEAT_FAILURE_SUMMARY_SECONDS": str(SUMMARY_SECONDS),
                            # The check waits this long after the outage (a worker reconnects with a growing pause:
                            # 2, 4, 6 s...); the rule's threshold, 3 s, is shorter than the outage.
                            "MINHOS_WORKER_HEARTBEAT_SECONDS": "1", "MINHOS_WORKER_STALE_SECONDS": "15"})
    workers_rule()
    beat = stack.beat(wait=False)
    worker = stack.worker(["trading", "monitoring", "inference"], concurrency=1, wait=False)
    beat.wait_ready()
    worker.wait_ready()
    # Sending before the outage: the 2 s sweeper entries and the 5 s heartbeats.
    stack.wait_for(lambda: beat.log_text().count("Sending due task") >= 3, 30, "beat sent nothing")
    started = timezone.now()
    stack.wait_for(lambda: heartbeats_since(started), 20, "the worker took no heartbeat of each queue")

    worker_before = len(worker.log_text().splitlines())
    stack.redis.stop()
    stack.wait_for(lambda: STILL in beat.log_text() and beat.log_text().count(STILL) >= 2, 30,
                   "beat did not count its failed sends twice while Redis was down")
    worker_during = worker.log_text().splitlines()[worker_before:]
    stack.redis.start()
    back_at = timezone.now()
    stack.wait_for(lambda: END in beat.log_text(), 30, "beat did not say its sends work again")
    sent_after = beat.log_text().count("Sending due task")
    stack.wait_for(lambda: beat.log_text().count("Sending due task") > sent_after, 30, "beat sent nothing after")

    log = beat.log_text()
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if START in line)
    end = next(i for i, line in enumerate(lines) if END in line)
    during = lines[start:end + 1]
    assert "Traceback" not in log, log[-4000:]
    assert "Message Error" not in log
    summaries = [line for line in during if STILL in line]
    # The outage's lines: the start, one summary per SUMMARY_SECONDS and the end (a line or two of Celery's own
    # connection retry are allowed, not one per send).
    assert len(during) <= len(summaries) + 4, "\n".join(during)
    assert re.search(r"failed: \w+(Error|Exception)", lines[start]), lines[start]  # the broker's error, named
    counts = [int(re.search(r"(\d+) failed in all", line).group(1)) for line in summaries]
    assert counts == sorted(counts) and counts[-1] >= 3, summaries
    assert re.search(r"works again after \d+ s \(\d+ failed meanwhile\)", lines[end]), lines[end]

    # A worker (run as the Procfile runs it) rides it out in a few lines too: Celery's reconnect tries, each logged
    # once, at a growing interval. (Its gossip step, which MinhOS does not use, logged a 180-line chained traceback
    # at each outage: the Procfile's workers run without it.)
    assert "Traceback" not in "\n".join(worker_during), "\n".join(worker_during)
    assert len(worker_during) <= 40, "\n".join(worker_during)
    assert any("Cannot connect to redis" in line for line in worker_during)
    # The worker was never down: beat could not send it its heartbeats. No "Worker down" alert, during the outage
    # (longer than the rule's 3 s) nor while the heartbeats come through again after it.
    # (Once every queue's heartbeat is fresh again no later check can open it: none opened before is enough.)
    stack.wait_for(lambda: heartbeats_since(back_at), 20, "no heartbeat after the outage")
    assert not Alert.objects.filter(cause="workers").exists(), list(Alert.objects.values_list("message", flat=True))
