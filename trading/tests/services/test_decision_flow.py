"""One decision end to end through the services: prediction -> recommendation -> approve -> fill -> exit -> P&L."""
from decimal import Decimal

import pytest

from trading import services
from trading.models import AuditEvent, Fill, Order, Position, Recommendation
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_a_prediction_becomes_a_pending_recommendation_with_every_factor(nq):
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    assert recommendation.state == Recommendation.State.PENDING
    # f* = 0.7 - 0.3/1.5 = 0.5; x 0.25 = 0.125; confidence factor 0.5 + 0.5 * 0.1/0.4 = 0.625 -> 0.078125
    # risk per contract = 10 points x $20 = $200; 0.078125 x 100,000 / 200 = 39.06 -> capped at 5
    assert recommendation.kelly["full_kelly"] == pytest.approx(0.5)
    assert recommendation.kelly_contracts == 5 and recommendation.contracts == 5
    assert recommendation.stop_distance == Decimal("10.0") and recommendation.take_profit_distance == Decimal("15.00")
    assert {c["name"] for c in recommendation.risk["checks"]} >= {"kill_switch", "min_confidence"}


def test_approve_fills_at_the_next_bar_open_and_the_bracket_takes_profit(nq, trader):
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, client_address="10.0.0.7",
                                    now=close_time(bars[-1]))
    entry_bar = bar_at(nq, 3, open_="18001.00", high="18003", low="17999", close="18002")
    services.bar_settle(bar_id=entry_bar.pk)
    recommendation.refresh_from_db()
    assert recommendation.state == Recommendation.State.EXECUTED
    entry = Order.objects.get(recommendation=recommendation, kind="entry")
    assert entry.fill.price == Decimal("18001.25")  # open + 1 tick of slippage
    position = Position.objects.get(instrument=nq)
    assert position.quantity == 5
    exit_bar = bar_at(nq, 4, open_="18002", high="18020", low="18001", close="18015")
    services.bar_settle(bar_id=exit_bar.pk)
    position.refresh_from_db()
    assert position.quantity == 0
    take_profit = Order.objects.get(parent=entry)
    assert take_profit.kind == "take_profit"
    gross = (take_profit.fill.price - entry.fill.price) * 5 * 20
    assert position.realized_pnl == gross
    assert position.commissions == Decimal("25.00")  # 2 x 5 contracts x $2.50
    assert services.account_reconcile().clean
    approve = AuditEvent.objects.get(action="approve")
    assert (approve.user, approve.state_before, approve.state_after, approve.client_address) == (
        trader, "pending", "approved", "10.0.0.7")
    assert Fill.objects.count() == 2
