"""Paper broker fill rules: market entries, bracket exits (take-profit, stop-loss, time) and commissions, on bars.

Prices are Decimal and every rule is exact; nothing here knows about orders in the database. All prices below
are for a long position; a short one mirrors them (buy where the long sells, highs for lows, + for -).
`slip` is `slippage_ticks * tick_size` and always goes against us.

Entry (`entry_price`)
    A market order placed after bar t closes fills at the open of the next bar, plus `slip` (a short: minus).
    The bracket levels are then set from that fill price (`bracket_for`).

Bracket levels (`bracket_for`)
    take-profit = entry + tp_atr * ATR and stop-loss = entry - sl_atr * ATR, each rounded to the tick grid AWAY
    from the entry (take-profit up, stop-loss down; a short's the other way). Bars trade on the grid, so a
    rounded level is touched exactly when the unrounded one would be: the broker and the triple-barrier labels
    (`mlcore/domain/labels.py`, which use the unrounded levels) see the same touches. Both distances are
    therefore more than zero and at least one tick from an entry on the grid.

Exits (`bracket_exit`), checked on every bar from the entry bar on (`bars_held` = 1 on the entry bar: the entry
fills at its open, so all of its high and low come after the entry):
    1. Stop-loss, when the bar's low <= stop. It wins whenever the bar also reaches the take-profit, EVEN if the
       bar opened beyond the take-profit: the order inside a bar is unknown, and the labels count any bar that
       touches both barriers as the stop. One rule for both keeps the model's probability the probability of
       what the broker does, and it is the conservative reading.
       The stop is a market order on trigger: it fills at the stop minus `slip`; a bar that opens at or below
       the stop (a gap through it) fills at the open minus `slip`, which is worse than the stop.
    2. Take-profit, when the bar's high >= take-profit. It is a resting limit order: it fills at its own price,
       without slippage; a bar that opens at or above it (a gap through it) fills at the open, the better price
       a resting limit gets.
    3. Time, on the bar where `bars_held` reaches `horizon_bars` and no barrier was touched: a market order at
       that bar's close minus `slip`. The bars held are the horizon bars after the signal bar, the same bars
       the labels scan. A later bar (`bars_held` past the horizon, e.g. bars were missed) exits the same way,
       so a position is never left open past its horizon.
    A fill price never goes below one tick (slippage cannot make a price zero or negative).
    An exit's timestamp is its bar's timestamp (the bar's open time: the exit happened within that bar).

Commission: `commission_per_contract` per contract per fill (so a round trip pays it twice).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from .checks import exact_decimal, whole_number
from .sides import SIDES, Side
EXIT_REASONS = ("take_profit", "stop_loss", "time")


def _check_side(side) -> str:
    if not isinstance(side, str) or side not in SIDES:
        raise ValueError(f"side must be 'long' or 'short', got {side!r}")
    return side


def _aware(name: str, value) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _multiple(name: str, value) -> Decimal:
    """An ATR multiple (float in the model configuration) as the Decimal it was written as."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, numbers.Integral):
        return Decimal(int(value))
    # repr is the shortest string that reads back as the same float: 1.5 stays 1.5, 0.1 becomes 0.1.
    return Decimal(repr(float(value)))


def _round_to_tick(price: Decimal, tick: Decimal, *, up: bool) -> Decimal:
    steps = Fraction(price) / Fraction(tick)
    return (math.ceil(steps) if up else math.floor(steps)) * tick


def _at_least_one_tick(price: Decimal, tick: Decimal) -> Decimal:
    return max(price, tick)


@dataclass(frozen=True)
class BarPrices:
    """One closed bar's prices; `timestamp` is its open time (UTC-aware)."""

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    def __post_init__(self):
        _aware("timestamp", self.timestamp)
        for name in ("open", "high", "low", "close"):
            object.__setattr__(self, name, exact_decimal(name, getattr(self, name)))
        if self.high < max(self.open, self.close):
            raise ValueError(f"high {self.high} is below the open or the close (open {self.open}, close {self.close})")
        if self.low > min(self.open, self.close):
            raise ValueError(f"low {self.low} is above the open or the close (open {self.open}, close {self.close})")


@dataclass(frozen=True)
class FillCosts:
    """What a fill costs beyond the quoted price: slippage in ticks (against us) and commission per contract."""

    tick_size: Decimal
    slippage_ticks: int = 1
    commission_per_contract: Decimal = Decimal("2.50")

    def __post_init__(self):
        object.__setattr__(self, "tick_size", exact_decimal("tick_size", self.tick_size))
        object.__setattr__(self, "slippage_ticks", whole_number("slippage_ticks", self.slippage_ticks, minimum=0))
        object.__setattr__(
            self,
            "commission_per_contract",
            exact_decimal("commission_per_contract", self.commission_per_contract, minimum="non-negative"),
        )

    @property
    def slippage(self) -> Decimal:
        """Slippage in price points."""
        return self.slippage_ticks * self.tick_size


def entry_order_side(side: str) -> str:
    """The entry order's side: a long buys, a short sells."""
    return Side(_check_side(side)).order_side


def exit_order_side(side: str) -> str:
    """An exit order's side: the opposite of the entry."""
    return Side(_check_side(side)).closing_order_side


def entry_price(side: str, bar: BarPrices, costs: FillCosts) -> Decimal:
    """The fill price of a market entry at `bar`'s open, slippage against us."""
    _check_side(side)
    if not isinstance(bar, BarPrices):
        raise ValueError(f"bar must be BarPrices, got {type(bar).__name__}")
    if not isinstance(costs, FillCosts):
        raise ValueError(f"costs must be FillCosts, got {type(costs).__name__}")
    if side == "long":
        return bar.open + costs.slippage
    return _at_least_one_tick(bar.open - costs.slippage, costs.tick_size)


@dataclass(frozen=True)
class Bracket:
    """An open trade's exits: take-profit and stop-loss prices and the horizon in bars after the signal bar."""

    side: str
    entry: Decimal
    take_profit: Decimal
    stop_loss: Decimal
    horizon_bars: int

    def __post_init__(self):
        _check_side(self.side)
        for name in ("entry", "take_profit", "stop_loss"):
            object.__setattr__(self, name, exact_decimal(name, getattr(self, name)))
        object.__setattr__(self, "horizon_bars", whole_number("horizon_bars", self.horizon_bars, minimum=1))
        if self.side == "long" and not self.stop_loss < self.entry < self.take_profit:
            raise ValueError(
                f"a long bracket needs stop-loss < entry < take-profit, got {self.stop_loss} / {self.entry} / "
                f"{self.take_profit}"
            )
        if self.side == "short" and not self.take_profit < self.entry < self.stop_loss:
            raise ValueError(
                f"a short bracket needs take-profit < entry < stop-loss, got {self.take_profit} / {self.entry} / "
                f"{self.stop_loss}"
            )

    @property
    def take_profit_distance(self) -> Decimal:
        return abs(self.take_profit - self.entry)

    @property
    def stop_loss_distance(self) -> Decimal:
        return abs(self.entry - self.stop_loss)


def bracket_for(
    side: str,
    entry: Decimal,
    atr: Decimal,
    tp_atr: float,
    sl_atr: float,
    horizon_bars: int,
    tick_size: Decimal,
) -> Bracket:
    """The bracket around a fill at `entry`: levels `tp_atr` and `sl_atr` ATRs away, rounded away from the entry."""
    atr = exact_decimal("atr", atr)
    return bracket_at(side, entry, _multiple("tp_atr", tp_atr) * atr, _multiple("sl_atr", sl_atr) * atr,
                      horizon_bars, tick_size)


def bracket_at(
    side: str,
    entry: Decimal,
    take_profit_distance: Decimal,
    stop_distance: Decimal,
    horizon_bars: int,
    tick_size: Decimal,
) -> Bracket:
    """The bracket around a fill at `entry` with its levels these distances away, rounded away from the entry (the
    distances a recommendation showed when it was approved)."""
    _check_side(side)
    entry = exact_decimal("entry", entry)
    take = exact_decimal("take_profit_distance", take_profit_distance)
    stop = exact_decimal("stop_distance", stop_distance)
    tick_size = exact_decimal("tick_size", tick_size)
    if not (take > 0 and stop > 0):
        raise ValueError(f"bracket distances must be > 0, got take-profit {take} and stop {stop}")
    if side == "long":
        take_profit = _round_to_tick(entry + take, tick_size, up=True)
        stop_loss = _round_to_tick(entry - stop, tick_size, up=False)
        if stop_loss <= 0:
            raise ValueError(f"the stop-loss {entry} - {stop} would be at or below zero: the ATR is too large")
    else:
        take_profit = _round_to_tick(entry - take, tick_size, up=False)
        stop_loss = _round_to_tick(entry + stop, tick_size, up=True)
        if take_profit <= 0:
            raise ValueError(f"the take-profit {entry} - {take} would be at or below zero: the ATR is too large")
    return Bracket(side, entry, take_profit, stop_loss, horizon_bars)


@dataclass(frozen=True)
class Exit:
    """A bracket exit: why, at what price (slippage included), on which bar."""

    reason: str
    price: Decimal
    timestamp: datetime

    def __post_init__(self):
        if self.reason not in EXIT_REASONS:
            raise ValueError(f"reason must be one of {', '.join(EXIT_REASONS)}, got {self.reason!r}")
        object.__setattr__(self, "price", exact_decimal("price", self.price))
        _aware("timestamp", self.timestamp)


def bracket_exit(bracket: Bracket, bar: BarPrices, bars_held: int, costs: FillCosts) -> Exit | None:
    """The exit `bar` triggers for an open bracket, or None; `bars_held` is 1 on the entry bar (see the module)."""
    if not isinstance(bracket, Bracket):
        raise ValueError(f"bracket must be a Bracket, got {type(bracket).__name__}")
    if not isinstance(bar, BarPrices):
        raise ValueError(f"bar must be BarPrices, got {type(bar).__name__}")
    if not isinstance(costs, FillCosts):
        raise ValueError(f"costs must be FillCosts, got {type(costs).__name__}")
    bars_held = whole_number("bars_held", bars_held, minimum=1)
    slip, tick = costs.slippage, costs.tick_size
    if bracket.side == "long":
        if bar.low <= bracket.stop_loss:
            return Exit("stop_loss", _at_least_one_tick(min(bar.open, bracket.stop_loss) - slip, tick), bar.timestamp)
        if bar.high >= bracket.take_profit:
            return Exit("take_profit", max(bar.open, bracket.take_profit), bar.timestamp)
        if bars_held >= bracket.horizon_bars:
            return Exit("time", _at_least_one_tick(bar.close - slip, tick), bar.timestamp)
        return None
    if bar.high >= bracket.stop_loss:
        return Exit("stop_loss", max(bar.open, bracket.stop_loss) + slip, bar.timestamp)
    if bar.low <= bracket.take_profit:
        return Exit("take_profit", min(bar.open, bracket.take_profit), bar.timestamp)
    if bars_held >= bracket.horizon_bars:
        return Exit("time", bar.close + slip, bar.timestamp)
    return None


def commission(quantity: int, costs: FillCosts) -> Decimal:
    """The commission on one fill of `quantity` contracts."""
    quantity = whole_number("quantity", quantity, minimum=1)
    if not isinstance(costs, FillCosts):
        raise ValueError(f"costs must be FillCosts, got {type(costs).__name__}")
    return quantity * costs.commission_per_contract
