"""A peer for MinhOS's backtest: the same bars and entries run through backtesting.py (`manage.py bench backtest`).

backtesting.py (the `backtesting` package, AGPL-3.0) is a benchmark and test dependency only
(requirements-bench.txt): it is imported inside `peer_run` alone, so importing this module never needs it, and the
running app never imports it.

`peer_run` places, for each `PeerSignal`, a market order in the Strategy's `next()` on the signal bar, with its
stop-loss and take-profit, and closes the trade after `horizon_bars`; `minhos_trades` runs the same signals through
`trading.domain.broker` (the paper broker's rules); `trades_compare` matches the two lists and explains every
difference by one of `RULES` (or says "unexplained").

The mapping onto backtesting.py (each choice is its native behaviour; where MinhOS's rule cannot be expressed, the
difference is a rule in `RULES`, never faked):

    units       one backtesting.py unit is one contract (`size=contracts`, a whole number of units);
    prices      every price is multiplied by the point value, so backtesting.py's P&L (size x price change, less
                commissions) is money; on a tick grid of 0.25 x 20 the prices are multiples of 5, exact in float.
                Its prices come back divided by the point value, on the tick grid, as Decimal;
    commission  a callable, per fill: contracts x (commission_per_contract + slippage_ticks x tick x point value),
                charged at the entry and at the exit, like MinhOS's per-contract commission; the slippage rides
                in it because backtesting.py has no slippage in ticks (rule `slippage_as_commission`);
    spread      0 (it is a rate relative to the price, applied to entries only: not a tick slippage);
    brackets    `sl`/`tp` of the entry order, set from MinhOS's fill price (the entry bar's open plus the
                slippage, against us) by the distances rounded to the tick grid away from the entry. backtesting.py
                fixes a bracket's prices when the order is placed, before its fill, so the peer reads the entry
                bar's open ahead: the one look-ahead here, equal to a broker-held bracket with offsets from the fill;
    time exit   `trade.close()` in `next()` on the bar where bars_held reaches horizon_bars (rule
                `time_exit_next_open`);
    the rest    trade_on_close=False (entries at the next bar's open, as MinhOS), hedging=True and
                exclusive_orders=False (each signal its own trade and bracket, never netted against another, as
                MinhOS's per-entry brackets), finalize_trades=True (rule `open_at_end`), and a margin of 1e-6 so
                that backtesting.py's cash check never refuses a signal MinhOS sized (rule `out_of_money`).
"""
from __future__ import annotations

import math
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd

from .domain.broker import BarPrices, FillCosts, bracket_at, bracket_exit, commission, entry_price

SIDES = ("long", "short")
EXIT_REASONS = ("stop_loss", "take_profit", "time", "end")
PEER_MARGIN = 1e-6
UNEXPLAINED = "unexplained"

# Each rule: its name, then how backtesting.py differs from MinhOS and which differences it explains. Line numbers
# are backtesting/backtesting.py of backtesting 0.6.6 (the version pinned in requirements-bench.txt).
RULES = (
    "slippage_as_commission: backtesting.py fills at the quoted price: it has no slippage in ticks, only `spread`, "
    "a rate relative to the price applied to entries alone (l.838 `_adjusted_price`; l.985 'Existing trades "
    "are closed at unadjusted price'). The peer charges slippage_ticks x tick x point value per contract per fill "
    "inside its commission callable, which backtesting.py charges at the entry and at the exit (l.1103 "
    "in `_open_trade`, l.1089 in `_close_trade`). So the peer's entry price, and its stop-loss and time exit prices, "
    "are one slippage better than MinhOS's, with the same money; a take-profit, which MinhOS fills at its price "
    "without slippage, costs the peer one slippage more: net_pnl lower by slippage x point value x contracts.",
    "time_exit_next_open: MinhOS's time exit fills at the close of the bar where bars_held reaches horizon_bars, "
    "less the slippage; backtesting.py fills a market order at the next bar's open (l.919 `price = prev_close "
    "if self._trade_on_close and not order.is_contingent else open`; trade_on_close=True would fill at that close "
    "but would move every entry to the signal bar's close as well). The peer closes the trade in next() on that "
    "bar, so its exit is one bar later, at that bar's open (before that bar's stop or take-profit: close() puts "
    "its order first, l.579): exit_at one bar later, exit_price that open, net_pnl different by (that open - the "
    "close) x point value x contracts (the side's sign).",
    "open_at_end: a trade whose horizon runs past the last bar has no exit in MinhOS (minhos_trades leaves it "
    "out). backtesting.py (finalize_trades=True) closes every trade still open after its loop, and any close "
    "placed on the last bar, at the last bar's open again: it re-runs its broker on the last bar (l.1356-1366 "
    "'Use the same OHLC values as in the last broker iteration'). A peer trade exiting on the last bar, or "
    "either side's trade with reason 'end', differs by this rule.",
    "first_bar: backtesting.py's loop starts at the second bar (l.1333 `start = 1 + "
    "_indicator_warmup_nbars(strategy)`): next() never runs on the first bar, so a signal on it is never placed "
    "(MinhOS's trade has no peer).",
    "bracket_outside_signal_close: backtesting.py checks a new order's levels against the current close, the "
    "signal bar's (long: SL < price < TP, l.788-797, a ValueError otherwise); levels set from the next bar's "
    "open lie on the far side of that close when the next bar gaps past a bracket distance, and the peer skips "
    "that signal (MinhOS's trade has no peer).",
    "same_bar_both_levels: when one bar touches both the stop and the take-profit MinhOS takes the stop. So does "
    "backtesting.py: a stop-loss order goes to the head of its order queue (l.811 `self.orders.insert(0 if trade "
    "and stop else len(self.orders), order)`, 'Ensure SL orders are processed first'), orders fill in queue "
    "order (l.881) and a filled stop closes the trade and removes its take-profit (l.1082-1084), at min(open, "
    "stop) for a long (l.919-921), MinhOS's gap rule. So such a bar gives no difference beyond "
    "slippage_as_commission; an exit reason that differs on a bar touching both levels is classified here.",
    "stale_entry: MinhOS's paper broker does not take an entry whose next bar comes after a gap (more than one "
    "bar step after the signal bar: trading/brokers/paper.py _fill_entries); backtesting.py knows no bar grid "
    "and fills at the next row. (minhos_trades calls trading.domain.broker only, so it fills there too.) A peer "
    "trade without MinhOS's whose entry bar follows such a gap differs by this rule.",
    "out_of_money: backtesting.py stops the whole run when equity falls to 0 or below (l.867-873 "
    "`_OutOfMoneyError`); MinhOS's backtest has no such stop. The peer's margin of 1e-6 keeps its cash check "
    "(l.1006-1013, an order refused for insufficient margin) from refusing what MinhOS sized. Trades missing "
    "from the peer after its equity ran out are not classified by trades_compare (it does not see the cash): "
    "they count as unexplained.",
    "price_floor: MinhOS never fills below one tick (slippage cannot make a price zero or negative); "
    "backtesting.py has no floor. Only for prices within a slippage of zero.",
)
RULE_NAMES = tuple(rule.split(":", 1)[0] for rule in RULES)


@dataclass(frozen=True)
class PeerSignal:
    """One entry: placed after the close of the bar opening at `signal_at` (MinhOS's signal bar), filled at the
    next bar's open. Distances are price points from the fill price; `horizon_bars` counts the bars after the
    signal bar."""

    signal_at: datetime
    side: str
    contracts: int
    stop_distance: Decimal
    take_profit_distance: Decimal
    horizon_bars: int

    def __post_init__(self):
        if not isinstance(self.signal_at, datetime) or self.signal_at.utcoffset() is None:
            raise ValueError(f"signal_at must be a timezone-aware datetime, got {self.signal_at!r}")
        if self.side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', got {self.side!r}")
        for name in ("contracts", "horizon_bars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("stop_distance", "take_profit_distance"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a Decimal > 0, got {value!r}")


@dataclass(frozen=True)
class PeerTrade:
    """One closed trade; prices in points, `net_pnl` in money after both commissions."""

    side: str
    contracts: int
    entry_at: datetime
    entry_price: Decimal
    exit_at: datetime
    exit_price: Decimal
    exit_reason: str
    net_pnl: Decimal


@dataclass(frozen=True)
class PeerResult:
    trades: list[PeerTrade]
    seconds: float
    bars: int
    bars_per_s: float


def _sign(side: str) -> int:
    return 1 if side == "long" else -1


def _on_grid(values: pd.Series, tick: Decimal) -> list[Decimal]:
    """Float prices as the Decimal ticks they are (bars are on the tick grid; float noise is dropped)."""
    steps = np.rint(values.to_numpy(dtype=float) / float(tick)).astype(np.int64)
    return [int(step) * tick for step in steps]


def _check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame) or not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars must be a DataFrame indexed by the bars' open times (a DatetimeIndex)")
    if bars.index.tz is None or bars.index.tz.utcoffset(None) != pd.Timedelta(0):
        raise ValueError("the bars' index must be UTC")
    if not bars.index.is_monotonic_increasing or not bars.index.is_unique:
        raise ValueError("the bars' index must be increasing")
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack the columns {', '.join(missing)}")
    return bars


def _signal_rows(bars: pd.DataFrame, signals) -> list[int]:
    """Each signal's bar: its row in `bars`."""
    rows = bars.index.get_indexer(pd.DatetimeIndex([pd.Timestamp(s.signal_at) for s in signals]))
    for signal, row in zip(signals, rows):
        if row < 0:
            raise ValueError(f"no bar opens at the signal time {signal.signal_at.isoformat()}")
    return [int(row) for row in rows]


def _peer_levels(side: str, fill: Decimal, signal: PeerSignal, tick: Decimal) -> tuple[Decimal, Decimal]:
    """The peer's (stop, take-profit): the distances from `fill`, rounded to the tick grid away from it."""
    def away(price: Decimal, up: bool) -> Decimal:
        steps = Fraction(price) / Fraction(tick)
        return (math.ceil(steps) if up else math.floor(steps)) * tick
    if side == "long":
        return away(fill - signal.stop_distance, False), away(fill + signal.take_profit_distance, True)
    return away(fill + signal.stop_distance, True), away(fill - signal.take_profit_distance, False)


def peer_run(
    bars: pd.DataFrame,
    signals: list[PeerSignal],
    *,
    tick_size: Decimal,
    point_value: Decimal,
    commission_per_contract: Decimal,
    slippage_ticks: int,
    cash: Decimal,
) -> PeerResult:
    """Run `signals` on `bars` through backtesting.py (the mapping: the module's docstring)."""
    from backtesting import Backtest, Strategy

    started = time.perf_counter()  # the whole run: the bars and signals in, the trade list out
    bars = _check_bars(bars)
    tick, pv, slip = Decimal(tick_size), Decimal(point_value), slippage_ticks * Decimal(tick_size)
    opens = _on_grid(bars["open"], tick)
    frame = pd.DataFrame(
        {column.capitalize(): np.rint(bars[column].to_numpy(dtype=float) / float(tick)) * float(tick * pv)
         for column in ("open", "high", "low", "close")},
        index=bars.index,
    )
    frame["Volume"] = bars["volume"].to_numpy(dtype=float)

    # Per signal bar, the orders to place: (tag, side, contracts, stop, take-profit), prices times the point value.
    orders: dict[int, list[tuple]] = defaultdict(list)
    time_exits: dict[int, list[int]] = defaultdict(list)
    for tag, (signal, row) in enumerate(zip(signals, _signal_rows(bars, signals))):
        if row + 1 >= len(bars):
            continue  # no bar to fill at
        fill = opens[row + 1] + _sign(signal.side) * slip
        stop, take = _peer_levels(signal.side, fill, signal, tick)
        orders[row].append((tag, signal.side, signal.contracts, float(stop * pv), float(take * pv)))
        time_exits[row + signal.horizon_bars].append(tag)
    per_fill = float(commission_per_contract + slip * pv)
    closed_by_time: set[int] = set()

    class Peer(Strategy):
        def init(self):
            pass

        def next(self):
            i = len(self.data) - 1
            if i in time_exits:
                due = set(time_exits[i])
                for trade in self.trades:
                    if trade.tag in due:
                        closed_by_time.add(trade.tag)
                        trade.close()
            for tag, side, contracts, stop, take in orders.get(i, ()):
                place = self.buy if side == "long" else self.sell
                try:
                    place(size=contracts, sl=stop, tp=take, tag=tag)
                except ValueError:
                    pass  # rule bracket_outside_signal_close

    with warnings.catch_warnings():
        # "Some prices are larger than initial cash value": futures trade on margin (PEER_MARGIN).
        warnings.simplefilter("ignore")
        backtest = Backtest(frame, Peer, cash=float(cash), spread=0.0,
                            commission=lambda size, price: abs(size) * per_fill, margin=PEER_MARGIN,
                            trade_on_close=False, hedging=True, exclusive_orders=False, finalize_trades=True)
        stats = backtest.run()
    strategy = stats["_strategy"]
    trades = [_peer_trade(t, signals, closed_by_time, tick, pv) for t in strategy.closed_trades]
    trades.sort(key=lambda t: (t.entry_at, t.exit_at))
    seconds = time.perf_counter() - started
    return PeerResult(trades=trades, seconds=seconds, bars=len(bars),
                      bars_per_s=len(bars) / seconds if seconds else 0.0)


def _peer_trade(trade, signals, closed_by_time: set[int], tick: Decimal, pv: Decimal) -> PeerTrade:
    def price(value: float) -> Decimal:
        return int(round(value / float(tick * pv))) * tick

    signal = signals[trade.tag]
    exit_price = price(trade.exit_price)
    if trade.tag in closed_by_time:
        reason = "time"
    else:
        stop, take = price(trade.sl), price(trade.tp)
        sign = _sign(signal.side)
        # A stop fills at or beyond the stop, a take-profit at or beyond the take-profit; the end at neither.
        reason = ("stop_loss" if sign * (exit_price - stop) <= 0 else
                  "take_profit" if sign * (exit_price - take) >= 0 else "end")
    return PeerTrade(
        side=signal.side, contracts=abs(int(trade.size)),
        entry_at=trade.entry_time.to_pydatetime(), entry_price=price(trade.entry_price),
        exit_at=trade.exit_time.to_pydatetime(), exit_price=exit_price, exit_reason=reason,
        net_pnl=Decimal(repr(round(float(trade.pl), 6))),
    )


def minhos_trades(
    bars: pd.DataFrame,
    signals: list[PeerSignal],
    *,
    tick_size: Decimal,
    point_value: Decimal,
    commission_per_contract: Decimal,
    slippage_ticks: int,
) -> list[PeerTrade]:
    """The same signals under MinhOS's paper broker rules (`trading.domain.broker`): entry at the next bar's open,
    the bracket from the fill, exits from the entry bar on. A trade still open at the last bar is left out."""
    bars = _check_bars(bars)
    tick, pv = Decimal(tick_size), Decimal(point_value)
    costs = FillCosts(tick_size=tick, slippage_ticks=slippage_ticks, commission_per_contract=commission_per_contract)
    columns = {c: _on_grid(bars[c], tick) for c in ("open", "high", "low", "close")}
    stamps = [t.to_pydatetime() for t in bars.index]
    prices: dict[int, BarPrices] = {}

    def bar(row: int) -> BarPrices:
        if row not in prices:
            prices[row] = BarPrices(stamps[row], *(columns[c][row] for c in ("open", "high", "low", "close")))
        return prices[row]

    trades = []
    for signal, row in zip(signals, _signal_rows(bars, signals)):
        if row + 1 >= len(bars):
            continue
        fill = entry_price(signal.side, bar(row + 1), costs)
        bracket = bracket_at(signal.side, fill, signal.take_profit_distance, signal.stop_distance,
                             signal.horizon_bars, tick)
        for held, at in enumerate(range(row + 1, len(bars)), start=1):
            exit_ = bracket_exit(bracket, bar(at), held, costs)
            if exit_ is not None:
                gross = _sign(signal.side) * (exit_.price - fill) * pv * signal.contracts
                trades.append(PeerTrade(
                    side=signal.side, contracts=signal.contracts, entry_at=stamps[row + 1], entry_price=fill,
                    exit_at=exit_.timestamp, exit_price=exit_.price, exit_reason=exit_.reason,
                    net_pnl=gross - 2 * commission(signal.contracts, costs),
                ))
                break
    trades.sort(key=lambda t: (t.entry_at, t.exit_at))
    return trades


def _text(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return None if value is None else str(value)


def trades_compare(
    ours: list[PeerTrade],
    peer: list[PeerTrade],
    *,
    bars: pd.DataFrame,
    signals: list[PeerSignal],
    tick_size: Decimal,
    point_value: Decimal,
    slippage_ticks: int,
) -> dict:
    """Match the two lists by entry time and side (in order where several share both) and explain every
    difference by a rule of `RULES`, or "unexplained"."""
    bars = _check_bars(bars)
    tick, pv, slip = Decimal(tick_size), Decimal(point_value), slippage_ticks * Decimal(tick_size)
    index = bars.index
    stamps = [t.to_pydatetime() for t in index]
    row_of = {stamp: row for row, stamp in enumerate(stamps)}
    columns = {c: _on_grid(bars[c], tick) for c in ("open", "high", "low", "close")}
    step = pd.Series(index).diff().mode().iloc[0] if len(index) > 1 else None
    by_entry: dict[tuple, list[PeerSignal]] = defaultdict(list)
    for signal, row in zip(signals, _signal_rows(bars, signals)):
        if row + 1 < len(bars):
            by_entry[(stamps[row + 1], signal.side)].append(signal)

    differences = []

    def note(entry_at, field, ours_value, peer_value, rule):
        differences.append({"entry_at": _text(entry_at), "field": field, "ours": _text(ours_value),
                            "peer": _text(peer_value), "rule": rule})

    def touches_both(trade: PeerTrade, signal: PeerSignal, row: int) -> bool:
        fill = columns["open"][row_of[trade.entry_at]] + _sign(trade.side) * slip
        stop, take = _peer_levels(trade.side, fill, signal, tick)
        high, low = columns["high"][row], columns["low"][row]
        if trade.side == "long":
            return low <= stop and high >= take
        return high >= stop and low <= take

    def unmatched_ours(trade: PeerTrade, signal: PeerSignal | None) -> str:
        entry_row = row_of.get(trade.entry_at)
        if signal is None or entry_row is None:
            return UNEXPLAINED
        if entry_row - 1 == 0:
            return "first_bar"
        stop, take = _peer_levels(trade.side, columns["open"][entry_row] + _sign(trade.side) * slip, signal, tick)
        close = columns["close"][entry_row - 1]
        inside = stop < close < take if trade.side == "long" else take < close < stop
        return UNEXPLAINED if inside else "bracket_outside_signal_close"

    def unmatched_peer(trade: PeerTrade) -> str:
        if trade.exit_reason == "end" or trade.exit_at == stamps[-1]:
            return "open_at_end"
        entry_row = row_of.get(trade.entry_at)
        if entry_row and step is not None and index[entry_row] - index[entry_row - 1] > step:
            return "stale_entry"
        return UNEXPLAINED

    def exit_rule(o: PeerTrade, p: PeerTrade, signal: PeerSignal | None) -> str:
        sign = _sign(o.side)
        if "end" in (o.exit_reason, p.exit_reason) or p.exit_at == stamps[-1] and o.exit_reason == "time":
            return "open_at_end"
        if o.exit_reason != p.exit_reason:
            if {o.exit_reason, p.exit_reason} == {"stop_loss", "take_profit"} and o.exit_at == p.exit_at \
                    and signal is not None and touches_both(o, signal, row_of[o.exit_at]):
                return "same_bar_both_levels"
            return UNEXPLAINED
        if o.exit_reason == "time":
            k = row_of.get(o.exit_at)
            if k is None or k + 1 >= len(stamps) or p.exit_at != stamps[k + 1] \
                    or p.exit_price != columns["open"][k + 1]:
                return UNEXPLAINED
            close = o.exit_price + sign * slip
            expected = sign * (p.exit_price - close) * pv * o.contracts
            return "time_exit_next_open" if p.net_pnl - o.net_pnl == expected else UNEXPLAINED
        if o.exit_at != p.exit_at:
            return UNEXPLAINED
        if o.exit_reason == "stop_loss":
            ok = sign * (p.exit_price - o.exit_price) in (slip, 0) and p.net_pnl == o.net_pnl
        else:  # take-profit: same price, one slippage more in the peer's commission
            ok = p.exit_price == o.exit_price and o.net_pnl - p.net_pnl == slip * pv * o.contracts
        if ok:
            return "slippage_as_commission"
        if o.exit_price == tick or p.exit_price == tick:
            return "price_floor"
        return UNEXPLAINED

    ours_by: dict[tuple, list[PeerTrade]] = defaultdict(list)
    peer_by: dict[tuple, list[PeerTrade]] = defaultdict(list)
    for trade in ours:
        ours_by[(trade.entry_at, trade.side)].append(trade)
    for trade in peer:
        peer_by[(trade.entry_at, trade.side)].append(trade)
    matched = 0
    for key in sorted(set(ours_by) | set(peer_by), key=lambda k: (k[0], k[1])):
        ours_list, peer_list, candidates = ours_by.get(key, []), peer_by.get(key, []), by_entry.get(key, [])
        for n, (o, p) in enumerate(zip(ours_list, peer_list)):
            matched += 1
            signal = candidates[n] if n < len(candidates) else None
            if o.contracts != p.contracts:
                note(o.entry_at, "contracts", o.contracts, p.contracts, UNEXPLAINED)
            if o.entry_price != p.entry_price:
                rule = ("slippage_as_commission" if _sign(o.side) * (o.entry_price - p.entry_price) == slip
                        else "price_floor" if o.entry_price == tick else UNEXPLAINED)
                note(o.entry_at, "entry_price", o.entry_price, p.entry_price, rule)
            rule = exit_rule(o, p, signal)
            for field in ("exit_reason", "exit_at", "exit_price", "net_pnl"):
                if getattr(o, field) != getattr(p, field):
                    note(o.entry_at, field, getattr(o, field), getattr(p, field), rule)
        for n, o in enumerate(ours_list[len(peer_list):], start=len(peer_list)):
            note(o.entry_at, "trade", f"{o.side} {o.exit_reason}", None,
                 unmatched_ours(o, candidates[n] if n < len(candidates) else None))
        for p in peer_list[len(ours_list):]:
            note(p.entry_at, "trade", None, f"{p.side} {p.exit_reason}", unmatched_peer(p))

    by_rule = Counter(d["rule"] for d in differences)
    return {"ours": len(ours), "peer": len(peer), "matched": matched, "differences": differences,
            "unexplained": by_rule.get(UNEXPLAINED, 0), "by_rule": dict(sorted(by_rule.items()))}
