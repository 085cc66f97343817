"""Celery beat through a Redis outage, as a real process on a private redis-server: one line when its sends start
failing, a count every MINHOS_BEAT_FAILURE_SUMMARY_SECONDS while they do, one line when they work again; no
traceback per send (before: a chained traceback per failed send, ~200 lines a second). A worker beside it stays as quiet."""
import re

import pytest

from trading.tests.processes import process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

SUMMARY_SECONDS = 3
START = "Sending scheduled tasks to the broker failed"
STILL = "Sending scheduled tasks to the broker still failing"
END = "Sending scheduled tasks to the broker works again"


def test_a_redis_outage_is_a_start_line_a_count_every_few_seconds_and_an_end_line(process_stack):
    stack = process_stack
    stack.extra_env["MINHOS_BEAT_FAILURE_SUMMARY_SECONDS"] = str(SUMMARY_SECONDS)
    beat = stack.beat(wait=False)
    worker = stack.worker(["trading", "monitoring"], concurrency=1, wait=False)
    beat.wait_ready()
    worker.wait_ready()
    # Sending before the outage: the 2 s sweeper entries and the 5 s heartbeats.
    stack.wait_for(lambda: beat.log_text().count("Sending due task") >= 3, 30, "beat sent nothing")

    worker_before = len(worker.log_text().splitlines())
    stack.redis.stop()
    stack.wait_for(lambda: STILL in beat.log_text() and beat.log_text().count(STILL) >= 2, 30,
                   "beat did not count its failed sends twice while Redis was down")
    worker_during = worker.log_text().splitlines()[worker_before:]
    stack.redis.start()
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
