"""Paper broker fill rules: entries with slippage, bracket levels, exits on hand-built bars, and the labels' rule."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.domain.labels import LabelConfig, triple_barrier_labels
from trading.domain.broker import (
    BarPrices,
    Bracket,
    Exit,
    FillCosts,
    bracket_exit,
    bracket_for,
    commission,
    entry_order_side,
    entry_price,
    exit_order_side,
)

D = Decimal
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)
NQ_TICK = D("0.25")
NQ = FillCosts(tick_size=NQ_TICK, slippage_ticks=1, commission_per_contract=D("2.50"))

# Entry 15000, take-profit 15015, stop 14990, three bars.
LONG = Bracket("long", entry=D("15000"), take_profit=D("15015"), stop_loss=D("14990"), horizon_bars=3)
# Entry 15000, take-profit 14985, stop 15010, three bars.
SHORT = Bracket("short", entry=D("15000"), take_profit=D("14985"), stop_loss=D("15010"), horizon_bars=3)


def bar(o, h, lo, c, minute: int = 0) -> BarPrices:
    return BarPrices(T0 + timedelta(minutes=minute), D(str(o)), D(str(h)), D(str(lo)), D(str(c)))


# --- entries --------------------------------------------------------------------------------------------------


def test_long_entry_fills_at_the_open_plus_slippage():
    assert entry_price("long", bar(15000, 15004, 14998, 15002), NQ) == D("15000.25")


def test_short_entry_fills_at_the_open_minus_slippage():
    assert entry_price("short", bar(15000, 15004, 14998, 15002), NQ) == D("14999.75")


@pytest.mark.parametrize("side, expected", [("long", "15000.75"), ("short", "14999.25")])
def test_entry_slippage_is_the_number_of_ticks_times_the_tick_size(side, expected):
    costs = FillCosts(tick_size=NQ_TICK, slippage_ticks=3)
    assert entry_price(side, bar(15000, 15004, 14998, 15002), costs) == D(expected)


@pytest.mark.parametrize("side", ["long", "short"])
def test_entry_without_slippage_fills_at_the_open(side):
    assert entry_price(side, bar(15000, 15004, 14998, 15002), FillCosts(tick_size=NQ_TICK, slippage_ticks=0)) == 15000


def test_a_short_entry_price_never_goes_below_one_tick():
    assert entry_price("short", bar("0.25", "0.5", "0.25", "0.5"), NQ) == NQ_TICK


def test_entries_buy_for_a_long_and_sell_for_a_short_and_exits_do_the_opposite():
    assert (entry_order_side("long"), exit_order_side("long")) == ("buy", "sell")
    assert (entry_order_side("short"), exit_order_side("short")) == ("sell", "buy")


# --- bracket levels -------------------------------------------------------------------------------------------


def test_long_bracket_levels_are_rounded_to_the_tick_away_from_the_entry():
    # 1.5 * 7.3 = 10.95 and 1.0 * 7.3 = 7.3: 15011.20 rounds up to 15011.25, 14992.95 down to 14992.75.
    bracket = bracket_for("long", D("15000.25"), D("7.3"), 1.5, 1.0, 30, NQ_TICK)
    assert bracket == Bracket("long", D("15000.25"), D("15011.25"), D("14992.75"), 30)


def test_short_bracket_levels_are_rounded_to_the_tick_away_from_the_entry():
    bracket = bracket_for("short", D("15000.25"), D("7.3"), 1.5, 1.0, 30, NQ_TICK)
    assert bracket == Bracket("short", D("15000.25"), D("14989.25"), D("15007.75"), 30)


def test_bracket_levels_already_on_the_tick_are_kept():
    bracket = bracket_for("long", D("15000"), D("10"), 1.5, 1.0, 5, NQ_TICK)
    assert (bracket.take_profit, bracket.stop_loss) == (D("15015"), D("14990"))
    assert bracket.take_profit_distance / bracket.stop_loss_distance == D("1.5")


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_tiny_atr_still_puts_each_level_at_least_one_tick_from_the_entry(side):
    bracket = bracket_for(side, D("15000"), D("0.01"), 1.5, 1.0, 5, NQ_TICK)
    assert bracket.take_profit_distance == NQ_TICK
    assert bracket.stop_loss_distance == NQ_TICK


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"atr": D("0")}, "atr must be > 0"),
        ({"atr": 7.5}, "atr must be a Decimal"),
        ({"atr": D("NaN")}, "atr must be finite"),
        ({"tp_atr": -1.0}, "tp_atr must be a finite number > 0"),
        ({"sl_atr": float("nan")}, "sl_atr must be a finite number > 0"),
        ({"horizon_bars": 0}, "horizon_bars must be an integer >= 1"),
        ({"side": "buy"}, "side must be 'long' or 'short'"),
        ({"entry": D("-1")}, "entry must be > 0"),
        ({"atr": D("20000")}, "stop-loss .* at or below zero"),
    ],
)
def test_bracket_for_refuses_bad_input_naming_the_problem(kwargs, problem):
    args = {"side": "long", "entry": D("15000"), "atr": D("10"), "tp_atr": 1.5, "sl_atr": 1.0,
            "horizon_bars": 30, "tick_size": NQ_TICK, **kwargs}
    with pytest.raises(ValueError, match=problem):
        bracket_for(**args)


def test_a_bracket_with_the_stop_on_the_wrong_side_of_the_entry_is_refused():
    with pytest.raises(ValueError, match="stop-loss < entry < take-profit"):
        Bracket("long", entry=D("15000"), take_profit=D("15015"), stop_loss=D("15005"), horizon_bars=3)
    with pytest.raises(ValueError, match="take-profit < entry < stop-loss"):
        Bracket("short", entry=D("15000"), take_profit=D("15015"), stop_loss=D("15010"), horizon_bars=3)


# --- long exits -----------------------------------------------------------------------------------------------


def test_long_take_profit_fills_at_its_price_when_a_later_bar_reaches_it():
    assert bracket_exit(LONG, bar(15005, 15016, 15001, 15010), 2, NQ) == Exit("take_profit", D("15015"), T0)


def test_long_take_profit_touched_exactly_counts():
    assert bracket_exit(LONG, bar(15005, 15015, 15001, 15010), 2, NQ).reason == "take_profit"


def test_long_stop_fills_at_the_stop_minus_slippage():
    assert bracket_exit(LONG, bar(14995, 14998, 14989, 14992), 2, NQ) == Exit("stop_loss", D("14989.75"), T0)


def test_long_bar_touching_both_barriers_exits_at_the_stop():
    assert bracket_exit(LONG, bar(15000, 15020, 14985, 15018), 2, NQ) == Exit("stop_loss", D("14989.75"), T0)


def test_long_gap_through_the_stop_fills_at_the_open_minus_slippage():
    assert bracket_exit(LONG, bar(14980, 14984, 14975, 14982), 2, NQ) == Exit("stop_loss", D("14979.75"), T0)


def test_long_gap_through_the_take_profit_fills_at_the_open():
    assert bracket_exit(LONG, bar(15020, 15025, 15018, 15022), 2, NQ) == Exit("take_profit", D("15020"), T0)


def test_long_gap_through_the_take_profit_that_then_reaches_the_stop_counts_as_the_stop():
    assert bracket_exit(LONG, bar(15020, 15025, 14985, 14988), 2, NQ) == Exit("stop_loss", D("14989.75"), T0)


def test_long_time_exit_at_the_horizon_close_minus_slippage():
    assert bracket_exit(LONG, bar(15001, 15006, 14995, 15004), 3, NQ) == Exit("time", D("15003.75"), T0)


def test_long_no_exit_before_the_horizon_when_no_barrier_is_touched():
    quiet = bar(15001, 15006, 14995, 15004)
    assert bracket_exit(LONG, quiet, 1, NQ) is None
    assert bracket_exit(LONG, quiet, 2, NQ) is None


def test_long_barrier_on_the_horizon_bar_wins_over_the_time_exit():
    assert bracket_exit(LONG, bar(15005, 15016, 15001, 15010), 3, NQ).reason == "take_profit"


def test_long_exit_can_happen_on_the_entry_bar_itself():
    assert bracket_exit(LONG, bar(15000, 15016, 14999, 15010), 1, NQ).reason == "take_profit"


def test_a_bar_past_the_horizon_exits_at_its_close():
    assert bracket_exit(LONG, bar(15001, 15006, 14995, 15004), 7, NQ) == Exit("time", D("15003.75"), T0)


def test_the_exit_carries_its_bar_timestamp():
    assert bracket_exit(LONG, bar(15005, 15016, 15001, 15010, minute=5), 2, NQ).timestamp == T0 + timedelta(minutes=5)


def test_a_long_stop_exit_price_never_goes_below_one_tick():
    bracket = Bracket("long", entry=D("1"), take_profit=D("2"), stop_loss=D("0.25"), horizon_bars=3)
    assert bracket_exit(bracket, bar("0.25", "0.5", "0.25", "0.5"), 2, NQ).price == NQ_TICK


# --- short exits ----------------------------------------------------------------------------------------------


def test_short_take_profit_fills_at_its_price_when_a_later_bar_reaches_it():
    assert bracket_exit(SHORT, bar(14995, 14999, 14984, 14990), 2, NQ) == Exit("take_profit", D("14985"), T0)


def test_short_stop_fills_at_the_stop_plus_slippage():
    assert bracket_exit(SHORT, bar(15005, 15011, 15002, 15008), 2, NQ) == Exit("stop_loss", D("15010.25"), T0)


def test_short_bar_touching_both_barriers_exits_at_the_stop():
    assert bracket_exit(SHORT, bar(15000, 15012, 14980, 14982), 2, NQ) == Exit("stop_loss", D("15010.25"), T0)


def test_short_gap_through_the_stop_fills_at_the_open_plus_slippage():
    assert bracket_exit(SHORT, bar(15020, 15025, 15016, 15018), 2, NQ) == Exit("stop_loss", D("15020.25"), T0)


def test_short_gap_through_the_take_profit_fills_at_the_open():
    assert bracket_exit(SHORT, bar(14980, 14983, 14975, 14978), 2, NQ) == Exit("take_profit", D("14980"), T0)


def test_short_time_exit_at_the_horizon_close_plus_slippage():
    assert bracket_exit(SHORT, bar(14999, 15005, 14994, 14996), 3, NQ) == Exit("time", D("14996.25"), T0)


def test_short_no_exit_before_the_horizon_when_no_barrier_is_touched():
    quiet = bar(14999, 15005, 14994, 14996)
    assert bracket_exit(SHORT, quiet, 1, NQ) is None
    assert bracket_exit(SHORT, quiet, 2, NQ) is None


# --- inputs and commission ------------------------------------------------------------------------------------


def test_commission_is_charged_per_contract():
    assert commission(2, NQ) == D("5.00")
    assert commission(1, FillCosts(tick_size=NQ_TICK, commission_per_contract=D("0"))) == 0


@pytest.mark.parametrize("quantity", [0, -1, 1.0, True])
def test_commission_refuses_a_quantity_that_is_not_a_positive_integer(quantity):
    with pytest.raises(ValueError, match="quantity must be an integer >= 1"):
        commission(quantity, NQ)


def test_bracket_exit_refuses_bars_held_below_one():
    with pytest.raises(ValueError, match="bars_held must be an integer >= 1"):
        bracket_exit(LONG, bar(15001, 15006, 14995, 15004), 0, NQ)


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"high": D("14999")}, "high 14999 is below the open or the close"),
        ({"low": D("15001")}, "low 15001 is above the open or the close"),
        ({"open": 15000.0}, "open must be a Decimal, got float"),
        ({"close": D("Infinity")}, "close must be finite"),
        ({"low": D("0")}, "low must be > 0"),
        ({"timestamp": datetime(2024, 3, 4, 14, 30)}, "timestamp must be a timezone-aware datetime"),
    ],
)
def test_bar_prices_refuse_bad_input_naming_the_problem(change, problem):
    fields = {"timestamp": T0, "open": D("15000"), "high": D("15004"), "low": D("14998"), "close": D("15002"), **change}
    with pytest.raises(ValueError, match=problem):
        BarPrices(**fields)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"tick_size": D("0")}, "tick_size must be > 0"),
        ({"tick_size": NQ_TICK, "slippage_ticks": -1}, "slippage_ticks must be an integer >= 0"),
        ({"tick_size": NQ_TICK, "commission_per_contract": D("-2.5")}, "commission_per_contract must be >= 0"),
    ],
)
def test_fill_costs_refuse_bad_input_naming_the_problem(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        FillCosts(**kwargs)


def test_integer_prices_are_taken_as_exact_decimals():
    assert bar(15000, 15004, 14998, 15002).open == D("15000")
    assert isinstance(FillCosts(tick_size=1).tick_size, Decimal)


# --- the same rule as the triple-barrier labels ---------------------------------------------------------------


def _label_and_exit(path, side, atr, horizon, tp_atr=1.5, sl_atr=1.0):
    """Label bar 0 of `path` [(o, h, l, c), ...] with mlcore, and run the broker's bracket (entry = close 0,
    no slippage) over the bars after it. Returns (label, exit)."""
    frame = pd.DataFrame(
        {
            "timestamp": [T0 + timedelta(minutes=i) for i in range(len(path))],
            **{name: [float(p[i]) for p in path] for i, name in enumerate(("open", "high", "low", "close"))},
        }
    )
    atrs = np.full(len(path), np.nan)
    atrs[0] = float(atr)
    label = triple_barrier_labels(frame, atrs, LabelConfig(tp_atr=tp_atr, sl_atr=sl_atr, horizon=horizon))[side].iloc[0]
    costs = FillCosts(tick_size=NQ_TICK, slippage_ticks=0)
    bracket = bracket_for(side, D(str(path[0][3])), D(str(atr)), tp_atr, sl_atr, horizon, NQ_TICK)
    for held, prices in enumerate(path[1:], start=1):
        exit_ = bracket_exit(bracket, bar(*prices, minute=held), held, costs)
        if exit_ is not None:
            return label, exit_
    raise AssertionError("the broker left the bracket open past its horizon")


# Entry at 100 (close of bar 0), ATR 2: long take-profit 103, stop 98; short take-profit 97, stop 102.
LABEL_PATHS = {
    "take-profit first": [(99, 100, 99, 100), (100, 101, 99.5, 100.5), (100.5, 103.25, 100, 103)],
    "stop first": [(99, 100, 99, 100), (100, 100.5, 97.75, 98), (98, 104, 98, 104)],
    "both in one bar": [(99, 100, 99, 100), (100, 103.5, 97.5, 100), (100, 100.5, 99.5, 100)],
    "neither (timeout)": [(99, 100, 99, 100), (100, 101, 99, 100.5), (100.5, 101.5, 100, 101)],
    "gap over the take-profit then the stop": [(99, 100, 99, 100), (104, 104.5, 97.5, 98), (98, 99, 97, 98)],
    "short take-profit first": [(99, 100, 99, 100), (100, 100.5, 96.75, 97), (97, 103, 97, 103)],
    "gap below both long levels": [(99, 100, 99, 100), (96, 96.5, 95, 96), (96, 97, 95.5, 96.5)],
}


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("name", list(LABEL_PATHS))
def test_the_broker_takes_profit_exactly_when_the_triple_barrier_label_is_one(name, side):
    label, exit_ = _label_and_exit(LABEL_PATHS[name], side, atr=2, horizon=2)
    assert label in (0.0, 1.0)
    assert (exit_.reason == "take_profit") == (label == 1.0), (name, side, label, exit_)


def test_a_bar_touching_both_barriers_is_a_stop_for_the_labels_and_the_broker():
    for side in ("long", "short"):
        label, exit_ = _label_and_exit(LABEL_PATHS["both in one bar"], side, atr=2, horizon=2)
        assert label == 0.0 and exit_.reason == "stop_loss"


def test_an_untouched_bracket_is_a_timeout_for_the_labels_and_a_time_exit_for_the_broker():
    label, exit_ = _label_and_exit(LABEL_PATHS["neither (timeout)"], "long", atr=2, horizon=2)
    assert label == 0.0 and exit_ == Exit("time", D("101"), T0 + timedelta(minutes=2))


@st.composite
def tick_paths(draw):
    """A short path of valid bars on the 0.25 grid, as (open, high, low, close) tuples in ticks."""
    horizon = draw(st.integers(1, 5))
    close = 40_000
    path = [(close, close + 2, close - 2, close)]
    for _ in range(horizon):
        o = close + draw(st.integers(-30, 30))
        close = o + draw(st.integers(-30, 30))
        h = max(o, close) + draw(st.integers(0, 20))
        lo = min(o, close) - draw(st.integers(0, 20))
        path.append((o, h, lo, close))
    return horizon, [tuple(D(t) * NQ_TICK for t in p) for p in path]


@settings(max_examples=200, deadline=None)
@given(
    tick_paths(),
    st.sampled_from(["long", "short"]),
    st.integers(4, 60),
    st.sampled_from([(1.5, 1.0), (2.0, 1.0), (1.0, 1.0)]),
)
def test_the_broker_agrees_with_the_labels_on_random_tick_paths(path, side, atr_ticks, multiples):
    horizon, bars = path
    # An ATR off the tick grid, so that the labels' unrounded levels are never exactly on a traded price.
    atr = D(atr_ticks) * NQ_TICK + D("0.1")
    label, exit_ = _label_and_exit(bars, side, atr, horizon, *multiples)
    assert (exit_.reason == "take_profit") == (label == 1.0)
