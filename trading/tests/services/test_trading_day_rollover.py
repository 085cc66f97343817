"""The paper broker across the 18:00 New York trading-day rollover, with a position open over the daily break.

Bar i of the test market is SERIES_ORIGIN (Tue 2024-01-02 14:30 UTC = 09:30 New York) + i minutes: i = 449 is the
last bar before the daily break (21:59 UTC = 16:59 New York), i = 510 the first bar of the next trading day
(23:00 UTC = 18:00 New York).
"""
from decimal import Decimal

import pytest

from trading import selectors, services
from trading.domain.calendar import trading_day_start
from trading.models import Account, EquitySnapshot, Order, Position
from trading.tests.decisions import bar_at, close_time, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LAST_BEFORE_BREAK, FIRST_OF_NEXT_DAY = 449, 510


def _settled_long_open_over_the_break(nq, trader) -> Order:
    """Bars 445..449 settled one by one; a long of 5 approved on bar 448 fills at bar 449's open (18000.25)."""
    bars = [bar_at(nq, i) for i in range(LAST_BEFORE_BREAK - 4, LAST_BEFORE_BREAK)]
    for bar in bars:
        services.bar_settle(bar_id=bar.pk)
    version = model_version(nq)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(bars[-1]))
    [fill] = services.bar_settle(bar_id=bar_at(nq, LAST_BEFORE_BREAK).pk)
    assert fill.quantity == 5 and Position.objects.get(instrument=nq).quantity == 5
    return fill.order


def test_a_position_open_over_the_rollover_is_marked_and_stopped_out_on_the_next_trading_day(nq, trader):
    entry = _settled_long_open_over_the_break(nq, trader)
    first = bar_at(nq, FIRST_OF_NEXT_DAY, open_="18001", close="18002")
    # Snapshots exist before the new trading day's start: the day's opening equity comes from the last of them.
    assert EquitySnapshot.objects.filter(timestamp__lt=trading_day_start(close_time(first))).exists()
    assert services.bar_settle(bar_id=first.pk) == []
    snapshot = EquitySnapshot.objects.get(account_id=entry.account_id, timestamp=close_time(first))
    assert Position.objects.get(instrument=nq).mark_price == Decimal("18002")
    # The stop (entry 18000.25 - 10 points) is honoured on the new trading day.
    stop_bar = bar_at(nq, FIRST_OF_NEXT_DAY + 1, open_="18000", low="17980", close="17985")
    [stop] = services.bar_settle(bar_id=stop_bar.pk)
    assert stop.order.kind == "stop_loss" and stop.order.parent_id == entry.pk
    assert Position.objects.get(instrument=nq).quantity == 0
    assert snapshot.equity > 0 and services.account_reconcile().clean


def test_the_days_pnl_starts_from_the_last_snapshot_before_the_rollover(nq, trader):
    entry = _settled_long_open_over_the_break(nq, trader)
    account = Account.objects.get(pk=entry.account_id)
    first = bar_at(nq, FIRST_OF_NEXT_DAY, open_="18001", close="18011")
    services.bar_settle(bar_id=first.pk)
    opening = EquitySnapshot.objects.filter(account=account, timestamp__lt=trading_day_start(close_time(first))
                                            ).latest("timestamp").equity
    state = selectors.account_state(account=account, at=close_time(first))
    assert isinstance(state.daily_pnl, Decimal)
    assert state.daily_pnl == state.equity - opening
    # Marked from 18000 (bar 449's close) to 18011: 11 points x 5 contracts x $20, nothing else happened today.
    assert state.daily_pnl == Decimal("1100")
