"""Exposure the risk limits count: open trades and working (approved, unfilled) entries, worst case per side.

Every entry carries its own bracket and exits on its own, so a long and a short of the same instrument do not
cancel: if the short takes profit first, the long is left alone. The net position can therefore be anything
between -(open and working shorts) and +(open and working longs); the limits are held against that worst case.
The loss budget likewise counts what every working entry and open trade would still lose at its stop.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .checks import is_count

SIDES = ("long", "short")


@dataclass(frozen=True)
class EntryExposure:
    instrument_id: int
    side: str  # "long" | "short"
    quantity: int
    working: bool  # approved, not filled yet (fills at the next bar's open)
    loss_to_stop: Decimal  # what the whole entry would still lose if its stop filled from here, >= 0


@dataclass(frozen=True)
class Exposure:
    longs: Mapping[int, int] = field(default_factory=dict)  # instrument id -> contracts long (open + working)
    shorts: Mapping[int, int] = field(default_factory=dict)
    working_entries: int = 0  # approved entries not filled yet: they count as today's trades
    committed_risk: Decimal = Decimal(0)

    def position_for(self, instrument_id: int, side: str) -> int:
        """The signed worst-case position on the proposal's side: +longs for a long, -shorts for a short."""
        if side == "short":
            return -self.shorts.get(instrument_id, 0)
        return self.longs.get(instrument_id, 0)

    @property
    def total(self) -> int:
        """Contracts over every instrument, each counted at its worst side."""
        instruments = set(self.longs) | set(self.shorts)
        return sum(max(self.longs.get(i, 0), self.shorts.get(i, 0)) for i in instruments)


def exposure(entries: Iterable[EntryExposure], *, positions: Mapping[int, int] | None = None) -> Exposure:
    """Sum entries per instrument and side. A stored net position larger than its open trades (a position not
    made by MinhOS's own entries) still counts in full on its side."""
    longs: dict[int, int] = {}
    shorts: dict[int, int] = {}
    working = 0
    committed = Decimal(0)
    for entry in entries:
        if entry.side not in SIDES or not is_count(entry.quantity) or entry.quantity <= 0:
            raise ValueError(f"entry {entry!r} has no valid side and positive quantity")
        if not isinstance(entry.loss_to_stop, Decimal) or not entry.loss_to_stop.is_finite() or entry.loss_to_stop < 0:
            raise ValueError(f"loss to stop {entry.loss_to_stop!r} is not an amount >= 0")
        book = longs if entry.side == "long" else shorts
        book[entry.instrument_id] = book.get(entry.instrument_id, 0) + entry.quantity
        working += entry.working
        committed += entry.loss_to_stop
    for instrument_id, net in (positions or {}).items():
        if net > 0:
            longs[instrument_id] = max(longs.get(instrument_id, 0), net)
        elif net < 0:
            shorts[instrument_id] = max(shorts.get(instrument_id, 0), -net)
    return Exposure(longs=longs, shorts=shorts, working_entries=working, committed_risk=committed)


def working_entry_loss(*, quantity: int, stop_distance: Decimal, slippage: Decimal, point_value: Decimal,
                       commission_per_contract: Decimal) -> Decimal:
    """A working entry stopped out: the stop distance plus the stop's slippage, and commissions in and out."""
    return quantity * ((stop_distance + slippage) * point_value + 2 * commission_per_contract)


def open_trade_loss(*, side: str, quantity: int, mark: Decimal, stop_loss: Decimal | None, slippage: Decimal,
                    point_value: Decimal, commission_per_contract: Decimal) -> Decimal:
    """An open trade stopped out from its mark (its unrealised P&L is already in the day's P&L): the distance from
    the mark to the stop, never negative, plus the stop's slippage and the exit commission. No stop known: the
    trade is counted as risking nothing more than its exit costs."""
    if stop_loss is None:
        distance = Decimal(0)
    else:
        distance = max(Decimal(0), mark - stop_loss if side == "long" else stop_loss - mark)
    return quantity * ((distance + slippage) * point_value + commission_per_contract)
