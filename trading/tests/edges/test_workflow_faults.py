"""The per-bar workflow through faults, with real processes: a worker killed outright while bars keep coming, and
Redis gone while the feed keeps storing bars. Either way every bar stored meanwhile ends settled and decided exactly
once, in bar order, against the settled position; what was superseded meanwhile expired rather than traded; no
order filled twice; reconcile is clean.
"""
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from trading import services
from trading.models import BarWorkflow, FeedStatus, Recommendation
from trading.tests.processes import (  # noqa: F401  (fixtures)
    SUPERSEDED,
    assert_decided_once,
    assert_limits_held,
    assert_settled_and_decided_in_bar_order,
    assert_sized_against_settled_positions,
    assert_stale_recommendations_expired,
    market,
    process_stack,
    wait_until_every_bar_is_done,
)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

PACE_SECONDS = 0.25


def _assert_the_workflow_came_through(market, rows):
    assert_settled_and_decided_in_bar_order(rows)
    assert_decided_once(market, rows)
    assert_stale_recommendations_expired(market, rows)
    assert_sized_against_settled_positions(market, rows)
    assert_limits_held(market, rows)
    assert services.account_reconcile().clean


def _in_flight() -> list:
    """The bars whose step has started and not finished (settling, or deciding)."""
    return list(BarWorkflow.objects.filter(stage=BarWorkflow.Stage.STORED, settle_started_at__isnull=False)
                | BarWorkflow.objects.filter(stage=BarWorkflow.Stage.SETTLED, decide_started_at__isnull=False))


def _superseded_expired(market, bar_ids) -> list:
    """The recommendations of these bars that are not expired as superseded (expected: none)."""
    return [(r.bar_timestamp.strftime("%H:%M"), r.account.name, r.state, r.reasons[:1])
            for r in Recommendation.objects.filter(bar_id__in=bar_ids).select_related("account")
            if not (r.state == Recommendation.State.EXPIRED and r.reasons and r.reasons[0].startswith(SUPERSEDED))]


def test_workers_killed_mid_step_while_bars_keep_coming_lose_and_repeat_nothing(process_stack, market):
    stack = process_stack
    beat = stack.beat(wait=False)
    workers = stack.workers(["trading"], ["inference"], concurrency=2)
    beat.wait_ready()
    for i in range(8):  # one at a time: the model is loaded and positions open
        market.store(i)
        wait_until_every_bar_is_done(stack, market, expected=i + 1, timeout=60)

    next_bar = 8
    for _ in range(12):  # back to back, so steps queue up; the kill comes while some of them run
        market.store(next_bar)
        next_bar += 1

    def running_or_feed_one_more():
        # A fast or a busy machine may finish the queued steps between two looks: the feed goes on until one is
        # seen running (at most 60 more bars).
        nonlocal next_bar
        flying = _in_flight()
        if not flying and next_bar < 80:
            market.store(next_bar)
            next_bar += 1
        return flying

    for _ in range(3):
        stack.wait_for(running_or_feed_one_more, 60, "no step was seen running")
        stack.kill(*workers)  # the machine dies: both workers, each with its pool, at once
        killed_at = timezone.now()
        interrupted = _in_flight()  # nothing runs any more: what is in flight now was cut off mid-step
        if interrupted:
            break
        # The step seen running ended in the instant before the kill: the machine comes back, and dies again.
        workers = stack.workers(["trading"], ["inference"], concurrency=2)
    assert interrupted, "the kill came between steps, three times"

    down = []
    for _ in range(16):  # the feed goes on while no worker runs (beat keeps queueing sweeps)
        down.append(market.store(next_bar).pk)
        next_bar += 1
        time.sleep(PACE_SECONDS)
    assert not BarWorkflow.objects.filter(bar_id__in=down).exclude(stage=BarWorkflow.Stage.STORED).exists()

    workers = stack.workers(["trading"], ["inference"], concurrency=2)
    for _ in range(16):
        market.store(next_bar)
        next_bar += 1
        time.sleep(PACE_SECONDS)
    rows = wait_until_every_bar_is_done(stack, market, expected=next_bar, timeout=60)

    _assert_the_workflow_came_through(market, rows)
    # Each step the kill cut off ran again, to its end (its bar's steps started more than once each).
    for row in interrupted:
        row.refresh_from_db()
        assert row.attempts > 2, f"bar {row.timestamp:%H:%M} was cut off mid-step, then {row} ({row.attempts})"
    # Every bar stored while no worker ran, but the last, was decided after a later bar had come: expired.
    assert _superseded_expired(market, down[:-1]) == []
    assert all(r.settle_started_at > killed_at for r in rows if r.bar_id in down)
    assert all(worker.alive() for worker in workers)
    assert "Traceback" not in stack.logs("worker"), stack.logs("worker")[-5000:]


FEED_PACE = 0.2
OUTAGE_BARS = 20  # bars the feed must store while Redis is down (about 5 s at its pace)


def test_redis_down_the_feed_keeps_storing_and_every_bar_is_settled_and_decided_once_it_is_back(process_stack,
                                                                                                  market):
    stack = process_stack
    nq = market.instrument
    beat = stack.beat(wait=False)
    workers = stack.workers(["trading"], ["inference"], concurrency=2)
    beat.wait_ready()
    feed = stack.feed("--symbol", "NQ", "--timeframe", "1m", "--source", "synthetic", "--pace", str(FEED_PACE),
                      "--seed", "7")

    def done_count():
        return BarWorkflow.objects.filter(instrument=nq, stage=BarWorkflow.Stage.DONE).count()

    stack.wait_for(lambda: done_count() >= 10, 60, lambda: f"only {done_count()} bars done before the outage")

    status = FeedStatus.objects.get(instrument=nq, timeframe="1m")
    stack.redis.stop()
    down_at = timezone.now()

    def stored_since(moment):
        return BarWorkflow.objects.filter(instrument=nq, stored_at__gt=moment).count()

    stack.wait_for(lambda: stored_since(down_at) >= OUTAGE_BARS, 20,
                   lambda: f"the feed stored {stored_since(down_at)} bars while Redis was down")
    heartbeat_during = FeedStatus.objects.get(pk=status.pk).heartbeat_at
    restart_at = timezone.now()
    stack.redis.start()

    stack.wait_for(lambda: stored_since(restart_at) >= 10, 20, "the feed stored no bars after Redis came back")
    feed.stop()  # SIGTERM: the feed stops cleanly
    # A worker that exits meanwhile is started again, as the supervisor does in production; reported below.
    rows = wait_until_every_bar_is_done(stack, market, expected=BarWorkflow.objects.filter(instrument=nq).count(),
                                        timeout=60, supervise=True)

    # The feed stored bars at its pace while Redis was down, its heartbeat moving: nothing waited on Redis.
    outage = (restart_at - down_at).total_seconds()
    outage_bars = [r.bar_id for r in rows if down_at < r.stored_at <= restart_at]
    assert len(outage_bars) >= 0.6 * outage / FEED_PACE, f"{len(outage_bars)} bars stored in {outage:.1f} s down"
    assert heartbeat_during > down_at + timedelta(seconds=1)
    _assert_the_workflow_came_through(market, rows)
    # Each was settled once Redis was back, and decided once a later bar had come: expired, not offered.
    assert all(r.settle_started_at > restart_at for r in rows if r.bar_id in outage_bars)
    assert _superseded_expired(market, outage_bars[:-1]) == []
    # The outage is in the feed's log a bounded number of times, not once per bar.
    log = stack.logs("feed")
    mentions = [line for line in log.splitlines()
                if re.search(r"redis|broker|channel layer|connection|queue", line, re.IGNORECASE)]
    assert 2 <= len(mentions) <= 6, "\n".join(mentions[:40])
    assert "Traceback" not in log, log[-5000:]
    # The workers rode out the outage (reconnected) rather than exiting. Known to fail in about half the runs until
    # kombu's Redis channel is fixed or patched: a worker whose consumer was waiting in BRPOP with a task not yet
    # acknowledged (acks_late) when Redis went away exits with "Unrecoverable error: AttributeError('NoneType' object
    # has no attribute 'hostname')". Channel.close raises on reading the pending BRPOP, so the close stops half way;
    # Celery's consumer then closes the connection again after collect() cleared its transport, and restoring the
    # unacknowledged message needs that transport (celery consumer.on_connection_error_after_connected, before and
    # whatever worker_cancel_long_running_tasks_on_connection_loss says).
    assert stack.exits == [], "\n".join(stack.exits)
    assert all(worker.alive() for worker in workers)
