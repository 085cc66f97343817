"""The paper broker on each closed bar: entries at the next open, brackets, time exits, marks, equity; idempotent."""
from decimal import Decimal

import pytest

from trading import services, workflow
from trading.models import Account, EquitySnapshot, Fill, Order, Position, Recommendation
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
State = Recommendation.State


def approved(nq, trader, *, side="long", p=0.7, atr=10.0, label=None):
    made = flat_bars(nq, 3)
    version = model_version(nq, label=label)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(made[-1], version, side=side, p=p, atr=atr).pk, now=close_time(made[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(made[-1]))
    recommendation.refresh_from_db()
    return recommendation


def test_an_approved_entry_fills_at_the_open_of_the_next_bar_not_the_bar_it_was_made_on(nq, trader):
    recommendation = approved(nq, trader)
    services.bar_settle(bar_id=recommendation.bar_id)  # the bar before the approval: nothing fills
    assert not Fill.objects.exists()
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18010").pk)
    assert Fill.objects.get().price == Decimal("18010.25")


def test_processing_the_same_bar_twice_fills_nothing_twice(nq, trader):
    recommendation = approved(nq, trader)
    entry_bar = bar_at(nq, 3, open_="18000")
    first = services.bar_settle(bar_id=entry_bar.pk)
    again = services.bar_settle(bar_id=entry_bar.pk)
    assert len(first) == 1 and again == []
    assert Position.objects.get(instrument=nq).quantity == recommendation.contracts
    assert Order.objects.get(kind="entry").bars_held == 1


def test_a_short_trade_hits_its_stop_and_loses_stop_distance_plus_slippage_and_commissions(nq, trader):
    recommendation = approved(nq, trader, side="short", p=0.7)
    contracts = recommendation.contracts
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18000", high="18001", low="17999", close="18000").pk)
    entry = Order.objects.get(kind="entry")
    assert entry.fill.price == Decimal("17999.75") and entry.stop_loss == Decimal("18009.75")
    services.bar_settle(bar_id=bar_at(nq, 4, open_="18001", high="18012", low="18000", close="18011").pk)
    stop = Order.objects.get(parent=entry)
    assert stop.kind == "stop_loss" and stop.side == "buy"
    assert stop.fill.price == Decimal("18010.00")  # stop 18009.75 + one tick of slippage
    position = Position.objects.get(instrument=nq)
    assert position.quantity == 0
    assert position.realized_pnl == (Decimal("17999.75") - Decimal("18010.00")) * contracts * 20
    assert position.commissions == Decimal("2.50") * 2 * contracts


def test_one_bar_touching_both_barriers_exits_at_the_stop(nq, trader):
    approved(nq, trader)
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18000", high="18001", low="17999", close="18000").pk)
    services.bar_settle(bar_id=bar_at(nq, 4, open_="18000", high="18030", low="17980", close="18000").pk)
    assert Order.objects.get(kind__in=["take_profit", "stop_loss"]).kind == "stop_loss"


def test_a_trade_that_touches_nothing_exits_at_the_close_of_its_horizon_bar(nq, trader):
    label = {"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 3, "payoff_ratio": 1.5}
    approved(nq, trader, label=label)
    for i, close in ((3, "18000"), (4, "18001"), (5, "18002")):
        services.bar_settle(bar_id=bar_at(nq, i, open_="18000", close=close).pk)
    exit_order = Order.objects.get(kind="time")
    assert exit_order.fill.price == Decimal("18001.75")  # close of the third bar held, minus one tick
    assert Position.objects.get(instrument=nq).quantity == 0


def test_an_open_position_is_marked_to_the_close_and_equity_is_snapshotted_per_bar(nq, trader):
    recommendation = approved(nq, trader)
    bar = bar_at(nq, 3, open_="18000", high="18005", low="17999", close="18004")
    services.bar_settle(bar_id=bar.pk)
    position = Position.objects.get(instrument=nq)
    assert position.mark_price == Decimal("18004")
    assert position.unrealized_pnl == (Decimal("18004") - Decimal("18000.25")) * recommendation.contracts * 20
    snapshot = EquitySnapshot.objects.get(timestamp=close_time(bar))
    account = Account.objects.get(name="paper")
    assert snapshot.equity == (account.starting_equity + position.unrealized_pnl - position.commissions)


def test_pending_recommendations_expire_when_their_time_to_live_has_passed(nq):
    made = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(made[-1], model_version(nq)).pk, now=close_time(made[-1]))
    workflow.settle(bar_at(nq, 3).pk)
    workflow.settle(bar_at(nq, 4).pk)
    recommendation.refresh_from_db()
    assert recommendation.state == State.PENDING
    workflow.settle(bar_at(nq, 5).pk)
    recommendation.refresh_from_db()
    assert recommendation.state == State.EXPIRED


def test_a_daily_loss_beyond_the_limit_trips_the_circuit_breaker_which_stays_tripped(nq, trader):
    account = Account.objects.get(name="paper")
    account.configs.filter(instrument=nq).update(daily_loss_limit=Decimal("500"))
    recommendation = approved(nq, trader)
    # The loss budget sizes it so a stop-out stays inside the limit: $500 / ((10 + 0.25) x $20 + $5) = 2 contracts.
    assert recommendation.contracts == 2
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18000", high="18001", low="17999", close="18000").pk)
    # A gap through the stop fills at the open: 30.5 points x 2 x $20 = $1,220, beyond the limit.
    services.bar_settle(bar_id=bar_at(nq, 4, open_="17970", high="17971", low="17960", close="17965").pk)
    account.refresh_from_db()
    assert account.circuit_breaker_tripped and account.trading_state == "HALTED"
    assert "daily loss" in account.circuit_breaker_reason
    # A new day does not reset it: only a person does.
    later = flat_bars(nq, 3, start=2000)
    [blocked] = services.recommendations_create_for_prediction(
        prediction_id=prediction(later[-1], model_version(nq)).pk, now=close_time(later[-1]))
    assert blocked.state == State.BLOCKED
    assert any("circuit breaker" in reason.lower() for reason in blocked.reasons)


def test_a_zero_daily_loss_limit_does_not_trip_the_breaker_on_a_flat_day(nq):
    # Zero means "no loss allowed" (as the risk manager reads it), not "a flat day is a loss".
    account = Account.objects.get(name="paper")
    account.configs.filter(instrument=nq).update(daily_loss_limit=Decimal("0"))
    for bar in flat_bars(nq, 3):
        services.bar_settle(bar_id=bar.pk)
    account.refresh_from_db()
    assert not account.circuit_breaker_tripped, account.circuit_breaker_reason
    assert account.trading_state == "ACTIVE"


def test_an_approved_entry_is_not_taken_when_the_next_bar_comes_after_a_gap(nq, trader):
    recommendation = approved(nq, trader)
    services.bar_settle(bar_id=bar_at(nq, 60, open_="18100").pk)  # an hour later: another market
    assert not Fill.objects.exists()
    assert Order.objects.get(kind="entry").status == "cancelled"
    recommendation.refresh_from_db()
    assert recommendation.state == State.EXPIRED
    assert "entry not taken" in recommendation.reasons[-1]
    assert not Position.objects.filter(instrument=nq).exclude(quantity=0).exists()


def test_every_bar_that_re_marks_an_open_position_pushes_the_account_to_its_dashboards(
        nq, trader, channel_prefix, django_capture_on_commit_callbacks):
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from trading.realtime import market_group

    approved(nq, trader)
    with django_capture_on_commit_callbacks(execute=True):
        services.bar_settle(bar_id=bar_at(nq, 3, open_="18000", high="18001", low="17999",
                                                  close="18000").pk)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(market_group("NQ", "1m"), channel)
    # A bar with no fill: the position is only re-marked, and the dashboard must still hear the new P&L.
    with django_capture_on_commit_callbacks(execute=True):
        fills = services.bar_settle(bar_id=bar_at(nq, 4, open_="18000", high="18003", low="17999",
                                                          close="18002").pk)
    assert fills == []
    async def next_account_update():
        while True:  # bounded: a missing push fails on the timeout, it does not hang the run
            message = await asyncio.wait_for(layer.receive(channel), timeout=10)
            if message["type"] == "account.updated":
                return message

    payload = async_to_sync(next_account_update)()["payload"]
    [position] = payload["positions"]
    assert position["mark_price"].startswith("18002") and Decimal(position["unrealized_pnl"]) > 0


def test_the_account_push_of_a_settlement_is_what_the_database_says_after_it(nq, trader, monkeypatch,
                                                                               django_capture_on_commit_callbacks):
    """Settling builds the dashboard's account push from the engine's figures, without reading the account again:
    each push must equal the summary and positions read from the database after the commit (the read it replaced),
    with a position in another market, through a fill, marks, a stop and a peak."""
    from trading import realtime, selectors
    from trading.domain.timeframes import timeframe_delta
    from trading.tests.factories import InstrumentFactory

    pushed = []
    monkeypatch.setattr(realtime, "broadcast", lambda symbol, timeframe, kind, payload: pushed.append((kind, payload)))
    recommendation = approved(nq, trader)
    es = InstrumentFactory(symbol="ES", point_value="50")
    Position.objects.create(account_id=recommendation.account_id, instrument=es, quantity=-2,
                            average_price=Decimal("5000.25"), cost_basis=Decimal("10000.5"),
                            realized_pnl=Decimal("125.5"), commissions=Decimal("5"), fills=2,
                            mark_price=Decimal("4990"), unrealized_pnl=Decimal("1025"))
    account = Account.objects.get(pk=recommendation.account_id)
    bars = [bar_at(nq, 3, open_="18000", high="18004", low="17999", close="18003"),
            bar_at(nq, 4, open_="18003", high="18006", low="18001", close="18005.5"),
            bar_at(nq, 5, open_="18005", high="18005.5", low="17980", close="17985")]
    for bar in bars:
        pushed.clear()
        with django_capture_on_commit_callbacks(execute=True):
            services.bar_settle(bar_id=bar.pk)
        updates = [payload for kind, payload in pushed if kind == "account.updated"]
        assert len(updates) == 1, pushed
        account.refresh_from_db()
        read = {"account": selectors.account_summary(account=account, at=bar.timestamp + timeframe_delta("1m")),
                "positions": [selectors.position_payload(p) for p in selectors.position_list(account=account)]}
        assert updates[0] == read
    assert [p["symbol"] for p in updates[0]["positions"]] == ["ES", "NQ"]
    assert Order.objects.filter(kind="stop_loss").exists()  # the last bar ran the stop
