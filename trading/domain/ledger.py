"""Positions changed only by fills (NautilusTrader's Position.apply): average price, realised and unrealised P&L.

A position is a fold over its fills: `replay(fills)` from flat gives the same state as applying them one by one
as they happen, so the stored position can always be recomputed from the fills and reconciled.

The average-price method, with quantity signed (long > 0):
    open / add     the fill's contracts join the open ones; the average price is their weighted mean.
    reduce         the closed contracts realise (exit - average) x contracts x point value for a long,
                   (average - exit) x ... for a short; the average of those still open does not change
                   (but for the cent rounding below).
    close          as reduce, down to flat (average price 0).
    flip           a fill larger than the position closes all of it (realising as above) and opens the rest
                   on the other side at the fill price.
`realized_pnl` is gross; commissions are summed apart in `commissions`, and `net_realized` is the difference.

Exactness. The state keeps `cost_basis`, the exact sum of price x contracts of the open contracts (in points);
P&L is computed from it, never from the rounded average, so every sum is exact in Decimal and
realised + unrealised at a mark always equals the cash flows (sells - buys + position x mark, x point value).
Only two numbers are rounded, both half-even:
    average_price  cost_basis / |quantity| to 6 decimal places (the database's price precision); for display.
    a partial reduce's cost  cost_basis x closed / open, to a cent's worth of points (0.01 / point value:
                   0.0005 for NQ), so realised P&L stays in whole cents; the contracts still open keep the
                   remainder, so nothing is lost. (1e-12 points if 0.01 / point value is not an exact Decimal
                   or the cent would leave the open contracts no cost.) A full close realises the exact cost.
A state built from stored fields without `cost_basis` takes average_price x |quantity| as its cost.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction

from .checks import exact_decimal, whole_number

FILL_SIDES = ("buy", "sell")
AVERAGE_PRICE_QUANTUM = Decimal("0.000001")
CENT = Decimal("0.01")
FINE_COST_QUANTUM = Decimal("1e-12")
ZERO = Decimal(0)


# Any rounding inside it raises: sums and products of Decimals must stay exact.
_EXACT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])


def _exact():
    return localcontext(_EXACT)


def _round(value: Fraction, quantum: Decimal) -> Decimal:
    with _exact():
        return Decimal(round(value / Fraction(quantum))) * quantum  # round() on a Fraction is half-even


def _average(cost: Decimal, quantity: int) -> Decimal:
    return _round(Fraction(cost) / quantity, AVERAGE_PRICE_QUANTUM)


def _cent_in_points(point_value: Decimal) -> Decimal:
    try:
        with _exact():
            return CENT / point_value
    except Inexact:
        return FINE_COST_QUANTUM


@dataclass(frozen=True)
class FillEvent:
    """One execution: `quantity` contracts bought or sold at `price`, paying `commission` (currency)."""

    side: str
    quantity: int
    price: Decimal
    commission: Decimal
    timestamp: datetime

    def __post_init__(self):
        if not isinstance(self.side, str) or self.side not in FILL_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        object.__setattr__(self, "quantity", whole_number("quantity", self.quantity, minimum=1))
        object.__setattr__(self, "price", exact_decimal("price", self.price))
        object.__setattr__(self, "commission", exact_decimal("commission", self.commission, minimum="non-negative"))
        ts = self.timestamp
        if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"timestamp must be a timezone-aware datetime, got {ts!r}")

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(frozen=True)
class PositionState:
    """A net position in one instrument: what its fills add up to. Build a new one with `apply`, never by hand
    (except from stored fields, see the module)."""

    quantity: int = 0  # signed: long > 0, short < 0
    average_price: Decimal = ZERO  # 0 when flat; rounded (see the module)
    realized_pnl: Decimal = ZERO  # gross, before commissions
    commissions: Decimal = ZERO
    fills: int = 0
    cost_basis: Decimal | None = None  # exact sum of price x contracts still open (points); None: from the average

    def __post_init__(self):
        object.__setattr__(self, "quantity", whole_number("quantity", self.quantity, minimum=None))
        average = exact_decimal("average_price", self.average_price, minimum="non-negative")
        object.__setattr__(self, "average_price", average)
        object.__setattr__(self, "realized_pnl", exact_decimal("realized_pnl", self.realized_pnl, minimum=None))
        object.__setattr__(self, "commissions", exact_decimal("commissions", self.commissions, minimum="non-negative"))
        object.__setattr__(self, "fills", whole_number("fills", self.fills, minimum=0))
        if self.quantity == 0:
            if average != 0 or (self.cost_basis is not None and self.cost_basis != 0):
                raise ValueError(f"a flat position has average price 0, got {average} (cost basis {self.cost_basis})")
            object.__setattr__(self, "cost_basis", ZERO)
            return
        if self.cost_basis is None:
            if average <= 0:
                raise ValueError(f"an open position needs an average price > 0, got {average}")
            with _exact():
                object.__setattr__(self, "cost_basis", average * abs(self.quantity))
            return
        cost = exact_decimal("cost_basis", self.cost_basis)
        object.__setattr__(self, "cost_basis", cost)
        expected = _average(cost, abs(self.quantity))
        if average != expected:
            raise ValueError(
                f"average_price {average} does not match cost_basis {cost} over {abs(self.quantity)} contract(s) "
                f"(expected {expected})"
            )

    @property
    def side(self) -> str:
        return "long" if self.quantity > 0 else "short" if self.quantity < 0 else "flat"

    @property
    def net_realized(self) -> Decimal:
        """Realised P&L after commissions."""
        return self.realized_pnl - self.commissions

    def unrealized_pnl(self, mark: Decimal, point_value: Decimal) -> Decimal:
        """What closing every open contract at `mark` would realise (gross); 0 when flat."""
        mark = exact_decimal("mark", mark)
        point_value = exact_decimal("point_value", point_value)
        if self.quantity == 0:
            return ZERO
        with _exact():
            value = mark * abs(self.quantity)
            points = value - self.cost_basis if self.quantity > 0 else self.cost_basis - value
            return points * point_value

    def net_pnl(self, mark: Decimal, point_value: Decimal) -> Decimal:
        """Realised + unrealised at `mark`, after commissions."""
        with _exact():
            return self.net_realized + self.unrealized_pnl(mark, point_value)

    def apply(self, fill: FillEvent, point_value: Decimal) -> PositionState:
        """The position after `fill`: add, reduce, close or flip (see the module). `self` is unchanged."""
        if not isinstance(fill, FillEvent):
            raise ValueError(f"fill must be a FillEvent, got {type(fill).__name__}")
        point_value = exact_decimal("point_value", point_value)
        held, signed = self.quantity, fill.signed_quantity
        with _exact():
            realized, cost = self.realized_pnl, self.cost_basis
            if held == 0 or (held > 0) == (signed > 0):
                cost = cost + fill.price * fill.quantity
            else:
                closing = min(abs(held), fill.quantity)
                removed = cost if closing == abs(held) else self._partial_cost(closing, point_value)
                proceeds = fill.price * closing
                realized += ((proceeds - removed) if held > 0 else (removed - proceeds)) * point_value
                # After a full close, what is left of the fill (if anything) opens the other side at its price.
                cost = cost - removed + fill.price * (fill.quantity - closing)
            quantity = held + signed
            return PositionState(
                quantity=quantity,
                average_price=_average(cost, abs(quantity)) if quantity else ZERO,
                realized_pnl=realized,
                commissions=self.commissions + fill.commission,
                fills=self.fills + 1,
                cost_basis=cost if quantity else None,
            )

    def _partial_cost(self, closing: int, point_value: Decimal) -> Decimal:
        share = Fraction(self.cost_basis) * closing / abs(self.quantity)
        removed = _round(share, _cent_in_points(point_value))
        if not 0 < removed < self.cost_basis:
            removed = _round(share, FINE_COST_QUANTUM)
        return removed


def replay(
    fills: Iterable[FillEvent], point_value: Decimal, *, start: PositionState | None = None
) -> PositionState:
    """Apply `fills` in the order given (time order) to `start` (flat by default)."""
    state = PositionState() if start is None else start
    if not isinstance(state, PositionState):
        raise ValueError(f"start must be a PositionState, got {type(state).__name__}")
    for fill in fills:
        state = state.apply(fill, point_value)
    return state


def pnl_points_to_money(points: Decimal, quantity: int, point_value: Decimal) -> Decimal:
    """A move of `points` on `quantity` contracts, in currency (NQ: 1 point = $20 per contract)."""
    points = exact_decimal("points", points, minimum=None)
    quantity = whole_number("quantity", quantity, minimum=None)
    point_value = exact_decimal("point_value", point_value)
    with _exact():
        return points * quantity * point_value
