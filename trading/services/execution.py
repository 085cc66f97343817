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
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from minhos_site.database_outage import is_database_unreachable

from .. import realtime, selectors
from ..brokers import broker_get
from ..domain.broker import FillCosts, commission
from ..domain.checks import money
from ..domain.ledger import FillEvent, PositionState, replay
from ..domain.risk import daily_loss_reached
from ..domain.timeframes import timeframe_delta
from ..models import Account, Bar, EquitySnapshot, Fill, Order, Position, TradingConfig
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
    account_ids = set(TradingConfig.objects.filter(instrument=instrument).values_list("account_id", flat=True))
    account_ids |= set(Order.objects.filter(instrument=instrument, timeframe=bar.timeframe, kind=Order.Kind.ENTRY,
                                            closed=False).exclude(status=Order.Status.CANCELLED)
                       .values_list("account_id", flat=True))
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
    instrument = bar.instrument
    with transaction.atomic():
        # The account lock orders this bar's work against approvals and sizing on the same account.
        account = Account.objects.select_for_update().get(pk=account_id)
        config = trading_config_get(account=account, instrument=instrument)
        costs = FillCosts(tick_size=instrument.tick_size, slippage_ticks=config.slippage_ticks,
                          commission_per_contract=config.commission_per_contract)
        fills = broker_get().on_bar(account=account, bar=bar, costs=costs,
                                    record=lambda order, on_bar, price: _fill(order, bar=on_bar, price=price,
                                                                              costs=costs))
        marked = _mark_and_snapshot(account, bar, config)
        # Only a bar of the market that failed clears the mark: another market settling says nothing about it.
        recovered = account.settlement_fault.startswith(_fault_origin(instrument.symbol, bar.timeframe))
        if recovered:
            # Said on commit: if this settlement rolls back, entries stay blocked and the log must not say otherwise.
            transaction.on_commit(functools.partial(
                logger.warning, "Account %s settled bar %s again after a failure (%s); new entries are allowed again",
                account.name, bar.timestamp, account.settlement_fault))
            account.settlement_fault, account.settlement_fault_at = "", None
            account.save(update_fields=["settlement_fault", "settlement_fault_at"])
        # Every bar that filled or re-marked a position changes the account's figures on the dashboard.
        if fills or marked or recovered:
            _push_account(account, instrument.symbol, bar.timeframe)
    return fills


def _fault_origin(symbol: str, timeframe: str) -> str:
    """How a settlement fault's reason starts: the market whose bar failed."""
    return f"bar {symbol} {timeframe} "


def _settlement_fault_set(account_id: int, *, reason: str, at, symbol: str, timeframe: str) -> None:
    """Mark the account (its own transaction: the failed one was rolled back) and tell the market's dashboards."""
    with transaction.atomic():
        account = Account.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return
        account.settlement_fault, account.settlement_fault_at = reason, at
        account.save(update_fields=["settlement_fault", "settlement_fault_at"])
        _push_account(account, symbol, timeframe)


def _fill(order: Order, *, bar: Bar, price: Decimal, costs: FillCosts) -> Fill:
    """Fill an order completely and apply the fill to the position (the only way a position changes)."""
    fill = Fill.objects.create(order=order, account=order.account, instrument=order.instrument, side=order.side,
                               quantity=order.quantity, price=price, commission=commission(order.quantity, costs),
                               bar=bar, timestamp=bar.timestamp)
    order.status = Order.Status.FILLED
    order.save(update_fields=["status"])
    position, _ = Position.objects.select_for_update().get_or_create(account=order.account,
                                                                      instrument=order.instrument)
    state = _state_of(position).apply(_event(fill), order.instrument.point_value)
    _store_state(position, state)
    position.save()
    return fill


def _event(fill: Fill) -> FillEvent:
    return FillEvent(side=fill.side, quantity=fill.quantity, price=fill.price, commission=fill.commission,
                     timestamp=fill.timestamp)


def _state_of(position: Position) -> PositionState:
    return PositionState(quantity=position.quantity, average_price=position.average_price,
                         realized_pnl=position.realized_pnl, commissions=position.commissions, fills=position.fills,
                         cost_basis=position.cost_basis)


def _store_state(position: Position, state: PositionState) -> None:
    position.quantity = state.quantity
    position.average_price = state.average_price
    position.realized_pnl = state.realized_pnl
    position.commissions = state.commissions
    position.fills = state.fills
    position.cost_basis = state.cost_basis


def _mark_and_snapshot(account: Account, bar: Bar, config: TradingConfig) -> bool:
    """Mark the account's position in this instrument to the bar's close, snapshot equity, and trip the circuit
    breaker if the day's loss has reached the limit (it stays tripped until a person resets it)."""
    position = Position.objects.select_for_update().filter(account=account, instrument=bar.instrument).first()
    marked = position is not None and position.quantity != 0
    if position is not None:
        position.mark_price = bar.close
        position.unrealized_pnl = _state_of(position).unrealized_pnl(bar.close, bar.instrument.point_value)
        position.save(update_fields=["mark_price", "unrealized_pnl", "updated_at"])
    at = bar.timestamp + timeframe_delta(bar.timeframe)
    state = selectors.account_state(account=account, at=at)
    if state.peak_equity > account.peak_equity:
        account.peak_equity = state.peak_equity
        account.save(update_fields=["peak_equity"])
    EquitySnapshot.objects.update_or_create(
        account=account, timestamp=at,
        defaults={"equity": state.equity, "realized_pnl": state.realized_pnl, "unrealized_pnl": state.unrealized_pnl,
                  "peak_equity": state.peak_equity, "drawdown": state.drawdown})
    if not account.circuit_breaker_tripped and daily_loss_reached(state.daily_pnl, config.daily_loss_limit):
        circuit_breaker_trip(account_id=account.pk, reason=(
            f"daily loss {money(-state.daily_pnl, config.daily_loss_limit)} reached the limit "
            f"{money(config.daily_loss_limit)} "
            f"({config.instrument.symbol}, bar {bar.timestamp:%Y-%m-%d %H:%M} UTC)"))
    return marked


def _push_account(account: Account, symbol: str, timeframe: str) -> None:
    if account.backtest:
        return  # no page listens to a backtest's account; its figures would cost queries on every bar
    def push():
        payload = {"account": selectors.account_summary(account=Account.objects.get(pk=account.pk)),
                   "positions": [selectors.position_payload(p) for p in selectors.position_list(account=account)]}
        realtime.broadcast(symbol, timeframe, "account.updated", payload)
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
