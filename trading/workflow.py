"""The per-bar decision workflow: what happens, in order, when a live bar closes. Read it top to bottom.

    0. store    the feed writes the bar and its BarWorkflow row in one transaction (PostgreSQL only: storing a bar
                never waits on Redis); once committed, the bar is pushed to the dashboards and `settle` is queued.
    1. settle   (trading queue; per market, strictly in bar order) the broker fills approved entries at the bar's
                open and runs the brackets of open trades; pending recommendations past their time to live expire;
                positions are marked to the close and equity is snapshot (`services.bar_settle`); the outcomes of
                earlier predictions that this bar decides are resolved (`mlcore.services.
                prediction_outcomes_resolve`, the labels' triple-barrier rule).
    2. decide   (inference queue; per market, in bar order, only bars already settled) the active model predicts the
                bar (`mlcore.services.prediction_create`, which hands back a frozen `PredictionFacts`); the
                prediction is published; Kelly and the risk manager size it for every account against the settled
                positions (`services.recommendations_create`), and the recommendations are published.
    replay      (backtests, `replay_bar`) steps 1 and 2 inline for a bar of a backtest's private market, with the
                version the backtest names and a simulated clock (trading.backtest).
    sweep       (beat every few seconds, and when a worker starts) re-drives every bar whose workflow stalled: a
                lost message, a killed worker or a Redis outage delays a bar, never skips it.

The same code runs in both modes: in embedded mode Celery is eager, so each step runs inline as soon as it is
queued. Every step is idempotent (an order fills once, a bracket runs once per bar, one snapshot per bar, one
prediction per bar and version, one recommendation per prediction and account), and each market's steps are
serialised by a lock, so a duplicate delivery, a retry or a re-drive changes nothing. A step works through every
earlier bar of its market still waiting for it first, oldest first, so bars are settled and decided in bar order
even when their messages arrive out of order.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import Case, F, Max, Value, When
from django.utils import timezone

from minhos_site.database_outage import is_database_unreachable
from mlcore import services as ml_services

from . import realtime, services
from .models import Bar, BarWorkflow, Instrument

logger = logging.getLogger(__name__)
Stage = BarWorkflow.Stage

SETTLE_TASK = "trading.tasks.workflow_settle"
DECIDE_TASK = "trading.tasks.workflow_decide"
# A bar whose decision failed this many times is closed with its error, so one poisoned bar cannot hold up the
# market's later decisions (settlement is different: a later bar is never settled before an earlier one).
DECIDE_ATTEMPTS = 3


# --- 0. store ---------------------------------------------------------------------------------------------------

def bar_stored(bar: Bar) -> None:
    """A live bar's row has committed: show it, and start its workflow."""
    realtime.broadcast(bar.instrument.symbol, bar.timeframe, "bar.closed", {"bar": realtime.bar_message(bar)})
    _dispatch(SETTLE_TASK, bar.pk)


# --- 1. settle --------------------------------------------------------------------------------------------------

def settle(bar_id: int) -> list[int]:
    """Settle `bar_id` and every earlier bar of its market still waiting, oldest first; then queue their decision.

    Returns the bars settled by this call (none when another call got there first). An account whose settlement
    failed is marked and blocked from new entries (see services.bar_settle); the bar still counts as settled, its
    decision still runs (risk blocks that account), and the step raises once the decision is queued.
    """
    target = _workflow_ensure(bar_id)
    settled, failures = [], []
    try:
        _settle_waiting(target, settled, failures)
    finally:
        if settled:
            _dispatch(DECIDE_TASK, settled[-1])  # decides every settled bar up to it, in order
    if failures:
        raise services.SettlementFailed("; ".join(failures))
    return settled


def _settle_waiting(target: BarWorkflow, settled: list[int], failures: list[str], outcomes: bool = True) -> None:
    with _market_lock("settle", target.instrument_id, target.timeframe):
        for pending in _waiting(target, Stage.STORED):
            _touch(pending.pk, settle_started_at=timezone.now())
            failure = ""
            try:
                services.bar_settle(bar_id=pending.pk)
            except services.SettlementFailed as exc:
                failure = f"settle: {exc}"[:2000]
                failures.append(str(exc))
            except Exception as exc:
                BarWorkflow.objects.filter(pk=pending.pk).update(error=f"settle: {type(exc).__name__}: {exc}"[:2000])
                raise  # the bar stays waiting; the task's retry or the sweeper settles it, before any later bar
            services.recommendations_expire(instrument=pending.instrument_id, timeframe=pending.timeframe,
                                            latest_bar_timestamp=pending.timestamp)
            if outcomes:
                failure = _outcomes_resolve(pending, failure)
            now = timezone.now()
            BarWorkflow.objects.filter(pk=pending.pk).update(stage=Stage.SETTLED, settled_at=now, touched_at=now,
                                                             error=failure)
            settled.append(pending.pk)


# --- 2. decide --------------------------------------------------------------------------------------------------

def _outcomes_resolve(pending: BarWorkflow, failure: str) -> str:
    """Resolve the outcomes this bar decides. A failure here never holds up settlement: it is logged and kept on the
    bar, and the predictions stay pending, so the next bar's settlement tries them again."""
    try:
        ml_services.prediction_outcomes_resolve(instrument_id=pending.instrument_id, timeframe=pending.timeframe,
                                                through=pending.timestamp)
    except Exception as exc:
        if is_database_unreachable(exc):
            # Not this step's failure, and nothing can be recorded: the step is retried once the database answers
            # (settling again is idempotent), as settlement does; the outage is told once, not with a traceback here.
            raise
        logger.exception("outcomes of %s %s up to %s could not be resolved", pending.instrument_id,
                         pending.timeframe, pending.timestamp)
        return "; ".join(filter(None, [failure, f"outcomes: {type(exc).__name__}: {exc}"]))[:2000]
    return failure


def decide(bar_id: int, *, replay: Replay | None = None) -> list[int]:
    """Predict, size and publish `bar_id` and every earlier settled bar of its market still waiting, oldest first.

    A bar that is not settled yet is left to its settle step, which queues this one. Returns the bars decided.
    """
    target = _workflow_ensure(bar_id)
    decided = []
    with _market_lock("decide", target.instrument_id, target.timeframe):
        for pending in _waiting(target, Stage.SETTLED):
            _decide_one(pending, replay)
            decided.append(pending.pk)
    return decided


def _decide_one(pending: BarWorkflow, replay: Replay | None = None) -> None:
    _touch(pending.pk, decide_started_at=timezone.now())
    try:
        if replay is None:
            facts = ml_services.prediction_create(bar_id=pending.pk)
        else:
            facts = ml_services.prediction_create(bar_id=pending.pk, version_id=replay.version_id, backtest=True)
            if facts is not None:
                facts = dataclasses.replace(facts, model_health=replay.model_health,
                                            health_reason=replay.health_reason)
        predicted_at = timezone.now()
        recommendations = []
        if facts is not None:
            if replay is None:
                realtime.broadcast(_symbol(pending.instrument_id), pending.timeframe, "prediction.created",
                                   facts.message())
            # Sized against the positions this bar's settlement left; each recommendation is pushed on commit.
            recommendations = services.recommendations_create(facts=facts, now=replay.now if replay else None)
    except Exception as exc:
        failures = pending.decide_failures + 1
        gave_up = failures >= DECIDE_ATTEMPTS
        BarWorkflow.objects.filter(pk=pending.pk).update(
            error=f"decide: {type(exc).__name__}: {exc}"[:2000], touched_at=timezone.now(), decide_failures=failures,
            **({"stage": Stage.DONE, "decided_at": timezone.now()} if gave_up else {}))
        if gave_up:
            logger.error("Bar %s %s %s: the decision failed %d times; given up so later bars are decided",
                         pending.instrument_id, pending.timeframe, pending.timestamp, failures)
        raise
    now = timezone.now()
    BarWorkflow.objects.filter(pk=pending.pk).update(
        stage=Stage.DONE, predicted_at=predicted_at, decided_at=now, touched_at=now,
        # A decision that passes clears its own earlier failure; a settlement fault on the bar stays on record.
        error=Case(When(error__startswith="decide:", then=Value("")), default=F("error"),
                   output_field=BarWorkflow._meta.get_field("error")),
        prediction_id=facts.prediction_id if facts else None, recommendations=len(recommendations))
    if replay is None:
        _shadow_predict(pending)


def _shadow_predict(pending: BarWorkflow) -> None:
    """Challengers in shadow predict the bar after its decision is out (never sized); a failure is logged, never
    the bar's."""
    try:
        ml_services.shadow_predictions_create(bar_id=pending.pk)
    except Exception as exc:
        if is_database_unreachable(exc):  # the outage's, told once by whoever meets it first: no traceback here
            logger.warning("Bar %s %s %s: shadow predictions skipped, the database cannot be reached",
                           pending.instrument_id, pending.timeframe, pending.timestamp)
            return
        logger.exception("Bar %s %s %s: shadow predictions failed", pending.instrument_id, pending.timeframe,
                         pending.timestamp)


_symbols: dict[int, str] = {}


def _symbol(instrument_id: int) -> str:
    """The instrument's symbol (it never changes once bars exist), cached per process: one query less per bar."""
    if instrument_id not in _symbols:
        _symbols[instrument_id] = Instrument.objects.values_list("symbol", flat=True).get(pk=instrument_id)
    return _symbols[instrument_id]


# --- replay (backtests) -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replay:
    """A backtest's bar: the version it was asked to replay (not its private market's active one, which it has
    none of) and the simulated clock, the bar's close, for everything that reads the wall clock (staleness)."""

    version_id: int
    now: datetime
    # The version's health as the run recorded it when it was created: monitoring rescores a version from its live
    # predictions at any time, and a backtest must neither read today's score for past bars nor change mid-run.
    model_health: float | None
    health_reason: str = ""


def replay_bar(bar_id: int, *, replay: Replay, outcomes: bool = True) -> None:
    """Steps 1 and 2 for one stored bar of a backtest's private market, inline and in order: the same settlement
    and decision as a live bar, with nothing queued (the backtest stores the next bar only once this one is done,
    as a feed whose workers keep up would). `outcomes=False` leaves the predictions' outcomes to a later bar's
    call: they are monitoring's record, never an input of a decision, so a backtest resolves them in batches."""
    target = _workflow_ensure(bar_id)
    settled, failures = [], []
    _settle_waiting(target, settled, failures, outcomes=outcomes)
    decide(bar_id, replay=replay)
    if failures:
        raise services.SettlementFailed("; ".join(failures))


# --- sweep ------------------------------------------------------------------------------------------------------

def sweep(*, idle_seconds: float | None = None, stage: str | None = None) -> int:
    """Queue the step each stalled market is waiting for (idle for `idle_seconds`); returns the steps queued.

    One message per market and stage: the step works through every earlier waiting bar itself. `stage` limits the
    sweep to bars waiting at that stage (beat sweeps each stage on its own step's queue, so bars already settled are
    still decided while no trading worker runs).
    """
    idle = settings.MINHOS_WORKFLOW_REDRIVE_SECONDS if idle_seconds is None else idle_seconds
    now = timezone.now()
    waiting = BarWorkflow.objects.exclude(stage=Stage.DONE) if stage is None else BarWorkflow.objects.filter(
        stage=Stage(stage))
    # A backtest drives its own bars (replay_bar); one it left half-done is its failure, not a live bar to re-drive.
    waiting = waiting.filter(instrument__backtest=False)
    stalled = (waiting.filter(touched_at__lte=now - timedelta(seconds=idle))
               .values("instrument_id", "timeframe", "stage").annotate(latest=Max("timestamp")))
    queued = 0
    for group in stalled:
        latest = BarWorkflow.objects.filter(instrument_id=group["instrument_id"], timeframe=group["timeframe"],
                                            stage=group["stage"], timestamp=group["latest"]).first()
        if latest is None:
            continue  # it moved on meanwhile
        logger.info("Re-driving %s %s up to the bar of %s (%s)", group["instrument_id"], group["timeframe"],
                    latest.timestamp, group["stage"])
        BarWorkflow.objects.filter(instrument_id=group["instrument_id"], timeframe=group["timeframe"],
                                   stage=group["stage"]).update(touched_at=now)
        queued += _dispatch(SETTLE_TASK if group["stage"] == Stage.STORED else DECIDE_TASK, latest.pk)
    return queued


# --- plumbing ---------------------------------------------------------------------------------------------------

def _workflow_ensure(bar_id: int) -> BarWorkflow:
    """The bar's workflow row; one is made for a bar stored without it (a replay of stored bars)."""
    workflow = BarWorkflow.objects.filter(pk=bar_id).first()
    if workflow is None:
        bar = Bar.objects.get(pk=bar_id)
        now = timezone.now()
        workflow, _ = BarWorkflow.objects.get_or_create(
            bar=bar, defaults={"instrument_id": bar.instrument_id, "timeframe": bar.timeframe,
                               "timestamp": bar.timestamp, "stored_at": now, "touched_at": now})
    return workflow


def _waiting(target: BarWorkflow, stage: str) -> Iterator[BarWorkflow]:
    """The market's bars at `stage` up to the target's time, oldest first, read again after each one is handled
    (under the market's lock, so what another call finished meanwhile is not handled twice)."""
    while True:
        # The exclusion repeats the queue index's condition, so SQLite uses that partial index too (it needs the
        # condition's own term in the query); without it, each step read every bar of the market.
        pending = (BarWorkflow.objects.filter(instrument_id=target.instrument_id, timeframe=target.timeframe,
                                              stage=stage, timestamp__lte=target.timestamp)
                   .exclude(stage=Stage.DONE).order_by("timestamp").first())
        if pending is None:
            return
        yield pending


def _touch(bar_id: int, **fields) -> None:
    BarWorkflow.objects.filter(pk=bar_id).update(touched_at=timezone.now(), attempts=F("attempts") + 1, **fields)


_process_locks: dict[tuple, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def market_lock_key(step: str, instrument_id: int, timeframe: str) -> int:
    """The PostgreSQL advisory lock key of one market's step (tests hold it to make a backlog on purpose)."""
    return zlib.crc32(f"minhos.workflow:{step}:{instrument_id}:{timeframe}".encode()) - 2**31


@contextmanager
def _market_lock(step: str, instrument_id: int, timeframe: str):
    """One `step` at a time per market: across threads of this process, and on PostgreSQL across processes and
    machines (a session advisory lock, released when the step ends or its connection dies)."""
    key = (step, instrument_id, timeframe)
    with _process_locks_guard:
        local = _process_locks.setdefault(key, threading.Lock())
    with local:
        if connection.vendor != "postgresql":
            yield  # SQLite: one process, and its writes are serialised anyway
            return
        advisory = market_lock_key(step, instrument_id, timeframe)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [advisory])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [advisory])


class _BrokerState:
    """Whether the last queueing worked, so an outage is logged once when it starts and once when it ends."""

    lock = threading.Lock()
    down_since = None
    failed = 0


def _dispatch(task_name: str, bar_id: int) -> int:
    """Queue a step (inline in embedded mode). Never raises: a step that cannot be queued is re-driven by the
    sweeper, and one that fails inline has recorded its error on the bar's row; both are logged."""
    task = current_app.tasks[task_name]
    if current_app.conf.task_always_eager:
        try:
            task.apply(args=(bar_id,), throw=True)
        except Exception:
            logger.exception("Workflow step %s failed for bar #%s", task_name.rsplit(".", 1)[-1], bar_id)
        return 1
    try:
        task.apply_async((bar_id,), retry=False)
    except Exception as exc:
        with _BrokerState.lock:
            _BrokerState.failed += 1
            first = _BrokerState.down_since is None
            if first:
                _BrokerState.down_since = timezone.now()
        if first:
            logger.warning("Cannot queue workflow steps (%s: %s); bars keep being stored and are re-driven when the "
                           "broker is back", type(exc).__name__, exc)
        return 0
    if _BrokerState.down_since is not None:
        with _BrokerState.lock:
            since, failed, _BrokerState.down_since, _BrokerState.failed = _BrokerState.down_since, _BrokerState.failed, None, 0
        if since is not None:
            logger.warning("Queueing workflow steps works again after %s (%d step(s) left to the sweeper)",
                           timezone.now() - since, failed)
    return 1
