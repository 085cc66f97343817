"""The position ledger: fills are the only way a position changes; P&L by the average-price method, exact."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.domain.broker import FillCosts, commission
from trading.domain.ledger import FillEvent, PositionState, pnl_points_to_money, replay

D = Decimal
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)
NQ_POINT = D("20")
NQ = FillCosts(tick_size=D("0.25"), slippage_ticks=1, commission_per_contract=D("2.50"))


def fill(side: str, quantity: int, price, minute: int = 0, fee=None) -> FillEvent:
    fee = commission(quantity, NQ) if fee is None else D(fee)
    return FillEvent(side, quantity, D(str(price)), fee, T0 + timedelta(minutes=minute))


# --- the NQ arithmetic ----------------------------------------------------------------------------------------


def test_long_two_nq_round_trip_makes_420_gross_10_commission_410_net():
    state = replay([fill("buy", 2, "15000.25"), fill("sell", 2, "15010.75", 1)], NQ_POINT)
    assert state.quantity == 0
    assert state.realized_pnl == D("420")
    assert state.commissions == D("10")
    assert state.net_realized == D("410")
    assert state.fills == 2


def test_short_nq_round_trip_makes_money_when_the_price_falls():
    state = replay([fill("sell", 1, "15010.75"), fill("buy", 1, "15000.25", 1)], NQ_POINT)
    assert (state.realized_pnl, state.commissions, state.net_realized) == (D("210"), D("5"), D("205"))


def test_a_losing_round_trip_realises_a_negative_pnl():
    state = replay([fill("buy", 1, "15000"), fill("sell", 1, "14990", 1)], NQ_POINT)
    assert state.realized_pnl == D("-200")
    assert state.net_realized == D("-205")


def test_one_tick_on_nq_is_five_dollars():
    assert pnl_points_to_money(D("0.25"), 1, NQ_POINT) == D("5")
    assert pnl_points_to_money(D("10.5"), 2, NQ_POINT) == D("420")


def test_commissions_never_change_the_gross_realised_pnl():
    cheap = replay([fill("buy", 2, 100, fee="0"), fill("sell", 2, 101, 1, fee="0")], NQ_POINT)
    dear = replay([fill("buy", 2, 100, fee="9.99"), fill("sell", 2, 101, 1, fee="9.99")], NQ_POINT)
    assert cheap.realized_pnl == dear.realized_pnl == D("40")
    assert dear.commissions == D("19.98")


# --- add, reduce, close, flip ---------------------------------------------------------------------------------


def test_opening_a_long_sets_the_quantity_and_the_average_price():
    state = PositionState().apply(fill("buy", 2, "15000.25"), NQ_POINT)
    assert (state.quantity, state.average_price, state.realized_pnl, state.side) == (2, D("15000.25"), 0, "long")


def test_adding_to_a_position_averages_the_price_by_contracts():
    state = replay([fill("buy", 1, "15000"), fill("buy", 3, "15004", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.realized_pnl) == (4, D("15003"), 0)


def test_adding_to_a_short_averages_the_price_and_keeps_it_short():
    state = replay([fill("sell", 1, "15000"), fill("sell", 1, "15001", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.side) == (-2, D("15000.5"), "short")


def test_reducing_realises_the_closed_part_and_keeps_the_average():
    state = replay([fill("buy", 4, "15000"), fill("sell", 1, "15010", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.realized_pnl) == (3, D("15000"), D("200"))


def test_reducing_a_short_realises_average_minus_exit():
    state = replay([fill("sell", 2, "15000"), fill("buy", 1, "14990", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.realized_pnl) == (-1, D("15000"), D("200"))


def test_closing_leaves_a_flat_position_with_no_average_price():
    state = replay([fill("buy", 2, "15000"), fill("sell", 2, "15001", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.cost_basis, state.side) == (0, 0, 0, "flat")
    assert state.unrealized_pnl(D("16000"), NQ_POINT) == 0


def test_a_sell_larger_than_a_long_flips_it_short_at_the_fill_price():
    state = replay([fill("buy", 2, "15000"), fill("sell", 5, "15010", 1)], NQ_POINT)
    assert state.quantity == -3
    assert state.average_price == D("15010")
    assert state.realized_pnl == D("400")  # only the two closed contracts realise
    assert state.commissions == D("17.50")


def test_a_buy_larger_than_a_short_flips_it_long_at_the_fill_price():
    state = replay([fill("sell", 1, "15000"), fill("buy", 3, "15002", 1)], NQ_POINT)
    assert (state.quantity, state.average_price, state.realized_pnl) == (2, D("15002"), D("-40"))


def test_after_a_flip_the_new_side_realises_from_the_flip_price():
    state = replay([fill("buy", 2, "15000"), fill("sell", 5, "15010", 1), fill("buy", 3, "15005", 2)], NQ_POINT)
    assert state.quantity == 0
    assert state.realized_pnl == D("400") + D("300")


def test_unrealised_pnl_marks_the_open_contracts_against_the_average():
    long_ = replay([fill("buy", 2, "15000.25")], NQ_POINT)
    short = replay([fill("sell", 2, "15000.25")], NQ_POINT)
    assert long_.unrealized_pnl(D("15010.75"), NQ_POINT) == D("420")
    assert short.unrealized_pnl(D("15010.75"), NQ_POINT) == D("-420")
    assert long_.net_pnl(D("15010.75"), NQ_POINT) == D("415")


def test_apply_returns_a_new_state_and_leaves_the_old_one_unchanged():
    before = PositionState()
    after = before.apply(fill("buy", 1, 100), NQ_POINT)
    assert before == PositionState() and after.quantity == 1


def test_replaying_nothing_gives_a_flat_position():
    assert replay([], NQ_POINT) == PositionState()


def test_replay_continues_from_a_given_state():
    first = replay([fill("buy", 2, 100)], NQ_POINT)
    assert replay([fill("sell", 1, 101, 1)], NQ_POINT, start=first) == replay(
        [fill("buy", 2, 100), fill("sell", 1, 101, 1)], NQ_POINT
    )


# --- exactness and rounding -----------------------------------------------------------------------------------


def test_an_average_that_does_not_terminate_is_shown_to_six_places_and_pnl_uses_the_exact_cost():
    state = replay([fill("buy", 1, "100"), fill("buy", 2, "100.25", 1)], NQ_POINT)
    assert state.average_price == D("100.166667")
    assert state.cost_basis == D("300.5")
    assert state.unrealized_pnl(D("100.25"), NQ_POINT) == D("5")  # 3 x 100.25 - 300.5 = 0.25 points


def test_a_partial_reduce_realises_whole_cents_and_the_rest_stays_with_the_open_contracts():
    state = replay([fill("buy", 1, "100"), fill("buy", 2, "100.25", 1), fill("sell", 1, "100.25", 2)], NQ_POINT)
    # One third of 300.5 points is 100.1666..., rounded to a cent's worth (0.0005 points): 100.1665.
    assert state.realized_pnl == D("1.67")
    assert state.cost_basis == D("200.3335")
    assert state.realized_pnl + state.unrealized_pnl(D("100.25"), NQ_POINT) == D("5")
    closed = state.apply(fill("sell", 2, "100.25", 3), NQ_POINT)
    assert closed.realized_pnl == D("5")


def test_a_state_rebuilt_from_stored_fields_takes_its_cost_from_the_average():
    stored = PositionState(quantity=-2, average_price=D("15000.5"), realized_pnl=D("10"), commissions=D("5"), fills=2)
    assert stored.cost_basis == D("30001")
    assert stored.apply(fill("buy", 2, "15000", 3), NQ_POINT).realized_pnl == D("30")


def test_a_state_whose_average_does_not_match_its_cost_is_refused():
    with pytest.raises(ValueError, match="does not match cost_basis"):
        PositionState(quantity=2, average_price=D("100"), cost_basis=D("201"))


def test_a_flat_state_with_an_average_price_is_refused():
    with pytest.raises(ValueError, match="a flat position has average price 0"):
        PositionState(quantity=0, average_price=D("100"))


def test_an_open_state_without_a_price_is_refused():
    with pytest.raises(ValueError, match="needs an average price > 0"):
        PositionState(quantity=1)


# --- input validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"quantity": 0}, "quantity must be an integer >= 1"),
        ({"quantity": -2}, "quantity must be an integer >= 1"),
        ({"quantity": 1.5}, "quantity must be an integer >= 1"),
        ({"quantity": True}, "quantity must be an integer >= 1"),
        ({"price": D("0")}, "price must be > 0"),
        ({"price": D("-15000")}, "price must be > 0"),
        ({"price": D("NaN")}, "price must be finite"),
        ({"price": D("Infinity")}, "price must be finite"),
        ({"price": 15000.25}, "price must be a Decimal, got float"),
        ({"price": "abc"}, "price must be a number"),
        ({"side": "long"}, "side must be 'buy' or 'sell'"),
        ({"commission": D("-1")}, "commission must be >= 0"),
        ({"timestamp": datetime(2024, 3, 4)}, "timestamp must be a timezone-aware datetime"),
    ],
)
def test_a_fill_with_bad_input_is_refused_naming_the_problem(change, problem):
    fields = {"side": "buy", "quantity": 1, "price": D("15000"), "commission": D("2.50"), "timestamp": T0, **change}
    with pytest.raises(ValueError, match=problem):
        FillEvent(**fields)


@pytest.mark.parametrize("point_value, problem", [(D("0"), "must be > 0"), (20.0, "must be a Decimal")])
def test_apply_refuses_a_bad_point_value(point_value, problem):
    with pytest.raises(ValueError, match=f"point_value {problem}"):
        PositionState().apply(fill("buy", 1, 100), point_value)


def test_apply_refuses_something_that_is_not_a_fill():
    with pytest.raises(ValueError, match="fill must be a FillEvent"):
        PositionState().apply({"side": "buy"}, NQ_POINT)


def test_unrealised_pnl_refuses_a_non_positive_mark():
    with pytest.raises(ValueError, match="mark must be > 0"):
        replay([fill("buy", 1, 100)], NQ_POINT).unrealized_pnl(D("0"), NQ_POINT)


# --- properties -----------------------------------------------------------------------------------------------

fills_strategy = st.lists(
    st.builds(
        lambda side, quantity, ticks, cents, minute: FillEvent(
            side, quantity, D(ticks) * D("0.25"), D(cents) / 100, T0 + timedelta(minutes=minute)
        ),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 9),
        st.integers(1, 80_000),
        st.integers(0, 5_000),
        st.integers(0, 10_000),
    ),
    max_size=30,
)
point_values = st.sampled_from([D("20"), D("50"), D("2"), D("12.5"), D("3"), D("1")])


@settings(max_examples=300, deadline=None)
@given(fills_strategy, st.data(), point_values)
def test_replaying_fills_in_chunks_equals_replaying_them_all(fills, data, point_value):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(fills)), max_size=4)))
    state = PositionState()
    for start, stop in zip([0, *cuts], [*cuts, len(fills)]):
        state = replay(fills[start:stop], point_value, start=state)
    assert state == replay(fills, point_value)


@settings(max_examples=300, deadline=None)
@given(fills_strategy, st.integers(1, 80_000), point_values)
def test_realised_plus_unrealised_at_a_mark_equals_the_cash_flows(fills, mark_ticks, point_value):
    mark = D(mark_ticks) * D("0.25")
    state = replay(fills, point_value)
    cash = sum(((f.price if f.side == "sell" else -f.price) * f.quantity for f in fills), D(0))
    held = sum(f.signed_quantity for f in fills)
    assert state.quantity == held
    assert state.realized_pnl + state.unrealized_pnl(mark, point_value) == (cash + held * mark) * point_value
    assert state.commissions == sum((f.commission for f in fills), D(0))
    assert state.net_pnl(mark, point_value) == (cash + held * mark) * point_value - state.commissions
    assert state.fills == len(fills)


@settings(max_examples=300, deadline=None)
@given(fills_strategy)
def test_nq_realised_pnl_is_always_a_whole_number_of_cents(fills):
    state = replay(fills, NQ_POINT)
    assert state.realized_pnl == state.realized_pnl.quantize(D("0.01"))
    assert state.average_price == state.average_price.quantize(D("0.000001"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 80_000)), min_size=1, max_size=10))
def test_the_average_of_pure_adds_lies_between_the_lowest_and_highest_fill(buys):
    fills = [FillEvent("buy", q, D(t) * D("0.25"), D(0), T0) for q, t in buys]
    state = replay(fills, NQ_POINT)
    prices = [f.price for f in fills]
    assert min(prices) <= state.average_price <= max(prices)
    assert state.realized_pnl == 0
