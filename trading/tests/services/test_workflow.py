"""The per-bar workflow's rules, step by step (tasks inline): bar order, durability, failures visible and bounded,
the sweeper. The same rules under real workers and faults: trading/tests/edges/test_workflow_*.py."""
import logging
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from mlcore import selectors as ml_selectors
from trading import services, workflow
from trading.models import BarWorkflow, Recommendation
from trading.tests.decisions import close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
Stage = BarWorkflow.Stage


def stored(bars, *, touched_ago: float = 0.0):
    """Workflow rows for bars stored without their message going anywhere (as if it was lost)."""
    at = timezone.now() - timedelta(seconds=touched_ago)
    return [BarWorkflow.objects.create(bar=b, instrument=b.instrument, timeframe=b.timeframe, timestamp=b.timestamp,
                                       stored_at=at, touched_at=at) for b in bars]


def progress(bars):
    rows = {w.pk: w for w in BarWorkflow.objects.filter(pk__in=[b.pk for b in bars])}
    return [rows[b.pk] for b in bars]


@pytest.fixture
def predicted(monkeypatch, nq):
    """Inference stands in: each bar gets a stored long prediction of a test version (its facts handed back)."""
    version = model_version(nq)
    made = {}

    def predict(bar_id):
        from trading.models import Bar

        made[bar_id] = prediction(Bar.objects.get(pk=bar_id), version)
        return ml_selectors.prediction_facts(prediction_id=made[bar_id].pk)

    monkeypatch.setattr(workflow.ml_services, "prediction_create", predict)
    return made


def test_a_later_bars_message_first_settles_and_decides_every_earlier_bar_first_in_bar_order(nq, predicted,
                                                                                            monkeypatch):
    bars = flat_bars(nq, 4)
    stored(bars)
    monkeypatch.setattr("django.utils.timezone.now", lambda: close_time(bars[-1]))

    assert workflow.settle(bars[-1].pk) == [b.pk for b in bars]

    rows = progress(bars)
    assert [r.stage for r in rows] == [Stage.DONE] * 4
    assert list(predicted) == [b.pk for b in bars]  # predicted oldest first
    # The earlier bars were sized after a newer bar existed: recorded as expired, never offered.
    states = [Recommendation.objects.get(bar=b).state for b in bars]
    assert states == [Recommendation.State.EXPIRED] * 3 + [Recommendation.State.PENDING]
    assert workflow.settle(bars[-1].pk) == [] and workflow.decide(bars[-1].pk) == []  # a duplicate changes nothing
    assert Recommendation.objects.count() == 4


def test_a_bar_that_cannot_be_settled_stays_waiting_and_no_later_bar_is_settled_before_it(nq, monkeypatch):
    bars = flat_bars(nq, 3)
    stored(bars)
    real = services.bar_settle

    def database_away(*, bar_id):
        if bar_id == bars[1].pk:
            raise OperationalError("server closed the connection unexpectedly")
        return real(bar_id=bar_id)

    monkeypatch.setattr(workflow.services, "bar_settle", database_away)
    with pytest.raises(OperationalError):
        workflow.settle(bars[2].pk)

    first, second, third = progress(bars)
    assert (first.stage, second.stage, third.stage) == (Stage.DONE, Stage.STORED, Stage.STORED)
    assert second.error.startswith("settle: OperationalError: server closed the connection")
    monkeypatch.setattr(workflow.services, "bar_settle", real)  # the database is back: the sweeper re-drives
    assert workflow.sweep(idle_seconds=0) >= 1
    assert [r.stage for r in progress(bars)] == [Stage.DONE] * 3
    assert progress(bars)[1].error == ""


def test_a_settlement_fault_marks_the_bar_and_still_decides_it_then_the_step_fails_visibly(nq, monkeypatch):
    bars = flat_bars(nq, 1)
    stored(bars)

    def one_account_failed(*, bar_id):
        raise services.SettlementFailed("account #1: bar NQ 1m ...: ValueError: boom")

    monkeypatch.setattr(workflow.services, "bar_settle", one_account_failed)
    with pytest.raises(services.SettlementFailed):
        workflow.settle(bars[0].pk)

    [row] = progress(bars)
    assert row.stage == Stage.DONE  # decided: risk blocks the marked account, the others trade
    assert row.error.startswith("settle: account #1")


def test_a_decision_that_keeps_failing_is_closed_after_three_tries_so_later_bars_are_decided(nq, monkeypatch, caplog):
    bars = flat_bars(nq, 2)
    stored(bars)

    def broken_model(*, bar_id):
        if bar_id == bars[0].pk:
            raise ValueError("model file unreadable")
        return None

    monkeypatch.setattr(workflow.ml_services, "prediction_create", broken_model)
    with caplog.at_level(logging.ERROR, logger="trading.workflow"):
        workflow.settle(bars[1].pk)  # settles both; the decision queued inline fails, logged with its traceback
        assert "Workflow step workflow_decide failed" in caplog.text
        for _ in range(workflow.DECIDE_ATTEMPTS - 1):
            with pytest.raises(ValueError):
                workflow.decide(bars[1].pk)

    first, second = progress(bars)
    assert (first.stage, first.decide_failures) == (Stage.DONE, workflow.DECIDE_ATTEMPTS)
    assert first.error == "decide: ValueError: model file unreadable" and first.prediction_id is None
    assert "given up so later bars are decided" in caplog.text
    assert second.stage == Stage.SETTLED
    assert workflow.decide(bars[1].pk) == [bars[1].pk]
    assert progress(bars)[1].stage == Stage.DONE


def test_the_sweeper_re_drives_only_idle_bars_and_each_stage_on_its_own(nq, monkeypatch):
    bars = flat_bars(nq, 3)
    idle_stored, recent_stored, _ = stored(bars[:1], touched_ago=60) + stored(bars[1:2]) + [None]
    queued = []
    monkeypatch.setattr(workflow, "_dispatch", lambda task, bar_id: queued.append((task, bar_id)) or 1)

    assert workflow.sweep(stage="settled") == 0  # nothing is waiting to be decided
    assert workflow.sweep() == 1  # the idle one; the one just stored is left to its own message
    assert queued == [(workflow.SETTLE_TASK, idle_stored.pk)]
    BarWorkflow.objects.filter(pk=recent_stored.pk).update(stage=Stage.SETTLED,
                                                           touched_at=timezone.now() - timedelta(minutes=1))
    assert workflow.sweep(stage="settled", idle_seconds=10) == 1
    assert queued[-1] == (workflow.DECIDE_TASK, recent_stored.pk)
    assert workflow.sweep(stage="settled", idle_seconds=10) == 0  # re-driving touched it: not again at once


def test_queueing_with_the_broker_down_never_raises_and_says_so_once_then_once_when_it_is_back(nq, monkeypatch,
                                                                                              caplog):
    from celery import current_app

    monkeypatch.setitem(current_app.conf, "task_always_eager", False)
    task = current_app.tasks[workflow.SETTLE_TASK]
    broker_up = []

    def apply_async(args, retry):
        assert retry is False  # one try: the feed never waits on the broker
        if not broker_up:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(task, "apply_async", apply_async)
    with caplog.at_level(logging.INFO, logger="trading.workflow"):
        assert [workflow._dispatch(workflow.SETTLE_TASK, n) for n in range(5)] == [0] * 5
        broker_up.append(True)
        assert workflow._dispatch(workflow.SETTLE_TASK, 6) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "Cannot queue workflow steps" in messages[0] and "Connection refused" in messages[0]
    assert "works again" in messages[1] and "5 step(s) left to the sweeper" in messages[1]
