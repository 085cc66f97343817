"""Settlement of a closed bar, broker-neutral: for each account trading the market, the broker reports its fills
(`trading.brokers`), each fill is applied to the position (the only way a position changes, `domain.ledger`),
positions are marked to the bar's close and equity is snapshot; `account_reconcile` recomputes positions from fills.

Each step is idempotent, so a retried task or a bar delivered twice never fills twice: an order fills once
(one-to-one fill), a trade's bracket is run once per bar (`last_bar_timestamp`), and one equity snapshot exists per
account and bar time. The per-bar workflow (`trading.workflow`) calls `bar_settle` before the bar is predicted.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from minhos_site.database_outage import is_database_unreachable

from .. import realtime, selectors
from ..brokers.paper import push_recommendation
from ..domain import engine
from ..domain.ledger import FillEvent, PositionState, replay
from ..domain.timeframes import timeframe_delta
from ..models import Account, Bar, EquitySnapshot, Fill, Order, Position, Recommendation, TradingConfig
from . import engine_state
from .accounts import circuit_breaker_trip, trading_config_get

logger = logging.getLogger(__name__)


class SettlementFailed(RuntimeError):
    """Settling a bar failed for one or more accounts; each is marked (no new entries) and the error logged."""


def bar_settle(*, bar_id: int) -> list[Fill]:
    """Everything a closed bar means for the accounts trading its market; returns the fills it made.

    Each account settles in its own transaction. One that fails is rolled back, marked with the reason (the risk
    manager then blocks its new entries and the dashboard says why) and logged with the traceback; the others
    still settle, and the call then raises SettlementFailed so the step fails visibly. The next bar that settles
    the account clears the mark; brackets catch up on the bars they missed.
    """
    bar = Bar.objects.select_related("instrument").get(pk=bar_id)
    instrument = bar.instrument
    fills: list[Fill] = []
    failures: list[str] = []
    # Every account configured for this instrument (sizing gives each one a configuration before its first order),
    # and any with an entry still pending or open in it (an open position is made of open entries).
    # One query (a UNION; no ORDER BY inside it, which SQLite refuses).
    account_ids = set(TradingConfig.objects.filter(instrument=instrument).order_by().values_list(
        "account_id", flat=True).union(
        Order.objects.filter(instrument=instrument, timeframe=bar.timeframe, kind=Order.Kind.ENTRY, closed=False)
        .exclude(status=Order.Status.CANCELLED).order_by().values_list("account_id", flat=True)))
    for account_id in sorted(account_ids):
        try:
            fills += _settle_account(account_id, bar)
        except Exception as exc:  # noqa: BLE001 - recorded on the account, logged and raised again below
            if is_database_unreachable(exc):
                # Not this account's fault, and nothing can be marked: the step is retried once the database answers
                # (a traceback and a failed mark per try, before).
                raise
            reason = (f"{_fault_origin(instrument.symbol, bar.timeframe)}{bar.timestamp:%Y-%m-%d %H:%M} UTC: "
                      f"{type(exc).__name__}: {exc}")[:2000]
            logger.exception("Settling %s for account #%s failed; new entries are blocked until a bar settles",
                             reason, account_id)
            _settlement_fault_set(account_id, reason=reason, at=timezone.now(), symbol=instrument.symbol,
                                  timeframe=bar.timeframe)
            failures.append(f"account #{account_id}: {reason}")
    if failures:
        raise SettlementFailed("; ".join(failures))
    return fills


def _settle_account(account_id: int, bar: Bar) -> list[Fill]:
    """The live shell of `engine.settle`: load the account's state in this market, settle, write what happened."""
    instrument = bar.instrument
    at = bar.timestamp + timeframe_delta(bar.timeframe)
    with transaction.atomic():
        # The account lock orders this bar's work against approvals and sizing on the same account; the same query
        # reads the day's opening equity, its entries so far and the kill switch (the figures and the push need them).
        account, day = selectors.account_lock_for_decision(account_id=account_id, instrument=instrument,
                                                           timeframe=bar.timeframe, at=at)
        config = trading_config_get(account=account, instrument=instrument)
        positions = engine_state.positions_load(account)
        state, position = engine_state.state_load(account=account, instrument=instrument, timeframe=bar.timeframe,
                                                  at=at, opening=(day.day_start, day.opening_equity),
                                                  entries_today=day.trades_today, positions=positions)
        missed, missed_ids = engine_state.missed_bars(state, bar)
        state, events = engine.settle(state, engine_state.prices(bar), engine_state.config_of(config), missed=missed)
        fills, recovered = _settle_events_store(account, bar, position, state, events, missed_ids)
        if recovered:
            # Said on commit: if this settlement rolls back, entries stay blocked and the log must not say otherwise.
            transaction.on_commit(functools.partial(
                logger.warning, "Account %s settled bar %s again after a failure (%s); new entries are allowed again",
                account.name, bar.timestamp, recovered))
        # Every bar that filled or re-marked a position changes the account's figures on the dashboard.
        marked = state.position is not None and state.position.ledger.quantity != 0
        if fills or marked or recovered:
            # A breaker trip is written by its own service (its time, the audit): then the push reads it back.
            tripped = any(type(event) is engine.BreakerTripped for event in events)
            _push_account(account, instrument.symbol, bar.timeframe, payload=None if tripped else _settled_payload(
                account, instrument, state, at, day.kill_switch, positions))
    return fills


def _settled_payload(account: Account, instrument, state: engine.State, at, kill_switch: bool,
                     positions: list[Position]) -> dict:
    """The dashboard's account push from what settling computed (no query after the commit): the engine's figures at
    this bar's close, the account's fields as the events left them (the store sets them on `account`), its
    positions with this market's from the engine's state."""
    figures = engine.figures(state, at)
    rows = [row for row in positions if row.instrument_id != instrument.pk]
    if state.position is not None:
        held = state.position.ledger
        rows.append(Position(account=account, instrument=instrument, quantity=held.quantity,
                             average_price=held.average_price, realized_pnl=held.realized_pnl,
                             commissions=held.commissions, mark_price=state.position.mark_price,
                             unrealized_pnl=state.position.unrealized_pnl))
    rows.sort(key=lambda row: row.instrument.symbol)
    return {"account": selectors.account_summary_payload(account, figures, kill_switch=kill_switch),
            "positions": [selectors.position_payload(row) for row in rows]}


def _settle_events_store(account: Account, bar: Bar, position: Position | None, state: engine.State, events: list,
                         missed_ids: dict) -> tuple[list[Fill], str]:
    """Write what settling did: orders, fills, the position, the snapshot, the account's peak, breaker and fault."""
    instrument = bar.instrument
    fills: list[Fill] = []
    recovered = ""
    account_fields: dict = {}
    entries = {}
    for event in events:
        kind = type(event)
        if kind is engine.Filled:
            entry = entries.get(event.entry) or Order.objects.get(pk=event.entry)
            entries[event.entry] = entry
            order = entry
            if event.exit_reason:
                order = Order.objects.create(
                    account=account, instrument=instrument, timeframe=bar.timeframe,
                    recommendation_id=entry.recommendation_id, parent=entry, kind=event.exit_reason,
                    side=event.order_side, quantity=event.quantity, idempotency_key=f"order-{entry.pk}-exit",
                    after_bar_timestamp=event.timestamp, take_profit=event.take_profit, stop_loss=event.stop_loss,
                    status=Order.Status.FILLED)
            else:
                Order.objects.filter(pk=entry.pk).update(status=Order.Status.FILLED, take_profit=event.take_profit,
                                                         stop_loss=event.stop_loss)
                if Recommendation.objects.filter(pk=event.recommendation, state=Recommendation.State.APPROVED).update(
                        state=Recommendation.State.EXECUTED, executed_at=event.timestamp):
                    push_recommendation(event.recommendation, instrument)
            fills.append(Fill.objects.create(
                order=order, account=account, instrument=instrument, side=event.order_side,
                quantity=event.quantity, price=event.price, commission=event.commission,
                bar_id=bar.pk if event.timestamp == bar.timestamp else missed_ids[event.timestamp],
                timestamp=event.timestamp))
        elif kind is engine.BracketRun:
            Order.objects.filter(pk=event.entry).update(bars_held=event.bars_held,
                                                        last_bar_timestamp=event.last_bar_timestamp,
                                                        closed=event.closed)
        elif kind is engine.EntryCancelled:
            Order.objects.filter(pk=event.entry, status=Order.Status.PENDING).update(status=Order.Status.CANCELLED)
            recommendation = Recommendation.objects.select_for_update().get(pk=event.recommendation)
            if recommendation.state == Recommendation.State.APPROVED:
                recommendation.state = Recommendation.State.EXPIRED
                recommendation.reasons = [*recommendation.reasons, event.reason]
                recommendation.save(update_fields=["state", "reasons"])
                push_recommendation(recommendation.pk, instrument)
        elif kind is engine.PositionChanged:
            held = event.position.ledger
            values = {"quantity": held.quantity, "average_price": held.average_price,
                      "realized_pnl": held.realized_pnl, "commissions": held.commissions, "fills": held.fills,
                      "cost_basis": held.cost_basis, "mark_price": event.position.mark_price,
                      "unrealized_pnl": event.position.unrealized_pnl, "updated_at": timezone.now()}
            if position is None:
                position = Position.objects.create(account=account, instrument=instrument, **values)
            else:
                Position.objects.filter(pk=position.pk).update(**values)
        elif kind is engine.Snapshot:
            # One upsert statement (a bar settled again replaces its snapshot); update_or_create took six.
            EquitySnapshot.objects.bulk_create(
                [EquitySnapshot(account=account, timestamp=event.at, equity=event.equity,
                                realized_pnl=event.realized_pnl, unrealized_pnl=event.unrealized_pnl,
                                peak_equity=event.peak_equity, drawdown=event.drawdown)],
                update_conflicts=True, unique_fields=["account", "timestamp"],
                update_fields=["equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown"])
            if event.peak_raised:
                account_fields["peak_equity"] = event.peak_equity
        elif kind is engine.BreakerTripped:
            circuit_breaker_trip(account_id=account.pk, reason=event.reason)
        elif kind is engine.FaultCleared:
            recovered = event.fault
            account_fields.update(settlement_fault="", settlement_fault_at=None)
    if account_fields:
        Account.objects.filter(pk=account.pk).update(**account_fields)
        for name, value in account_fields.items():
            setattr(account, name, value)
    return fills, recovered


_fault_origin = engine.fault_origin


def _settlement_fault_set(account_id: int, *, reason: str, at, symbol: str, timeframe: str) -> None:
    """Mark the account (its own transaction: the failed one was rolled back) and tell the market's dashboards."""
    with transaction.atomic():
        account = Account.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return
        account.settlement_fault, account.settlement_fault_at = reason, at
        account.save(update_fields=["settlement_fault", "settlement_fault_at"])
        _push_account(account, symbol, timeframe)


def _event(fill: Fill) -> FillEvent:
    return FillEvent(side=fill.side, quantity=fill.quantity, price=fill.price, commission=fill.commission,
                     timestamp=fill.timestamp)


def _state_of(position: Position) -> PositionState:
    return PositionState(quantity=position.quantity, average_price=position.average_price,
                         realized_pnl=position.realized_pnl, commissions=position.commissions, fills=position.fills,
                         cost_basis=position.cost_basis)


def _push_account(account: Account, symbol: str, timeframe: str, *, payload: dict | None = None) -> None:
    """After the commit, the account's figures to the market's dashboards: `payload` if the caller has it, else read
    from the database then."""
    if account.backtest:
        return  # no page listens to a backtest's account; its figures would cost queries on every bar
    def push():
        message = payload or {
            "account": selectors.account_summary(account=Account.objects.get(pk=account.pk)),
            "positions": [selectors.position_payload(p) for p in selectors.position_list(account=account)]}
        realtime.broadcast(symbol, timeframe, "account.updated", message)
    transaction.on_commit(push, robust=True)


@dataclass
class ReconcileReport:
    """Positions recomputed from fills against the stored ones; `differences` must be empty."""

    positions_checked: int = 0
    fills_replayed: int = 0
    differences: list[dict] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


FIELDS = ("quantity", "average_price", "cost_basis", "realized_pnl", "commissions", "fills")


def account_reconcile(*, account: Account | None = None) -> ReconcileReport:
    """Replay every fill of every position and compare field by field with what is stored (no writes)."""
    report = ReconcileReport()
    positions = Position.objects.select_related("account", "instrument")
    if account is not None:
        positions = positions.filter(account=account)
    seen = set()
    for position in positions.order_by("account_id", "instrument_id"):
        seen.add((position.account_id, position.instrument_id))
        fills = list(Fill.objects.filter(account_id=position.account_id, instrument_id=position.instrument_id)
                     .order_by("timestamp", "id"))
        report.positions_checked += 1
        report.fills_replayed += len(fills)
        expected = replay([_event(f) for f in fills], position.instrument.point_value)
        for name in FIELDS:
            stored, recomputed = getattr(position, name), getattr(expected, name)
            if stored != recomputed:
                report.differences.append({"account": position.account.name, "instrument": position.instrument.symbol,
                                           "field": name, "stored": str(stored), "from_fills": str(recomputed)})
    # Fills with no position row at all are a difference too.
    orphans = Fill.objects.values_list("account_id", "instrument_id").distinct()
    if account is not None:
        orphans = orphans.filter(account=account)
    for account_id, instrument_id in orphans:
        if (account_id, instrument_id) not in seen:
            report.differences.append({"account": account_id, "instrument": instrument_id, "field": "position",
                                       "stored": "missing", "from_fills": "fills exist"})
    return report
