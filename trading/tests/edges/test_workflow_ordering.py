"""The per-bar workflow in order, for real: bars stored one after another as the feed stores them, settled and
decided by a real Celery worker (two pool processes serving `trading` and `inference`) through Redis, with beat's
sweeper re-driving meanwhile, auto-trading on and positions open.

Every bar ends done; each was settled only after every earlier bar was, and decided only after it was settled and
after every earlier bar was decided; each recommendation offered was sized against the position its bar's
settlement left (the position, total, day's P&L and drawdown the risk check and Kelly recorded); one prediction per
bar, one recommendation per prediction and account, no order filled twice, the limits held after every bar, and
reconcile is clean.
"""
import time

import pytest
from django.db import connection

from trading import services, workflow
from trading.models import BarWorkflow
from trading.tests.processes import (  # noqa: F401  (fixtures)
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

BARS = 72
# Stored one at a time, each once the previous one is done: a pool process loads the model, and positions open and
# fill as a fully sequential run would open and fill them (at least three entries filled on this series).
WARM_UP = 12
PACE_SECONDS = 0.25  # then a bar every 0.25 s (about what two cores settle and decide)...
BURST = range(40, 52)  # ...except for these, stored back to back while their decisions are held: a backlog


def test_real_workers_settle_and_decide_every_bar_in_order_against_the_settled_position(process_stack, market):
    stack = process_stack
    beat = stack.beat(wait=False)
    # As the Procfile runs them: one worker per queue, two pool processes each.
    workers = stack.workers(["trading"], ["inference"], concurrency=2)
    beat.wait_ready()
    for i in range(WARM_UP):
        market.store(i)
        wait_until_every_bar_is_done(stack, market, expected=i + 1, timeout=60)

    for i in range(WARM_UP, BURST.start):
        market.store(i)
        time.sleep(PACE_SECONDS)  # the feed's pace between bars, not a wait for an outcome
    # The burst: its bars settle while their decisions wait (the test holds the market's decide lock, as a slow
    # decision would), so a backlog forms however fast the machine is; then the decisions work through it in order.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [workflow.market_lock_key("decide", market.instrument.pk, "1m")])
        try:
            burst = [market.store(i).pk for i in BURST]
            stack.wait_for(lambda: BarWorkflow.objects.filter(pk__in=burst, stage=BarWorkflow.Stage.SETTLED)
                           .count() == len(burst), 60, "the burst's bars were not all settled while decisions waited")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)",
                           [workflow.market_lock_key("decide", market.instrument.pk, "1m")])
    for i in range(BURST.stop, BARS):
        market.store(i)
        time.sleep(PACE_SECONDS)
    rows = wait_until_every_bar_is_done(stack, market, expected=BARS, timeout=60)

    assert_settled_and_decided_in_bar_order(rows)
    assert_decided_once(market, rows)
    backlog = assert_stale_recommendations_expired(market, rows)
    not_flat = assert_sized_against_settled_positions(market, rows)
    assert_limits_held(market, rows)
    assert services.account_reconcile().clean
    # The run exercised what it claims to: trades, sizing against an open position, and a backlog expired.
    filled = market.auto.orders.filter(kind="entry", status="filled").count()
    assert filled >= 3, f"only {filled} entries filled: the run did not trade"
    assert not_flat >= 3, "no recommendation was sized against an open position"
    assert backlog >= 1, "the burst left no backlog to expire"
    assert all(worker.alive() for worker in workers)
    assert "Traceback" not in stack.logs("worker"), stack.logs("worker")[-5000:]
