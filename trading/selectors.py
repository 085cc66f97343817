"""Reads of trading data: instruments, the last N bars, feed status; accounts, exposure, P&L, recommendations."""
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min, OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import health
from .domain.calendar import trading_day_start
from .domain.engine import bar_age_seconds as engine_bar_age_seconds
from .domain.exposure import EntryExposure, Exposure, exposure, open_trade_loss, working_entry_loss
from .domain.risk import RiskLimits, in_session
from .domain.timeframes import TIMEFRAMES, timeframe_delta
from .models import (
    Account,
    AuditEvent,
    Bar,
    BarWorkflow,
    EquitySnapshot,
    FeedStatus,
    Fill,
    Instrument,
    KillSwitch,
    Order,
    Position,
    Recommendation,
    TradingConfig,
)


class UnknownInstrument(LookupError):
    def __init__(self, symbol: str):
        super().__init__(f"unknown instrument symbol {symbol!r}")
        self.symbol = symbol


class BacktestMarket(UnknownInstrument):
    """The symbol is a backtest's private market: no live read, page, control or command reaches it."""

    def __init__(self, symbol: str):
        LookupError.__init__(self, f"{symbol!r} is a backtest's private market, not a live one (it is reached "
                                   "through its run, under /backtests/)")
        self.symbol = symbol


def instrument_get(*, symbol: str) -> Instrument:
    """A live market by symbol. A backtest's private market is refused by name (BacktestMarket, an UnknownInstrument
    to every caller that maps those): every edge and command that takes a symbol reads it through here."""
    # No symbol holds a NUL, and PostgreSQL refuses one in a text comparison (a 500 from the instrument URL).
    if "\x00" in symbol:
        raise UnknownInstrument(symbol)
    try:
        instrument = Instrument.objects.get(symbol=symbol)
    except Instrument.DoesNotExist:
        raise UnknownInstrument(symbol) from None
    if instrument.backtest:
        raise BacktestMarket(symbol)
    return instrument


def instrument_list_active() -> QuerySet[Instrument]:
    return Instrument.objects.live().filter(active=True)


def market_exists(*, symbol: str, timeframe: str) -> bool:
    return timeframe in TIMEFRAMES and instrument_list_active().filter(symbol=symbol).exists()


def bars_last_n(*, instrument: Instrument, timeframe: str, n: int) -> list[Bar]:
    """The newest n bars, oldest first."""
    newest = Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("-timestamp")[:n]
    return list(reversed(newest))


def bars_in_range(
    *, instrument: Instrument, timeframe: str, start: datetime | None = None, end: datetime | None = None
) -> QuerySet[Bar]:
    """Bars with start <= timestamp < end, oldest first."""
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe)
    if start is not None:
        bars = bars.filter(timestamp__gte=start)
    if end is not None:
        bars = bars.filter(timestamp__lt=end)
    return bars.order_by("timestamp")


@dataclass(frozen=True)
class BarRange:
    """The stored bars of one market and timeframe: the first and last open times (None without a bar) and how many."""

    symbol: str
    timeframe: str
    first: datetime | None
    last: datetime | None
    count: int


def bar_range(*, symbol: str, timeframe: str) -> BarRange | None:
    """What a backtest of a live, active market can replay; None for a symbol that is not one (a backtest's private
    market included) or an unknown timeframe. One aggregate query over the unique index's (instrument, timeframe)
    prefix; only an empty answer asks again whether the market exists."""
    if timeframe not in TIMEFRAMES or "\x00" in symbol:  # PostgreSQL refuses a NUL in a text comparison
        return None
    market = instrument_list_active().filter(symbol=symbol)
    row = Bar.objects.filter(instrument__in=market, timeframe=timeframe).aggregate(
        first=Min("timestamp"), last=Max("timestamp"), count=Count("pk"))
    if not row["count"] and not market.exists():
        return None
    return BarRange(symbol=symbol, timeframe=timeframe, **row)


@dataclass(frozen=True)
class BarKey:
    """Which bar, for other apps (mlcore predicts by it): ids and time, never the row."""

    bar_id: int
    instrument_id: int
    symbol: str
    timeframe: str
    timestamp: datetime


def bar_count(*, instrument, timeframe: str, after: datetime | None = None) -> int:
    """Stored bars of a market, those strictly after `after` when given (an Instrument or its id)."""
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe)
    return (bars.filter(timestamp__gt=after) if after is not None else bars).count()


def bar_key(*, bar_id: int) -> BarKey:
    row = (Bar.objects.filter(pk=bar_id)
           .values_list("pk", "instrument_id", "instrument__symbol", "timeframe", "timestamp").first())
    if row is None:
        raise Bar.DoesNotExist(f"There is no bar #{bar_id}.")
    return BarKey(*row)


def bar_latest(*, instrument: Instrument, timeframe: str) -> Bar | None:
    return Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("-timestamp").first()


def feed_is_alive(status: FeedStatus | None, *, now: datetime) -> bool:
    """Running flag set and a heartbeat recent enough: a killed feed process cannot clear its own flag."""
    if status is None or not status.running or status.heartbeat_at is None:
        return False
    allowed = max(settings.MINHOS_FEED_STALE_SECONDS, 3 * status.pace_seconds)
    return (now - status.heartbeat_at).total_seconds() <= allowed


def feed_status_payload(*, symbol: str, timeframe: str, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    status = FeedStatus.objects.filter(instrument__symbol=symbol, timeframe=timeframe).first()
    received = status.last_bar_received_at if status else None
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "running": feed_is_alive(status, now=now),
        "source": status.source if status else None,
        "pace_seconds": status.pace_seconds if status else None,
        "bars_emitted": status.bars_emitted if status else 0,
        "last_bar_received_at": received.isoformat() if received else None,
        "last_bar_timestamp": status.last_bar_timestamp.isoformat() if status and status.last_bar_timestamp else None,
        "last_bar_age_seconds": round((now - received).total_seconds(), 1) if received else None,
        "server_time": now.isoformat(),
        # Whether the bars will be decided: a live feed with no worker on a queue is not a working system.
        "workers": health.workers_brief(),
    }


def instrument_list() -> QuerySet[Instrument]:
    """Every instrument, active or not, by symbol: API clients see the `active` flag and decide (backtests' private
    markets are not instruments anyone trades)."""
    return Instrument.objects.live().order_by("symbol")


def bars_frame(
    *, instrument: Instrument, timeframe: str, end_at: datetime | None = None, last_n: int | None = None
) -> pd.DataFrame:
    """Bars as a float frame (timestamp, open, high, low, close, volume), oldest first: what ML reads.

    `end_at` keeps bars up to and including that time; `last_n` keeps the newest n of those.
    """
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe)
    if end_at is not None:
        bars = bars.filter(timestamp__lte=end_at)
    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    if last_n is not None:
        rows = list(bars.order_by("-timestamp").values_list(*columns)[:last_n])[::-1]
    else:
        rows = list(bars.order_by("timestamp").values_list(*columns))
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns[1:]:
        frame[column] = frame[column].astype("float64")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


# --- accounts, exposure and P&L ---------------------------------------------------------------------------------

CENT = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.000001")  # the price columns' precision, so pushed and stored values read the same


def kill_switch_engaged() -> bool:
    return KillSwitch.objects.filter(pk=1, engaged=True).exists()


@dataclass(frozen=True)
class AccountState:
    """What sizing and risk read about an account at one moment (market time `at`)."""

    equity: Decimal
    realized_pnl: Decimal  # net of commissions, since inception
    unrealized_pnl: Decimal
    peak_equity: Decimal
    drawdown: float
    daily_pnl: Decimal
    trades_today: int
    positions: dict  # instrument id -> signed net contracts

    def position_contracts(self, instrument_id: int) -> int:
        return self.positions.get(instrument_id, 0)

    @property
    def total_contracts(self) -> int:
        return sum(abs(q) for q in self.positions.values())


@dataclass(frozen=True)
class DayFigures:
    """Read with the account lock (account_lock_for_decision): the day's opening equity and entries, the kill switch
    and the market's freshness, as of that one query."""

    day_start: datetime
    opening_equity: Decimal | None
    trades_today: int
    kill_switch: bool
    bar_received_at: datetime | None
    latest_bar_timestamp: datetime | None
    existing_recommendation_id: int | None = None


def account_state(*, account: Account, at: datetime, day: DayFigures | None = None) -> AccountState:
    """Equity = starting equity + realised P&L net of commissions + unrealised P&L at the last marks.

    The day's P&L is equity now minus equity at the start of the trading day (the last snapshot before it, or the
    starting equity); the drawdown is measured from the highest equity seen, including now.
    """
    # Raw SQL (still converted by the model's fields): sizing reads this on every prediction.
    rows = [(p.instrument_id, p.quantity, p.realized_pnl, p.commissions, p.unrealized_pnl) for p in Position.objects.raw(
        "SELECT id, instrument_id, quantity, realized_pnl, commissions, unrealized_pnl FROM trading_position "
        "WHERE account_id = %s", [account.pk])]
    realized = sum((r[2] - r[3] for r in rows), Decimal(0))
    unrealized = sum((r[4] for r in rows), Decimal(0))
    equity = account.starting_equity + realized + unrealized
    peak = max(account.peak_equity, equity)
    drawdown = float((peak - equity) / peak) if peak > 0 else 1.0
    day_start = trading_day_start(at)
    if day is not None and day.day_start == day_start:
        opening, trades_today = day.opening_equity, day.trades_today
    else:
        opening = _opening_equity(account, day_start).first()
        trades_today = _entries_since(account, day_start).count()
    opening = account.starting_equity if opening is None else opening
    positions = {r[0]: r[1] for r in rows if r[1] != 0}
    return AccountState(equity=equity, realized_pnl=realized, unrealized_pnl=unrealized, peak_equity=peak,
                        drawdown=max(0.0, drawdown), daily_pnl=equity - opening, trades_today=trades_today,
                        positions=positions)


def _opening_equity(account, day_start: datetime) -> QuerySet:
    return (EquitySnapshot.objects.filter(account=account, timestamp__lt=day_start)
            .order_by("-timestamp").values_list("equity", flat=True)[:1])


def _entries_since(account, day_start: datetime) -> QuerySet:
    return Fill.objects.filter(account=account, order__kind=Order.Kind.ENTRY, timestamp__gte=day_start)


def account_lock_for_decision(*, account_id: int, instrument: Instrument, timeframe: str, at: datetime,
                              prediction_id: int | None = None) -> tuple[Account, DayFigures]:
    """Lock the account row (FOR UPDATE) and read, in the same query, what a decision needs besides positions:
    the equity at the start of the trading day, entries so far today, the kill switch, the market's freshness and
    the recommendation already made for `prediction_id`, if any.

    Hand-written SQL: one round trip instead of six, and no ORM compilation of five subqueries (~2 ms per call),
    keeps the sizing service inside its few-millisecond budget. Plain SQL, so SQLite runs it too (without the lock:
    SQLite writes are serialised by the database lock).
    """
    day_start = trading_day_start(at)
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update_of else ""
    sql = _DECISION_SQL.format(lock=lock)
    day_start_param = connection.ops.adapt_datetimefield_value(day_start)  # SQLite compares stored text
    params = [day_start_param, day_start_param, instrument.pk, timeframe, instrument.pk, timeframe, prediction_id,
              account_id]
    account = next(iter(Account.objects.raw(sql, params)), None)
    if account is None:
        raise Account.DoesNotExist(f"There is no account #{account_id}.")
    day = DayFigures(day_start=day_start, opening_equity=_decimal_or_none(account.opening_equity),
                     trades_today=int(account.trades_today), kill_switch=bool(account.kill_switch),
                     bar_received_at=_datetime_or_none(account.bar_received_at),
                     latest_bar_timestamp=_datetime_or_none(account.latest_bar_timestamp),
                     existing_recommendation_id=account.existing_recommendation_id)
    return account, day


_DECISION_SQL = """
SELECT a.*,
  (SELECT s.equity FROM trading_equitysnapshot s WHERE s.account_id = a.id AND s.timestamp < %s
    ORDER BY s.timestamp DESC LIMIT 1) AS opening_equity,
  (SELECT COUNT(*) FROM trading_fill f JOIN trading_order o ON o.id = f.order_id
    WHERE f.account_id = a.id AND o.kind = 'entry' AND f.timestamp >= %s) AS trades_today,
  (NOT a.backtest AND EXISTS(SELECT 1 FROM trading_killswitch k WHERE k.id = 1 AND k.engaged)) AS kill_switch,
  (SELECT fs.last_bar_received_at FROM trading_feedstatus fs WHERE fs.instrument_id = %s AND fs.timeframe = %s
    LIMIT 1) AS bar_received_at,
  (SELECT b.timestamp FROM trading_bar b WHERE b.instrument_id = %s AND b.timeframe = %s
    ORDER BY b.timestamp DESC LIMIT 1) AS latest_bar_timestamp,
  (SELECT r.id FROM trading_recommendation r WHERE r.account_id = a.id AND r.prediction_id = %s
    LIMIT 1) AS existing_recommendation_id
FROM trading_account a WHERE a.id = %s{lock}
"""


def account_exposure(*, account_id: int, positions: dict | None = None) -> Exposure:
    """What the account's working entries and open trades expose it to (worst case per side, loss to the stops).

    Working entries are approved and unfilled: they fill together at the next bar's open, so a limit that
    counted only filled positions would let several approvals in one bar stack beyond it.
    """
    with connection.cursor() as cursor:
        cursor.execute(_EXPOSURE_SQL, [account_id])
        entries = list(exposure_entries(cursor.fetchall()))
    return exposure(entries, positions=positions)


def exposure_entries(rows):
    """Rows of the exposure queries (_EXPOSURE_SQL's columns) as the limits count them: a working entry at its
    stop distance, an open trade from its mark to its stop (domain.exposure)."""
    for (instrument_id, side, quantity, status, stop_loss, stop_distance, fill_price, mark, tick_size, point_value,
         slippage_ticks, commission) in rows:
        tick, point = Decimal(str(tick_size)), Decimal(str(point_value))
        # No configuration row (not possible for an account that sized the entry): the defaults' costs.
        slippage = (1 if slippage_ticks is None else int(slippage_ticks)) * tick
        commission = Decimal("2.50") if commission is None else Decimal(str(commission))
        working = status == Order.Status.PENDING
        trade_side = "long" if side == "buy" else "short"
        if working:
            loss = working_entry_loss(quantity=quantity, stop_distance=Decimal(str(stop_distance)),
                                      slippage=slippage, point_value=point, commission_per_contract=commission)
        else:
            reference = Decimal(str(mark if mark is not None else fill_price))
            loss = open_trade_loss(side=trade_side, quantity=quantity, mark=reference,
                                   stop_loss=None if stop_loss is None else Decimal(str(stop_loss)),
                                   slippage=slippage, point_value=point, commission_per_contract=commission)
        yield EntryExposure(instrument_id=instrument_id, side=trade_side, quantity=quantity, working=working,
                            loss_to_stop=loss)


_EXPOSURE_SQL = """
SELECT o.instrument_id, o.side, o.quantity, o.status, o.stop_loss, r.stop_distance, f.price, p.mark_price,
       i.tick_size, i.point_value, c.slippage_ticks, c.commission_per_contract
FROM trading_order o
JOIN trading_recommendation r ON r.id = o.recommendation_id
JOIN trading_instrument i ON i.id = o.instrument_id
LEFT JOIN trading_fill f ON f.order_id = o.id
LEFT JOIN trading_position p ON p.account_id = o.account_id AND p.instrument_id = o.instrument_id
LEFT JOIN trading_tradingconfig c ON c.account_id = o.account_id AND c.instrument_id = o.instrument_id
WHERE o.account_id = %s AND o.kind = 'entry'
  AND (o.status = 'pending' OR (o.status = 'filled' AND NOT o.closed))
"""


def _decimal_or_none(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _datetime_or_none(value) -> datetime | None:
    """SQLite hands subquery datetimes back as naive UTC (text or datetime); PostgreSQL as aware datetimes."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def bar_age_seconds(*, received_at: datetime | None, latest_timestamp: datetime | None, timeframe: str,
                    now: datetime) -> float:
    """The engine's rule (`domain.engine.bar_age_seconds`) for a timeframe."""
    return engine_bar_age_seconds(received_at=received_at, latest_timestamp=latest_timestamp,
                                  step=timeframe_delta(timeframe), now=now)


# A market's newest bar is stale when it arrived longer ago than one bar's length plus this: the risk manager's and
# the stale-data alert's default limit (180 s), with the bar's own length allowed for on slower timeframes.
STALE_AFTER_SECONDS = 180.0
# The weekly session the freshness check follows: CME Globex (the risk manager's default), holidays not modelled.
SESSION = RiskLimits()


@dataclass(frozen=True)
class MarketFreshness:
    """How old one market's newest bar is, and whether that is stale (never while the market is closed)."""

    instrument_id: int
    symbol: str
    timeframe: str
    latest_bar_timestamp: datetime
    bar_received_at: datetime | None  # when the feed stored it (None: no feed reported this market)
    age_seconds: float  # since it arrived (or, without a feed's record, since it closed)
    stale_after_seconds: float
    market_open: bool

    @property
    def stale(self) -> bool:
        return self.market_open and self.age_seconds > self.stale_after_seconds


def market_freshness_list(*, now: datetime | None = None) -> list[MarketFreshness]:
    """Every active instrument and timeframe that has bars, with its newest bar's age. Two queries: the newest bar
    of each timeframe per active instrument (a backward step along the bars' unique index each), and the feeds'
    records of when their last bar arrived (replayed bars carry old market times: arrival is the honest age)."""
    now = now or timezone.now()
    newest = {
        f"newest_{timeframe}": Subquery(Bar.objects.filter(instrument=OuterRef("pk"), timeframe=timeframe)
                                        .order_by("-timestamp").values("timestamp")[:1])
        for timeframe in TIMEFRAMES
    }
    instruments = list(instrument_list_active().order_by("symbol")
                       .annotate(**newest).values("pk", "symbol", *newest))
    received = {(instrument_id, timeframe): at for instrument_id, timeframe, at in FeedStatus.objects.filter(
        instrument__in=instrument_list_active()).values_list("instrument_id", "timeframe", "last_bar_received_at")}
    market_open = in_session(now, SESSION)
    markets = []
    for row in instruments:
        for timeframe, length in TIMEFRAMES.items():
            latest = row[f"newest_{timeframe}"]
            if latest is None:
                continue
            arrived = received.get((row["pk"], timeframe))
            markets.append(MarketFreshness(
                instrument_id=row["pk"], symbol=row["symbol"], timeframe=timeframe, latest_bar_timestamp=latest,
                bar_received_at=arrived,
                age_seconds=bar_age_seconds(received_at=arrived, latest_timestamp=latest, timeframe=timeframe,
                                            now=now),
                stale_after_seconds=STALE_AFTER_SECONDS + length.total_seconds(), market_open=market_open))
    return markets


def bars_waiting(*, now: datetime | None = None) -> dict[str, dict]:
    """The bars stored and not yet done, per stage ("stored": waiting to be settled, "settled": to be decided): how
    many and the oldest's age in seconds. One query on the workflow's partial index of the rows not done."""
    now = now or timezone.now()
    rows = (BarWorkflow.objects.exclude(stage=BarWorkflow.Stage.DONE).values("stage")
            .annotate(n=Count("pk"), oldest=Min("stored_at")))
    return {row["stage"]: {"count": row["n"], "oldest_seconds": round((now - row["oldest"]).total_seconds(), 1)}
            for row in rows}


def account_summary(*, account: Account, at: datetime | None = None) -> dict:
    """JSON-ready account figures for the API and the dashboard."""
    at = at or _market_now(account)
    return account_summary_payload(account, account_state(account=account, at=at), kill_switch=kill_switch_engaged())


def account_summary_payload(account: Account, state, *, kill_switch: bool) -> dict:
    """The summary's shape, from the account row and its figures (an AccountState here, or the engine's Figures of
    a settlement, which has them already: the same names)."""
    return {
        "id": account.pk,
        "name": account.name,
        "currency": account.currency,
        "starting_equity": str(account.starting_equity),
        "equity": str(state.equity.quantize(CENT)),
        "realized_pnl": str(state.realized_pnl.quantize(CENT)),
        "unrealized_pnl": str(state.unrealized_pnl.quantize(CENT)),
        "daily_pnl": str(state.daily_pnl.quantize(CENT)),
        "peak_equity": str(state.peak_equity.quantize(CENT)),
        "drawdown": round(state.drawdown, 6),
        "trades_today": state.trades_today,
        "auto_trading": account.auto_trading,
        "trading_state": account.trading_state,
        "circuit_breaker_tripped": account.circuit_breaker_tripped,
        "circuit_breaker_reason": account.circuit_breaker_reason,
        "settlement_fault": account.settlement_fault,
        "settlement_fault_at": _iso(account.settlement_fault_at),
        "kill_switch": kill_switch,
    }


def _market_now(account: Account) -> datetime:
    """Market time for an account: the close of the newest bar of any instrument it trades, else the wall clock."""
    latest = (Bar.objects.filter(instrument__trading_configs__account=account)
              .order_by("-timestamp").values_list("timestamp", "timeframe").first())
    return latest[0] + timeframe_delta(latest[1]) if latest else timezone.now()


def account_list() -> QuerySet[Account]:
    """The live accounts (backtests' own accounts are reached through their run)."""
    return Account.objects.live().order_by("name")


def position_list(*, account: Account | None = None, open_only: bool = False) -> QuerySet[Position]:
    positions = Position.objects.select_related("account", "instrument").order_by("account__name", "instrument__symbol")
    positions = positions.filter(account=account) if account is not None else positions.filter(account__backtest=False)
    return positions.exclude(quantity=0) if open_only else positions


def order_list(*, account: Account | None = None) -> QuerySet[Order]:
    orders = Order.objects.select_related("instrument", "recommendation")
    return orders.filter(account=account) if account is not None else orders.filter(account__backtest=False)


def fill_list(*, account: Account | None = None) -> QuerySet[Fill]:
    fills = Fill.objects.select_related("instrument", "order").order_by("-timestamp", "-id")
    return fills.filter(account=account) if account is not None else fills.filter(account__backtest=False)


def equity_curve(*, account: Account) -> QuerySet[EquitySnapshot]:
    return EquitySnapshot.objects.filter(account=account).order_by("timestamp")


def recommendation_list(*, account: Account | None = None, symbol: str | None = None, timeframe: str | None = None,
                        state: str | None = None) -> QuerySet[Recommendation]:
    recommendations = Recommendation.objects.select_related("instrument", "account", "decided_by")
    # A backtest's recommendations are its report's, reached through its run.
    recommendations = (recommendations.filter(account=account) if account is not None
                       else recommendations.filter(account__backtest=False))
    if symbol:
        recommendations = recommendations.filter(instrument__symbol=symbol)
    if timeframe:
        recommendations = recommendations.filter(timeframe=timeframe)
    if state:
        recommendations = recommendations.filter(state=state)
    return recommendations.order_by("-bar_timestamp", "-id")


def recommendation_pending_latest(*, instrument: Instrument, timeframe: str) -> Recommendation | None:
    return (Recommendation.objects.filter(instrument=instrument, timeframe=timeframe,
                                          state=Recommendation.State.PENDING)
            .select_related("account").order_by("-bar_timestamp", "-id").first())


def recommendation_latest(*, instrument: Instrument, timeframe: str) -> Recommendation | None:
    return (Recommendation.objects.filter(instrument=instrument, timeframe=timeframe)
            .select_related("account").order_by("-bar_timestamp", "-id").first())


def audit_list() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("user", "account", "recommendation").exclude(account__backtest=True)


def recommendation_payload(recommendation: Recommendation) -> dict:
    """What the dashboard shows of a recommendation: size, state, every Kelly factor and every risk check."""
    return {
        "id": recommendation.pk,
        "account": recommendation.account.name,
        "state": recommendation.state,
        "state_label": recommendation.get_state_display(),
        "side": recommendation.side,
        "contracts": recommendation.contracts,
        "kelly_contracts": recommendation.kelly_contracts,
        "probability": recommendation.probability,
        "payoff_ratio": recommendation.payoff_ratio,
        "confidence": recommendation.confidence,
        "agreement": recommendation.agreement,
        "reference_price": str(Decimal(recommendation.reference_price).quantize(PRICE_QUANTUM)),
        "stop_distance": str(Decimal(recommendation.stop_distance).quantize(PRICE_QUANTUM)),
        "take_profit_distance": str(Decimal(recommendation.take_profit_distance).quantize(PRICE_QUANTUM)),
        "horizon_bars": recommendation.horizon_bars,
        "bar_timestamp": recommendation.bar_timestamp.isoformat().replace("+00:00", "Z"),
        "expires_after": recommendation.expires_after.isoformat().replace("+00:00", "Z"),
        "kelly": recommendation.kelly,
        "risk": recommendation.risk,
        "risk_decision": recommendation.risk_decision,
        "reasons": recommendation.reasons,
        "model_version": recommendation.model_version_id,
        "decided_by": recommendation.decided_by.get_username() if recommendation.decided_by_id else None,
        "decided_at": _iso(recommendation.decided_at),
        "executed_at": _iso(recommendation.executed_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def position_payload(position: Position) -> dict:
    return {
        "account": position.account.name,
        "symbol": position.instrument.symbol,
        "quantity": position.quantity,
        "average_price": str(position.average_price),
        "mark_price": str(position.mark_price) if position.mark_price is not None else None,
        "realized_pnl": str(position.realized_pnl.quantize(CENT)),
        "unrealized_pnl": str(position.unrealized_pnl.quantize(CENT)),
        "commissions": str(position.commissions.quantize(CENT)),
    }


def trading_config_list(*, account: Account | None = None, symbol: str | None = None) -> QuerySet[TradingConfig]:
    # A backtest's own settings are its run's (copied when it starts): no live list shows or changes them.
    configs = TradingConfig.objects.live().select_related("account", "instrument").order_by("account__name",
                                                                                             "instrument__symbol")
    if account is not None:
        configs = configs.filter(account=account)
    return configs.filter(instrument__symbol=symbol) if symbol else configs


def kill_switch_get() -> KillSwitch:
    """The switch with who changed it, when and why (released if the row was never made)."""
    return KillSwitch.objects.select_related("changed_by").filter(pk=1).first() or KillSwitch(pk=1, engaged=False)


def bars_path(*, instrument_id: int, timeframe: str, after: datetime, through: datetime) -> dict[str, np.ndarray]:
    """The bars strictly after `after` up to and including `through`, oldest first, as arrays: timestamp
    (datetime64[ns], UTC), high, low, close (float64). What outcome resolution walks."""
    rows = list(Bar.objects.filter(instrument_id=instrument_id, timeframe=timeframe, timestamp__gt=after,
                                   timestamp__lte=through).order_by("timestamp")
                .values_list("timestamp", "high", "low", "close"))
    stamps = np.array([pd.Timestamp(r[0]).tz_convert("UTC").tz_localize(None).to_datetime64() for r in rows],
                      dtype="datetime64[ns]")
    prices = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 3)
    return {"timestamp": stamps, "high": prices[:, 0], "low": prices[:, 1], "close": prices[:, 2]}
