"""The live shell's loads: the engine's state of one account in one market, read in a few queries (`domain.engine`).

Settlement and decisions call these inside the account's locked transaction, hand the state to the engine and
write back the events it returns (`execution`, `recommendations`).
"""
from __future__ import annotations

from datetime import datetime

from django.db import connection

from .. import selectors
from ..domain import engine
from ..domain.calendar import trading_day_start
from ..models import Account, Bar, EquitySnapshot, Instrument, Order, Position, TradingConfig


def market_of(instrument: Instrument, timeframe: str) -> engine.Market:
    return engine.Market(instrument_id=instrument.pk, symbol=instrument.symbol, timeframe=timeframe,
                         tick_size=instrument.tick_size, point_value=instrument.point_value)


def config_of(config: TradingConfig) -> engine.Config:
    return engine.Config.of(config)


def account_figures(account: Account) -> engine.AccountFigures:
    return engine.AccountFigures(starting_equity=account.starting_equity, peak_equity=account.peak_equity,
                                 trading_state=account.trading_state,
                                 breaker_tripped=account.circuit_breaker_tripped,
                                 breaker_reason=account.circuit_breaker_reason,
                                 settlement_fault=account.settlement_fault, auto_trading=account.auto_trading)


def state_load(*, account: Account, instrument: Instrument, timeframe: str, at: datetime,
               opening: tuple | None = None, entries_today: int | None = None,
               exposure_elsewhere: bool = False, positions: list[Position] | None = None,
               ) -> tuple[engine.State, Position | None]:
    """The account's state in this market at market time `at`, and its position row here (None: none yet).

    `opening` ((day start, equity or None)) and `entries_today` may come from the query the caller made anyway; otherwise they are read here. With `exposure_elsewhere` the working entries and open trades
    of the account's other markets are read too (a decision's limits count them; settlement does not need them).
    `positions`: the account's position rows, if the caller has read them (`positions_load`)."""
    state = engine.State(market=market_of(instrument, timeframe), account=account_figures(account))
    row = None
    for position in Position.objects.filter(account=account) if positions is None else positions:
        if position.instrument_id == instrument.pk:
            row = position
            state.position = engine.Position(ledger=_ledger(position), mark_price=position.mark_price,
                                             unrealized_pnl=position.unrealized_pnl)
        else:
            state.others_realized += position.realized_pnl - position.commissions
            state.others_unrealized += position.unrealized_pnl
            if position.quantity:
                state.others_positions[position.instrument_id] = position.quantity
    for order in (Order.objects.filter(account=account, instrument=instrument, timeframe=timeframe,
                                       kind=Order.Kind.ENTRY)
                  .filter(_alive()).select_related("recommendation", "fill").order_by("id")):
        state.entries[order.pk] = _entry(order)
    day_start = trading_day_start(at)
    if opening is None:
        opening = (day_start, EquitySnapshot.objects.filter(account=account, timestamp__lt=day_start)
                   .order_by("-timestamp").values_list("equity", flat=True).first())
    state.openings[opening[0]] = opening[1]
    if entries_today is not None:
        state.entry_fills[day_start] = entries_today
    if exposure_elsewhere:
        state.others_exposure = tuple(_exposure_elsewhere(account, instrument, timeframe))
    return state, row


def positions_load(account: Account) -> list[Position]:
    """The account's position rows with their instruments, by symbol (as the dashboard lists them)."""
    return list(Position.objects.filter(account=account).select_related("instrument").order_by("instrument__symbol"))


def _alive():
    from django.db.models import Q

    return Q(status=Order.Status.PENDING) | Q(status=Order.Status.FILLED, closed=False)


def _ledger(position: Position):
    from ..domain.ledger import PositionState

    return PositionState(quantity=position.quantity, average_price=position.average_price,
                         realized_pnl=position.realized_pnl, commissions=position.commissions, fills=position.fills,
                         cost_basis=position.cost_basis)


def _entry(order: Order) -> engine.Entry:
    recommendation = order.recommendation
    fill = getattr(order, "fill", None) if order.status == Order.Status.FILLED else None
    return engine.Entry(
        key=order.pk, recommendation=order.recommendation_id, side="long" if order.side == "buy" else "short",
        quantity=order.quantity, after_bar_timestamp=order.after_bar_timestamp,
        horizon_bars=order.horizon_bars or recommendation.horizon_bars,
        take_profit_distance=recommendation.take_profit_distance, stop_distance=recommendation.stop_distance,
        status=engine.FILLED if order.status == Order.Status.FILLED else engine.WORKING,
        fill_price=fill.price if fill else None, fill_timestamp=fill.timestamp if fill else None,
        take_profit=order.take_profit, stop_loss=order.stop_loss, bars_held=order.bars_held,
        last_bar_timestamp=order.last_bar_timestamp, closed=order.closed)


def missed_bars(state: engine.State, bar: Bar) -> tuple[tuple, dict]:
    """Stored bars before `bar` that an open trade's bracket has not seen (only after a settlement failed or bars
    were settled out of order), as prices, and their ids by timestamp."""
    step = state.market.step
    since = []
    for entry in state.entries.values():
        if entry.status != engine.FILLED:
            continue
        last = entry.last_bar_timestamp
        if last is None and entry.fill_timestamp < bar.timestamp:
            since.append(entry.fill_timestamp - step)
        elif last is not None and last + step < bar.timestamp:
            since.append(last)
    if not since:
        return (), {}
    rows = list(Bar.objects.filter(instrument_id=bar.instrument_id, timeframe=bar.timeframe,
                                   timestamp__gt=min(since), timestamp__lt=bar.timestamp).order_by("timestamp"))
    return tuple(prices(b) for b in rows), {b.timestamp: b.pk for b in rows}


def prices(bar: Bar):
    from ..domain.broker import BarPrices

    return BarPrices(timestamp=bar.timestamp, open=bar.open, high=bar.high, low=bar.low, close=bar.close)


def _exposure_elsewhere(account: Account, instrument: Instrument, timeframe: str):
    """The working entries and open trades of the account's other markets, as the limits count them."""
    with connection.cursor() as cursor:
        cursor.execute(_ELSEWHERE_SQL, [account.pk, instrument.pk, timeframe])
        return list(selectors.exposure_entries(cursor.fetchall()))


_ELSEWHERE_SQL = """
SELECT o.instrument_id, o.side, o.quantity, o.status, o.stop_loss, r.stop_distance, f.price, p.mark_price,
       i.tick_size, i.point_value, c.slippage_ticks, c.commission_per_contract
FROM trading_order o
JOIN trading_recommendation r ON r.id = o.recommendation_id
JOIN trading_instrument i ON i.id = o.instrument_id
LEFT JOIN trading_fill f ON f.order_id = o.id
LEFT JOIN trading_position p ON p.account_id = o.account_id AND p.instrument_id = o.instrument_id
LEFT JOIN trading_tradingconfig c ON c.account_id = o.account_id AND c.instrument_id = o.instrument_id
WHERE o.account_id = %s AND o.kind = 'entry' AND NOT (o.instrument_id = %s AND o.timeframe = %s)
  AND (o.status = 'pending' OR (o.status = 'filled' AND NOT o.closed))
"""
