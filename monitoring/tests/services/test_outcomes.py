"""Outcome resolution on stored bars: the labels' rule, per side, idempotent, in the settle step, gaps said."""
from datetime import timedelta

import pytest

from mlcore import services as ml_services
from mlcore.models import Prediction
from trading import workflow
from trading.tests.decisions import ONE_MINUTE, bar_at, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def resolve(nq, through_bar):
    return ml_services.prediction_outcomes_resolve(instrument_id=nq.pk, timeframe="1m",
                                                   through=through_bar.timestamp)


def test_a_take_profit_first_resolves_on_the_bar_that_touched_it_and_not_before(nq):
    bars = [bar_at(nq, i) for i in range(3)]  # close 18000, high/low +-1
    bars.append(bar_at(nq, 3, high="18003.5"))  # entry 18000, ATR 2: long take-profit 18003, short stop 18002
    made = prediction(bars[0], model_version(nq), atr=2.0)
    assert resolve(nq, bars[2]).resolved == 0
    assert Prediction.objects.get(pk=made.pk).outcome_status == "pending"
    assert resolve(nq, bars[3]).resolved == 1
    row = Prediction.objects.get(pk=made.pk)
    assert (row.outcome_status, row.outcome_long, row.outcome_short) == ("resolved", "take_profit", "stop")
    assert row.return_long == pytest.approx(3 / 18000) and row.return_short == pytest.approx(-2 / 18000)
    assert row.exit_long_at == bars[3].timestamp == row.exit_short_at
    first_resolution = row.resolved_at
    assert resolve(nq, bars[3]).resolved == 0  # idempotent: nothing pending is left to write
    assert Prediction.objects.get(pk=made.pk).resolved_at == first_resolution


def test_an_untouched_bracket_times_out_after_the_horizon(nq):
    bars = [bar_at(nq, i) for i in range(32)]
    made = prediction(bars[0], model_version(nq), atr=10.0)  # bracket 15 / 10 points: never touched
    assert resolve(nq, bars[29]).pending == 1  # 29 bars after the entry: one short of the horizon
    assert resolve(nq, bars[30]).resolved == 1
    row = Prediction.objects.get(pk=made.pk)
    assert (row.outcome_long, row.outcome_short) == ("timeout", "timeout")
    assert row.exit_long_at == bars[30].timestamp and row.return_long == 0.0


def test_a_hole_in_the_session_before_any_barrier_is_said_not_guessed(nq):
    bars = [bar_at(nq, i) for i in range(3)] + [bar_at(nq, i) for i in range(8, 40)]  # bars 3..7 missing
    made = prediction(bars[1], model_version(nq), atr=10.0)
    result = resolve(nq, bars[-1])
    row = Prediction.objects.get(pk=made.pk)
    assert row.outcome_status == "unresolvable" and result.unresolvable == 1
    assert "5 bar(s) missing" in row.outcome_note and "the path is unknown" in row.outcome_note


def test_a_barrier_touched_before_the_hole_still_resolves(nq):
    bars = [bar_at(nq, 0), bar_at(nq, 1, low="17990")] + [bar_at(nq, i) for i in range(8, 40)]
    made = prediction(bars[0], model_version(nq), atr=2.0)  # long stop 17998 touched on bar 1, short stop too?
    resolve(nq, bars[-1])
    row = Prediction.objects.get(pk=made.pk)
    # Bar 1 (high 18001, low 17990): the long stop (17998) and the short take-profit (17997) are both touched
    # before the hole, so both sides are known.
    assert (row.outcome_status, row.outcome_long, row.outcome_short) == ("resolved", "stop", "take_profit")


def test_a_prediction_without_an_atr_is_unresolvable_with_the_reason(nq):
    bars = [bar_at(nq, i) for i in range(3)]
    made = prediction(bars[0], model_version(nq), atr=None)
    resolve(nq, bars[2])
    row = Prediction.objects.get(pk=made.pk)
    assert row.outcome_status == "unresolvable" and "no usable ATR" in row.outcome_note


def test_the_settle_step_resolves_the_outcomes_its_bar_decides(nq):
    bars = [bar_at(nq, i) for i in range(3)]
    made = prediction(bars[0], model_version(nq), atr=2.0)
    bars.append(bar_at(nq, 3, low="17996.5"))  # long stop (17998) and short take-profit (17997)
    for bar in bars:
        workflow.settle(bar.pk)
    row = Prediction.objects.get(pk=made.pk)
    assert (row.outcome_long, row.outcome_short) == ("stop", "take_profit")


def test_the_weekend_and_the_daily_break_are_not_holes(nq):
    # Friday 16:58 New York, then the Sunday 18:00 open: no bar of the session is missing in between.
    from trading.tests.factories import BarFactory
    from datetime import datetime, timezone
    from decimal import Decimal

    friday = datetime(2024, 1, 5, 21, 58, tzinfo=timezone.utc)  # 16:58 EST
    sunday = datetime(2024, 1, 7, 23, 0, tzinfo=timezone.utc)  # 18:00 EST
    stamps = [friday, friday + ONE_MINUTE] + [sunday + i * ONE_MINUTE for i in range(31)]
    bars = [BarFactory.create(instrument=nq, timeframe="1m", timestamp=t, open=Decimal(18000), high=Decimal(18001),
                              low=Decimal(17999), close=Decimal(18000), volume=Decimal(1)) for t in stamps]
    made = prediction(bars[0], model_version(nq), atr=10.0)
    resolve(nq, bars[-1])
    row = Prediction.objects.get(pk=made.pk)
    assert row.outcome_status == "resolved" and row.outcome_long == "timeout", row.outcome_note
    assert row.exit_long_at == bars[30].timestamp
    assert bars[30].timestamp - bars[0].timestamp > timedelta(days=2)
