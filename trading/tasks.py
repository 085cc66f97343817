"""Celery tasks of the trading app; each loads what it needs and calls one step, service or selector.

Queues (settings.CELERY_TASK_ROUTES): `trading` settles bars and submits orders, `inference` decides (predicts and
sizes) bars, `training` trains. Every task here is idempotent, so it is acknowledged only once done (`acks_late`):
a worker killed mid-task leaves it to be delivered again, and the workflow's sweeper re-drives it sooner.
"""
import socket

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from minhos_site.periodic import skipped_while_database_away

from . import realtime, selectors, workflow
from .brokers import broker_get
from .models import FeedStatus, Order, WorkerHeartbeat

# Retried with backoff when the database is briefly unreachable (a restart, a failover); anything else is a bug or
# a recorded fault and fails at once, visibly.
# Without jitter the 8 tries span 2 minutes (1, 2, 4 ... 30 s): with Celery's default jitter each wait is drawn from
# 0 to that, and a step failed with a traceback 20 s into a database outage. Past that the sweeper re-drives the bar.
_TRANSIENT = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 1, "retry_backoff_max": 30,
              "retry_jitter": False, "max_retries": 8, "acks_late": True}
_PER_BAR_LIMITS = {"soft_time_limit": 60, "time_limit": 90}


@shared_task(name="trading.tasks.workflow_settle", **_TRANSIENT, **_PER_BAR_LIMITS)
def workflow_settle(bar_id: int) -> int:
    return len(workflow.settle(bar_id))


@shared_task(name="trading.tasks.workflow_decide", **_TRANSIENT, **_PER_BAR_LIMITS)
def workflow_decide(bar_id: int) -> int:
    return len(workflow.decide(bar_id))


@shared_task(name="trading.tasks.workflow_sweep", soft_time_limit=30, time_limit=60)
@skipped_while_database_away
def workflow_sweep(idle_seconds: float | None = None, stage: str | None = None) -> int:
    """Beat sends one per stage, to the queue of the step that stage waits for (see settings.CELERY_BEAT_SCHEDULE)."""
    return workflow.sweep(idle_seconds=idle_seconds, stage=stage)


@shared_task(name="trading.tasks.order_submit", **_TRANSIENT, soft_time_limit=30, time_limit=60)
def order_submit(order_id: int) -> None:
    """Hand a committed order to the broker (a second submission of the same order is the broker's no-op)."""
    broker_get().submit(Order.objects.select_related("instrument", "account").get(pk=order_id))


@shared_task(name="trading.tasks.worker_heartbeat", soft_time_limit=10, time_limit=20)
@skipped_while_database_away
def worker_heartbeat(queue: str) -> None:
    """Beat sends one per queue: whoever takes it says the queue is served (the dashboard and /healthz read it)."""
    WorkerHeartbeat.objects.update_or_create(queue=queue, defaults={"hostname": socket.gethostname(),
                                                                    "seen_at": timezone.now()})


@shared_task(name="trading.tasks.feed_status_broadcast", soft_time_limit=10, time_limit=20)
@skipped_while_database_away
def feed_status_broadcast() -> int:
    """Push every feed's status to the dashboards watching it (the strip shows stopped feeds too)."""
    pushed = 0
    for symbol, timeframe in FeedStatus.objects.values_list("instrument__symbol", "timeframe"):
        payload = selectors.feed_status_payload(symbol=symbol, timeframe=timeframe)
        realtime.broadcast(symbol, timeframe, "feed.status", payload)
        pushed += 1
    return pushed


@shared_task(name="trading.tasks.backtest_run", acks_late=True, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)
def backtest_run(run_id: int) -> str:
    """Run a queued backtest (started from the page or the API); a run already claimed is left alone, so a
    redelivered message never replays twice. Progress is written on the run as it goes."""
    from . import backtest
    from .models import BacktestRun

    if not BacktestRun.objects.filter(pk=run_id, status=BacktestRun.Status.QUEUED).exists():
        return "not queued"
    return backtest.backtest_execute(run_id=run_id).status


@shared_task(name="trading.tasks.backtests_abandoned", soft_time_limit=30, time_limit=60)
@skipped_while_database_away
def backtests_abandoned() -> int:
    """Beat: fail the backtests whose worker died (no progress for a while)."""
    from . import backtest

    return backtest.backtests_abandoned_fail()
