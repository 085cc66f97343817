"""The per-bar engine: every rule of a bar, once, over plain state. No Django, no database.

    settle(state, bar, config)          -> (state, events)            fills, brackets, marks, equity, breaker, expiry
    decide(state, facts, config, clock) -> (state, decision, events)  Kelly, risk, the superseded rule, auto-approval

Two shells drive it (DESIGN.md, "The engine"): the live services load the state a step needs, call it and write its
events in one transaction; the memory shell (`trading.backtest_memory`) keeps the state in memory over a whole
backtest and writes everything once at the end. A parity test runs both over the same bars.

The state holds what is still alive (one account's position in this market, its working entries and open trades, its
pending recommendations, the day's figures); what has ended leaves as events. Values are rounded to the precision
their column stores them at (prices 6 dp, money 2 dp, ledger 10 dp; half away from zero, as PostgreSQL's numeric
does), so a value read back from the database on the next bar and the value kept in memory are the same number.
`state` is changed in place and returned: a shell that must not keep a half-applied state (the live one, when its
transaction fails) builds a fresh one for each step.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from .broker import BarPrices, Bracket, FillCosts, bracket_at, bracket_exit, commission, entry_price
from .calendar import trading_day_start
from .checks import money
from .exposure import EntryExposure, exposure, open_trade_loss, working_entry_loss
from .kelly import KellyConfig, KellyInputs, kelly_size
from .ledger import FillEvent, PositionState
from .risk import Decision as RiskDecision
from .risk import Proposal, RiskContext, RiskLimits, RiskVerdict, TradingState, assess, daily_loss_reached
from .sides import Side
from .timeframes import timeframe_delta

PRICE_PLACES = Decimal("0.000001")
MONEY_PLACES = Decimal("0.01")
LEDGER_PLACES = Decimal("0.0000000001")

# Recommendation states and order statuses, as the records store them.
PENDING, APPROVED, EXECUTED, EXPIRED, BLOCKED = "pending", "approved", "executed", "expired", "blocked"
WORKING, FILLED, CANCELLED = "pending", "filled", "cancelled"


def price(value: Decimal) -> Decimal:
    return value.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)


def cents(value: Decimal) -> Decimal:
    return value.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def ledger(value: Decimal) -> Decimal:
    return value.quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


# --- the inputs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Market:
    """The contract terms of the market being traded."""

    instrument_id: int
    symbol: str
    timeframe: str
    tick_size: Decimal
    point_value: Decimal

    @property
    def step(self) -> timedelta:
        return timeframe_delta(self.timeframe)


@dataclass(frozen=True)
class Config:
    """One account's trading configuration for the market (TradingConfig's fields), and the breaker policy."""

    kelly_fraction: float
    min_confidence: float
    max_contracts: int
    max_position_contracts: int
    max_total_contracts: int
    daily_loss_limit: Decimal
    max_drawdown: float
    max_trades_per_day: int
    stale_after_seconds: float
    health_floor: float
    health_full_size_floor: float
    recommendation_ttl_bars: int
    slippage_ticks: int
    commission_per_contract: Decimal
    # A backtest's "daily" policy: a tripped breaker is reset at the next trading day's first bar, as a person at the
    # desk would. Live accounts hold it until a person resets it.
    breaker_resets_daily: bool = False

    FIELDS = ("kelly_fraction", "min_confidence", "max_contracts", "max_position_contracts", "max_total_contracts",
              "daily_loss_limit", "max_drawdown", "max_trades_per_day", "stale_after_seconds", "health_floor",
              "health_full_size_floor", "recommendation_ttl_bars", "slippage_ticks", "commission_per_contract")

    @classmethod
    def of(cls, source, *, breaker_resets_daily: bool = False) -> Config:
        """From anything with the fields as attributes (a TradingConfig row) or keys (a backtest's stored copy)."""
        get = source.__getitem__ if isinstance(source, dict) else source.__getattribute__
        values = {name: get(name) for name in cls.FIELDS}
        for name in ("daily_loss_limit", "commission_per_contract"):
            values[name] = Decimal(str(values[name]))
        return cls(**values, breaker_resets_daily=breaker_resets_daily)

    def costs(self, market: Market) -> FillCosts:
        return _costs(market.tick_size, self.slippage_ticks, self.commission_per_contract)

    def limits(self) -> RiskLimits:
        return _limits(self)

    def kelly(self) -> KellyConfig:
        return _kelly(self)

    def _limits(self) -> RiskLimits:
        return RiskLimits(min_confidence=self.min_confidence, max_position_contracts=self.max_position_contracts,
                          max_total_contracts=self.max_total_contracts, daily_loss_limit=self.daily_loss_limit,
                          max_drawdown=self.max_drawdown, max_trades_per_day=self.max_trades_per_day,
                          stale_after_seconds=self.stale_after_seconds, health_floor=self.health_floor)

    def _kelly(self) -> KellyConfig:
        return KellyConfig(kelly_fraction=self.kelly_fraction, confidence_threshold=self.min_confidence,
                           max_contracts=self.max_contracts, max_drawdown=self.max_drawdown,
                           health_full_at=self.health_full_size_floor, health_zero_at=self.health_floor)


# Built once per configuration, not once a bar: their validation (time zones included) is most of a decision's cost.
@lru_cache(maxsize=256)
def _costs(tick_size: Decimal, slippage_ticks: int, commission_per_contract: Decimal) -> FillCosts:
    return FillCosts(tick_size=tick_size, slippage_ticks=slippage_ticks, commission_per_contract=commission_per_contract)


@lru_cache(maxsize=256)
def _limits(config: Config) -> RiskLimits:
    return config._limits()


@lru_cache(maxsize=256)
def _kelly(config: Config) -> KellyConfig:
    return config._kelly()


@dataclass(frozen=True)
class Clock:
    """What a decision knows of the moment: the decided bar's close (market time) and price, the wall clock, the
    market's newest stored bar and when it arrived, and the kill switch."""

    market_now: datetime
    wall_now: datetime
    bar_close: Decimal
    latest_bar_timestamp: datetime | None
    bar_received_at: datetime | None = None
    kill_switch: bool = False


# --- the state --------------------------------------------------------------------------------------------------

@dataclass
class Entry:
    """An entry order and, once filled, its trade with its bracket. `key` is the order's identity in the shell (the
    row's id live, a sequence number in memory); entries are worked in key order, as the broker works them by id."""

    key: object
    recommendation: object
    side: str  # "long" | "short"
    quantity: int
    after_bar_timestamp: datetime  # the last bar seen at approval: it fills at the open of the bar after
    horizon_bars: int
    take_profit_distance: Decimal  # the recommendation's, as stored
    stop_distance: Decimal
    status: str = WORKING
    fill_price: Decimal | None = None
    fill_timestamp: datetime | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    bars_held: int = 0
    last_bar_timestamp: datetime | None = None
    closed: bool = False


@dataclass
class Position:
    """The account's position in this market: its ledger state and its last mark."""

    ledger: PositionState = field(default_factory=PositionState)
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal = Decimal(0)


@dataclass
class AccountFigures:
    """The account's own fields the rules read and change."""

    starting_equity: Decimal
    peak_equity: Decimal
    trading_state: str = TradingState.ACTIVE.value
    breaker_tripped: bool = False
    breaker_reason: str = ""
    settlement_fault: str = ""
    auto_trading: bool = False


@dataclass
class State:
    """One account in one market. `others_*` are the account's figures in its other markets (live only): they count
    in its equity and exposure but no rule here changes them."""

    market: Market
    account: AccountFigures
    position: Position | None = None  # None until the first fill (no position row yet)
    entries: dict = field(default_factory=dict)  # key -> Entry: working, or filled and not closed
    pending: dict = field(default_factory=dict)  # recommendation key -> expires_after, for pending ones
    # The day's figures: the equity at the start of each trading day known so far (None: the starting equity), the
    # last snapshot, and the entries filled each trading day (a fill at or after the day's start and before now is
    # that day's: "today's entries").
    openings: dict = field(default_factory=dict)
    last_snapshot: tuple | None = None  # (at, equity as stored)
    entry_fills: dict = field(default_factory=dict)  # trading day start -> entries filled that day
    breaker_seen_day: datetime | None = None  # the daily policy: the trading day the trip was first seen on
    others_realized: Decimal = Decimal(0)  # net of commissions
    others_unrealized: Decimal = Decimal(0)
    others_positions: dict = field(default_factory=dict)  # instrument id -> signed net contracts
    others_exposure: tuple = ()  # EntryExposure of the other markets' entries


# --- the events -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EntryCancelled:
    entry: object
    recommendation: object
    recommendation_expired: bool  # it was approved: it expires, with `reason` added
    reason: str


@dataclass(frozen=True)
class Filled:
    """An order filled: an entry (`exit_reason` empty) or a bracket exit of the entry `entry`."""

    entry: object
    recommendation: object
    exit_reason: str  # "" for the entry, else take_profit / stop_loss / time
    order_side: str  # "buy" | "sell"
    quantity: int
    price: Decimal
    commission: Decimal
    timestamp: datetime  # the bar's timestamp
    take_profit: Decimal
    stop_loss: Decimal


@dataclass(frozen=True)
class BracketRun:
    """An open trade's bracket was run against a bar (once per bar)."""

    entry: object
    bars_held: int
    last_bar_timestamp: datetime
    closed: bool


@dataclass(frozen=True)
class PositionChanged:
    position: Position
    marked: bool  # marked to the bar's close (the snapshot's mark)


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    peak_equity: Decimal
    drawdown: float
    peak_raised: bool  # the account's peak equity is now `peak_equity`


@dataclass(frozen=True)
class BreakerTripped:
    reason: str
    state_before: str


@dataclass(frozen=True)
class BreakerReset:
    reason: str  # why it had tripped
    state_before: str
    day: datetime  # the trading day it was reset at


@dataclass(frozen=True)
class FaultCleared:
    fault: str


@dataclass(frozen=True)
class RecommendationsExpired:
    recommendations: tuple


@dataclass(frozen=True)
class Approved:
    """A recommendation auto-approved; its entry order is `entry` (added to the state's entries)."""

    recommendation: object
    entry: Entry
    contracts: int
    risk_decision: str


# --- figures ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    """An account's figures at one moment (market time `at`), as sizing and the snapshot read them."""

    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    peak_equity: Decimal
    drawdown: float
    daily_pnl: Decimal
    trades_today: int
    day_start: datetime


def figures(state: State, at: datetime) -> Figures:
    """Equity = starting equity + realised P&L net of commissions + unrealised P&L at the last marks; the day's P&L
    is equity now minus the equity at the start of the trading day; drawdown from the highest equity seen."""
    realized, unrealized = state.others_realized, state.others_unrealized
    if state.position is not None:
        held = state.position.ledger
        realized += held.realized_pnl - held.commissions
        unrealized += state.position.unrealized_pnl
    account = state.account
    equity = account.starting_equity + realized + unrealized
    peak = max(account.peak_equity, equity)
    drawdown = float((peak - equity) / peak) if peak > 0 else 1.0
    day_start = trading_day_start(at)
    opening = opening_equity(state, day_start)
    trades = state.entry_fills.get(day_start, 0)
    return Figures(equity=equity, realized_pnl=realized, unrealized_pnl=unrealized, peak_equity=peak,
                   drawdown=max(0.0, drawdown), daily_pnl=equity - (account.starting_equity if opening is None
                                                                    else opening),
                   trades_today=trades, day_start=day_start)


def opening_equity(state: State, day_start: datetime) -> Decimal | None:
    """The last snapshot's equity before the trading day began (None: none before it, the starting equity)."""
    if day_start not in state.openings:
        last = state.last_snapshot
        # The shells give the opening of the day they start in; a later day opens at the last snapshot before it.
        state.openings[day_start] = last[1] if last is not None and last[0] < day_start else None
    return state.openings[day_start]


# --- settle -----------------------------------------------------------------------------------------------------

def fault_origin(symbol: str, timeframe: str) -> str:
    """How a settlement fault's reason starts: the market whose bar failed (only its bar clears it)."""
    return f"bar {symbol} {timeframe} "


def settle(state: State, bar: BarPrices, config: Config, *, missed: tuple[BarPrices, ...] = ()) -> tuple[State, list]:
    """Everything a closed bar means for the account: the daily breaker policy, fills of working entries at its
    open (or their cancellation after a gap), the brackets of open trades, the mark and the equity snapshot, the
    breaker, a settlement fault cleared, and pending recommendations past their time to live.

    `missed` are stored bars before `bar` that an open trade's bracket has not seen (after a failed settlement:
    the live shell passes them; a stop touched meanwhile still fills at that bar)."""
    events: list = []
    market, step = state.market, state.market.step
    close = bar.timestamp + step
    if config.breaker_resets_daily:
        _breaker_daily(state, close, events)
    costs = config.costs(market)
    changed = _fill_entries(state, bar, step, costs, events)
    changed = _run_brackets(state, bar, step, costs, missed, events) or changed
    _mark_and_snapshot(state, bar, close, config, events, changed)
    if state.account.settlement_fault.startswith(fault_origin(market.symbol, market.timeframe)):
        events.append(FaultCleared(state.account.settlement_fault))
        state.account.settlement_fault = ""
    expired = expire(state.pending, bar.timestamp)
    if expired:
        for key in expired:
            del state.pending[key]
        events.append(RecommendationsExpired(expired))
    return state, events


def expire(pending: dict, latest_bar_timestamp: datetime) -> tuple:
    """Pending recommendations whose time to live has passed: a bar later than `expires_after` exists."""
    return tuple(key for key, expires_after in pending.items() if expires_after < latest_bar_timestamp)


def _breaker_daily(state: State, close: datetime, events: list) -> None:
    account = state.account
    if not account.breaker_tripped:
        state.breaker_seen_day = None
        return
    day = trading_day_start(close)
    if state.breaker_seen_day is None or day <= state.breaker_seen_day:
        state.breaker_seen_day = state.breaker_seen_day or day
        return
    events.append(BreakerReset(reason=account.breaker_reason, state_before=account.trading_state, day=day))
    account.breaker_tripped, account.breaker_reason = False, ""
    account.trading_state = TradingState.ACTIVE.value
    state.breaker_seen_day = None


def _apply(state: State, fill: Filled) -> None:
    """A fill changes the position (the only way it changes): the ledger's rule, stored at ledger precision."""
    position = state.position if state.position is not None else Position()
    after = position.ledger.apply(FillEvent(side=fill.order_side, quantity=fill.quantity, price=fill.price,
                                            commission=fill.commission, timestamp=fill.timestamp),
                                  state.market.point_value)
    state.position = Position(ledger=_stored(after), mark_price=position.mark_price,
                              unrealized_pnl=position.unrealized_pnl)


def _stored(held: PositionState) -> PositionState:
    return PositionState(quantity=held.quantity, average_price=price(held.average_price),
                         realized_pnl=ledger(held.realized_pnl), commissions=ledger(held.commissions),
                         fills=held.fills, cost_basis=ledger(held.cost_basis) if held.quantity else None)


def _fill_entries(state: State, bar: BarPrices, step: timedelta, costs: FillCosts, events: list) -> bool:
    filled = False
    for key in sorted(state.entries, key=_order):
        entry = state.entries[key]
        if entry.status != WORKING or not entry.after_bar_timestamp < bar.timestamp:
            continue
        # The next bar should follow the approval at once; one that comes after a gap (a feed outage, the weekend)
        # opens in another market than the one the recommendation was sized for, so the entry is not taken.
        if bar.timestamp > entry.after_bar_timestamp + step:
            gap = bar.timestamp - entry.after_bar_timestamp
            entry.status = CANCELLED
            del state.entries[key]
            events.append(EntryCancelled(
                entry=key, recommendation=entry.recommendation, recommendation_expired=True,
                reason=(f"entry not taken: the next bar ({bar.timestamp:%Y-%m-%d %H:%M} UTC) came {gap} after the "
                        f"last one seen at approval, so its open is not the market the recommendation was sized "
                        f"for")))
            continue
        fill_price = entry_price(entry.side, bar, costs)
        # The distances the recommendation showed when it was approved, around the actual fill price.
        bracket = bracket_at(entry.side, fill_price, entry.take_profit_distance, entry.stop_distance,
                             entry.horizon_bars, state.market.tick_size)
        entry.status, entry.fill_price, entry.fill_timestamp = FILLED, price(fill_price), bar.timestamp
        entry.take_profit, entry.stop_loss = price(bracket.take_profit), price(bracket.stop_loss)
        fill = Filled(entry=key, recommendation=entry.recommendation, exit_reason="",
                      order_side=Side(entry.side).order_side, quantity=entry.quantity, price=entry.fill_price,
                      commission=cents(commission(entry.quantity, costs)), timestamp=bar.timestamp,
                      take_profit=entry.take_profit, stop_loss=entry.stop_loss)
        _apply(state, fill)
        day = trading_day_start(bar.timestamp)
        state.entry_fills[day] = state.entry_fills.get(day, 0) + 1
        events.append(fill)
        filled = True
    return filled


def _run_brackets(state: State, bar: BarPrices, step: timedelta, costs: FillCosts, missed: tuple,
                  events: list) -> bool:
    exited = False
    for key in sorted(state.entries, key=_order):
        entry = state.entries[key]
        if entry.status != FILLED or entry.closed:
            continue
        if entry.fill_timestamp > bar.timestamp or (entry.last_bar_timestamp and
                                                    entry.last_bar_timestamp >= bar.timestamp):
            continue  # this bar is before the entry, or was already run against this trade
        bracket = Bracket(side=entry.side, entry=entry.fill_price, take_profit=entry.take_profit,
                          stop_loss=entry.stop_loss, horizon_bars=entry.horizon_bars)
        for prices in _bars_to_run(entry, bar, step, missed):
            entry.bars_held += 1
            entry.last_bar_timestamp = prices.timestamp
            exit_ = bracket_exit(bracket, prices, entry.bars_held, costs)
            if exit_ is not None:
                fill = Filled(entry=key, recommendation=entry.recommendation, exit_reason=exit_.reason,
                              order_side=Side(entry.side).closing_order_side, quantity=entry.quantity,
                              price=price(exit_.price), commission=cents(commission(entry.quantity, costs)),
                              timestamp=prices.timestamp, take_profit=entry.take_profit, stop_loss=entry.stop_loss)
                _apply(state, fill)
                events.append(fill)
                entry.closed = exited = True
                break
        events.append(BracketRun(entry=key, bars_held=entry.bars_held, last_bar_timestamp=entry.last_bar_timestamp,
                                 closed=entry.closed))
        if entry.closed:
            del state.entries[key]
    return exited


def _bars_to_run(entry: Entry, bar: BarPrices, step: timedelta, missed: tuple) -> list[BarPrices]:
    """The bars this trade's bracket has not seen, up to and including `bar`, oldest first: normally `bar` alone."""
    since = entry.last_bar_timestamp
    if (since is None and entry.fill_timestamp == bar.timestamp) or (since is not None and since + step >= bar.timestamp):
        return [bar]
    earlier = [b for b in missed if b.timestamp < bar.timestamp and (
        b.timestamp > since if since is not None else b.timestamp >= entry.fill_timestamp)]
    return [*earlier, bar]


def _mark_and_snapshot(state: State, bar: BarPrices, at: datetime, config: Config, events: list,
                       changed: bool) -> None:
    """Mark the position to the close, snapshot equity, and trip the breaker if the day's loss reached the limit (it
    stays tripped until reset)."""
    position = state.position
    if position is not None:
        position.mark_price = price(bar.close)
        position.unrealized_pnl = ledger(position.ledger.unrealized_pnl(bar.close, state.market.point_value))
        events.append(PositionChanged(position=position, marked=position.ledger.quantity != 0 or changed))
    now = figures(state, at)
    account = state.account
    raised = now.peak_equity > account.peak_equity
    if raised:
        account.peak_equity = cents(now.peak_equity)
    snapshot = Snapshot(at=at, equity=cents(now.equity), realized_pnl=cents(now.realized_pnl),
                        unrealized_pnl=cents(now.unrealized_pnl), peak_equity=cents(now.peak_equity),
                        drawdown=now.drawdown, peak_raised=raised)
    state.last_snapshot = (at, snapshot.equity)
    events.append(snapshot)
    if not account.breaker_tripped and daily_loss_reached(now.daily_pnl, config.daily_loss_limit):
        _trip(state, f"daily loss {money(-now.daily_pnl, config.daily_loss_limit)} reached the limit "
                     f"{money(config.daily_loss_limit)} ({state.market.symbol}, bar {bar.timestamp:%Y-%m-%d %H:%M} "
                     f"UTC)", events)


def _trip(state: State, reason: str, events: list) -> None:
    account = state.account
    if account.breaker_tripped:
        return
    events.append(BreakerTripped(reason, state_before=account.trading_state))
    account.breaker_tripped, account.breaker_reason = True, reason
    account.trading_state = TradingState.HALTED.value


def _order(key) -> tuple:
    # Integer keys (row ids, sequence numbers) in number order.
    return (0, key) if isinstance(key, int) else (1, str(key))


# --- decide -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BracketDistances:
    atr: Decimal
    stop_distance: Decimal
    take_profit_distance: Decimal


@dataclass(frozen=True)
class Recommendation:
    """What a decision records: the recommendation's fields (the prediction's own figures come with its facts)."""

    side: str
    reference_price: Decimal
    atr: Decimal  # stored precision
    stop_distance: Decimal
    take_profit_distance: Decimal
    horizon_bars: int
    kelly: dict
    kelly_contracts: int
    risk: dict
    risk_decision: str
    contracts: int
    reasons: list
    state: str
    expires_after: datetime


def bracket_distances(facts) -> BracketDistances | None:
    """The bracket distances from the model's multiples and the predicted bar's ATR (None if the ATR is unknown),
    unrounded: sizing uses these, the recommendation stores them at price precision."""
    if facts.atr is None or not facts.atr > 0:
        return None
    atr = Decimal(repr(facts.atr))
    return BracketDistances(atr=atr, stop_distance=atr * Decimal(repr(facts.stop_loss_atr)),
                            take_profit_distance=atr * Decimal(repr(facts.take_profit_atr)))


def health(score: float | None, has_edge: bool) -> float:
    """A version's health, 0..1, from its 0-100 score. Not scored yet (monitoring scores a version when it is
    promoted, so this is rare): full health only for a version with a validated out-of-sample edge, none otherwise:
    an unscored "No edge" version is never sized as if it were healthy."""
    if score is None:
        return 1.0 if has_edge else 0.0
    return max(0.0, min(1.0, score / 100.0))


def health_note(facts, model_health: float, factor: float, config: Config) -> str | None:
    """What the card says when model health shrank or stopped the size, and why (monitoring's reason)."""
    if factor >= 1.0:
        return None
    why = f" ({facts.health_reason})" if facts.health_reason else (
        " (not scored yet and no validated edge)" if facts.model_health is None else "")
    if factor <= 0.0:
        return (f"model health {model_health * 100:.0f}/100 is at or under the blocking floor "
                f"{config.health_floor * 100:.0f}: no size{why}")
    return (f"model health {model_health * 100:.0f}/100 is under the full-size floor "
            f"{config.health_full_size_floor * 100:.0f}: size scaled x{factor:.2f}{why}")


def volatility_ratio(facts) -> float:
    if not facts.atr or not facts.atr_reference:
        return 1.0
    return facts.atr / facts.atr_reference


def stop_out_cost(stop_distance: Decimal | None, market: Market, config: Config) -> Decimal | None:
    """What one contract loses if its stop fills: the distance plus the stop's slippage, in money, plus the
    commissions of entry and exit (a gap through the stop can cost more; the loss limit's breaker covers that)."""
    if stop_distance is None or stop_distance <= 0:
        return None
    slippage = config.slippage_ticks * market.tick_size
    return (stop_distance + slippage) * market.point_value + 2 * config.commission_per_contract


def bar_age_seconds(*, received_at: datetime | None, latest_timestamp: datetime | None, step: timedelta,
                    now: datetime) -> float:
    """Wall-clock seconds since the newest bar arrived (the feed's record), or since it closed if no feed says.
    Replayed bars carry market timestamps from the past, so the arrival time is the honest measure of staleness."""
    if received_at is not None:
        return max(0.0, (now - received_at).total_seconds())
    if latest_timestamp is None:
        return float("inf")
    return max(0.0, (now - (latest_timestamp + step)).total_seconds())


def account_exposure(state: State, config: Config):
    """What the working entries and open trades expose the account to (worst case per side, loss to the stops);
    working entries count: they fill together at the next bar's open."""
    market = state.market
    slippage = config.slippage_ticks * market.tick_size
    mark = state.position.mark_price if state.position is not None else None
    entries = list(state.others_exposure)
    for entry in state.entries.values():
        if entry.status == WORKING:
            loss = working_entry_loss(quantity=entry.quantity, stop_distance=entry.stop_distance, slippage=slippage,
                                      point_value=market.point_value,
                                      commission_per_contract=config.commission_per_contract)
        else:
            loss = open_trade_loss(side=entry.side, quantity=entry.quantity,
                                   mark=mark if mark is not None else entry.fill_price, stop_loss=entry.stop_loss,
                                   slippage=slippage, point_value=market.point_value,
                                   commission_per_contract=config.commission_per_contract)
        entries.append(EntryExposure(instrument_id=market.instrument_id, side=entry.side, quantity=entry.quantity,
                                     working=entry.status == WORKING, loss_to_stop=loss))
    positions = dict(state.others_positions)
    if state.position is not None and state.position.ledger.quantity:
        positions[market.instrument_id] = state.position.ledger.quantity
    return exposure(entries, positions=positions)


def risk_context(state: State, config: Config, clock: Clock, *, side: str, model_health: float,
                 now: Figures | None = None) -> tuple[Figures, RiskContext]:
    now = now or figures(state, clock.market_now)
    exposed = account_exposure(state, config)
    account = state.account
    context = RiskContext(
        now=clock.market_now,
        trading_state=TradingState(account.trading_state),
        kill_switch=clock.kill_switch,
        circuit_breaker_tripped=account.breaker_tripped,
        position_contracts=exposed.position_for(state.market.instrument_id, side),
        total_contracts=exposed.total,
        daily_pnl=now.daily_pnl,
        drawdown=now.drawdown,
        trades_today=now.trades_today + exposed.working_entries,
        last_bar_age_seconds=bar_age_seconds(received_at=clock.bar_received_at,
                                             latest_timestamp=clock.latest_bar_timestamp, step=state.market.step,
                                             now=clock.wall_now),
        model_health=model_health,
        settlement_fault=account.settlement_fault,
        committed_risk=exposed.committed_risk,
    )
    return now, context


def breaker_reason(verdict: RiskVerdict) -> str:
    failed = [check.message for check in verdict.checks if not check.passed and check.name == "daily_loss_limit"]
    return failed[0] if failed else "daily loss limit reached"


def decide(state: State, facts, config: Config, clock: Clock, *, key: object = None
           ) -> tuple[State, Recommendation, list]:
    """Size a prediction for the account: Kelly from the probability and the account's figures, every risk check,
    the superseded rule, and auto-approval. `key` names the recommendation in the shell (its entry points to it)."""
    events: list = []
    market = state.market
    bracket = bracket_distances(facts)
    model_health = health(facts.model_health, facts.version_has_edge)
    now, context = risk_context(state, config, clock, side=facts.side, model_health=model_health)
    kelly = kelly_size(
        KellyInputs(probability=facts.probability, payoff_ratio=facts.payoff_ratio, confidence=facts.confidence,
                    drawdown=now.drawdown, model_health=model_health, volatility_ratio=volatility_ratio(facts),
                    equity=now.equity, stop_distance=bracket.stop_distance if bracket else Decimal(0),
                    point_value=market.point_value),
        config.kelly())
    verdict = assess(Proposal(side=facts.side, contracts=kelly.contracts, confidence=facts.confidence,
                              risk_per_contract=stop_out_cost(bracket.stop_distance if bracket else None, market,
                                                              config)),
                     context, config.limits())
    if verdict.trip_circuit_breaker:
        _trip(state, breaker_reason(verdict), events)
    blocked = verdict.decision == RiskDecision.BLOCK or verdict.contracts <= 0
    reasons = list(verdict.reasons)
    if kelly.contracts == 0 and kelly.reason and kelly.reason not in reasons:
        reasons.insert(0, kelly.reason)
    note = health_note(facts, model_health, kelly.health_factor, config)
    if note:
        reasons.append(note)
    # A prediction sized after a newer bar has closed (a worker backlog, a retry) is about a market that has moved
    # on: it is recorded, never offered or auto-approved.
    latest = clock.latest_bar_timestamp
    superseded = latest is not None and latest > facts.bar_timestamp
    if superseded:
        reasons.insert(0, f"expired before it was offered: the bar of {latest:%Y-%m-%d %H:%M} UTC had already "
                          f"closed when this prediction of {facts.bar_timestamp:%H:%M} UTC was sized")
    zero = Decimal(0)
    recommendation = Recommendation(
        side=facts.side, reference_price=price(clock.bar_close),
        atr=price(bracket.atr) if bracket else zero,
        stop_distance=price(bracket.stop_distance) if bracket else zero,
        take_profit_distance=price(bracket.take_profit_distance) if bracket else zero,
        horizon_bars=facts.horizon_bars,
        kelly={**kelly.as_dict(), "max_contracts": config.max_contracts,
               "confidence_threshold": config.min_confidence, "max_drawdown": config.max_drawdown},
        kelly_contracts=kelly.contracts, risk=verdict.as_dict(), risk_decision=verdict.decision.value,
        contracts=0 if blocked or superseded else verdict.contracts, reasons=reasons,
        state=EXPIRED if superseded else BLOCKED if blocked else PENDING,
        expires_after=facts.bar_timestamp + config.recommendation_ttl_bars * market.step)
    if recommendation.state == PENDING:
        if state.account.auto_trading:
            entry = Entry(key=key, recommendation=key, side=facts.side, quantity=verdict.contracts,
                          after_bar_timestamp=latest if latest is not None else facts.bar_timestamp,
                          horizon_bars=facts.horizon_bars,
                          take_profit_distance=recommendation.take_profit_distance,
                          stop_distance=recommendation.stop_distance)
            recommendation = replace(recommendation, state=APPROVED)
            events.append(Approved(recommendation=key, entry=entry, contracts=verdict.contracts,
                                   risk_decision=verdict.decision.value))
            if key is not None:
                state.entries[key] = entry
        elif key is not None:
            state.pending[key] = recommendation.expires_after
    return state, recommendation, events

