"""The paper broker at work: on each closed bar, fill approved entries at its open, run the brackets of open trades
against it, mark positions to its close and snapshot equity; `account_reconcile` recomputes positions from fills.

Positions change only here, only by applying a fill (`domain.ledger`). Each step is idempotent, so a retried task
or a bar delivered twice never fills twice: an order fills once (one-to-one fill), a trade's bracket is run once per
bar (`last_bar_timestamp`), and one equity snapshot exists per account and bar time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from .. import realtime, selectors
from ..domain.broker import BarPrices, Bracket, FillCosts, bracket_exit, bracket_for, commission, entry_price
from ..domain.ledger import FillEvent, PositionState, replay
from ..domain.timeframes import timeframe_delta
from ..models import Account, Bar, EquitySnapshot, Fill, Order, Position, Recommendation, TradingConfig
from .accounts import circuit_breaker_trip, trading_config_get
from .recommendations import recommendations_expire

logger = logging.getLogger(__name__)


class SettlementFailed(RuntimeError):
    """Settling a bar failed for one or more accounts; each is marked (no new entries) and the error logged."""


def broker_process_bar(*, bar_id: int) -> list[Fill]:
    """Everything a closed bar means for the accounts trading its market; returns the fills it made.

    Each account settles in its own transaction. One that fails is rolled back, marked with the reason (the risk
    manager then blocks its new entries and the dashboard says why) and logged with the traceback; the others
    still settle, and the call then raises SettlementFailed so the task fails visibly. The next bar that settles
    the account clears the mark; brackets catch up on the bars they missed (see _run_brackets).
    """
    bar = Bar.objects.select_related("instrument").get(pk=bar_id)
    instrument = bar.instrument
    prices = BarPrices(timestamp=bar.timestamp, open=bar.open, high=bar.high, low=bar.low, close=bar.close)
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
            fills += _settle_account(account_id, bar, prices)
        except Exception as exc:  # noqa: BLE001 - recorded on the account, logged and raised again below
            reason = (f"{_fault_origin(instrument.symbol, bar.timeframe)}{bar.timestamp:%Y-%m-%d %H:%M} UTC: "
                      f"{type(exc).__name__}: {exc}")[:2000]
            logger.exception("Settling %s for account #%s failed; new entries are blocked until a bar settles",
                             reason, account_id)
            _settlement_fault_set(account_id, reason=reason, at=timezone.now(), symbol=instrument.symbol,
                                  timeframe=bar.timeframe)
            failures.append(f"account #{account_id}: {reason}")
    recommendations_expire(instrument=instrument, timeframe=bar.timeframe, latest_bar_timestamp=bar.timestamp)
    if failures:
        raise SettlementFailed("; ".join(failures))
    return fills


def _settle_account(account_id: int, bar: Bar, prices: BarPrices) -> list[Fill]:
    instrument = bar.instrument
    with transaction.atomic():
        # The account lock orders this bar's work against approvals and sizing on the same account.
        account = Account.objects.select_for_update().get(pk=account_id)
        config = trading_config_get(account=account, instrument=instrument)
        costs = FillCosts(tick_size=instrument.tick_size, slippage_ticks=config.slippage_ticks,
                          commission_per_contract=config.commission_per_contract)
        fills = _fill_entries(account, bar, prices, costs)
        fills += _run_brackets(account, bar, prices, costs)
        marked = _mark_and_snapshot(account, bar, config)
        # Only a bar of the market that failed clears the mark: another market settling says nothing about it.
        recovered = account.settlement_fault.startswith(_fault_origin(instrument.symbol, bar.timeframe))
        if recovered:
            logger.warning("Account %s settled bar %s again after a failure (%s); new entries are allowed again",
                           account.name, bar.timestamp, account.settlement_fault)
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


def _fill_entries(account: Account, bar: Bar, prices: BarPrices, costs: FillCosts) -> list[Fill]:
    fills = []
    entries = (Order.objects.select_for_update(of=("self",)).select_related("recommendation__model_version")
               .filter(account=account, instrument=bar.instrument, timeframe=bar.timeframe, kind=Order.Kind.ENTRY,
                       status=Order.Status.PENDING, after_bar_timestamp__lt=bar.timestamp).order_by("id"))
    step = timeframe_delta(bar.timeframe)
    for order in entries:
        recommendation = order.recommendation
        # The next bar should follow the approval at once; one that comes after a gap (a feed outage, the weekend)
        # opens in another market than the one the recommendation was sized for, so the entry is not taken.
        if bar.timestamp > order.after_bar_timestamp + step:
            _cancel_stale_entry(order, bar)
            continue
        side = "long" if order.side == "buy" else "short"
        price = entry_price(side, prices, costs)
        label = recommendation.model_version.label_settings
        bracket = bracket_for(side, price, recommendation.atr, float(label["tp_atr"]), float(label["sl_atr"]),
                              order.horizon_bars or recommendation.horizon_bars, bar.instrument.tick_size)
        fills.append(_fill(order, bar=bar, price=price, costs=costs))
        order.take_profit, order.stop_loss = bracket.take_profit, bracket.stop_loss
        order.save(update_fields=["take_profit", "stop_loss"])
        Recommendation.objects.filter(pk=recommendation.pk, state=Recommendation.State.APPROVED).update(
            state=Recommendation.State.EXECUTED, executed_at=bar.timestamp)
        _push_recommendation(recommendation.pk)
    return fills


def _cancel_stale_entry(order: Order, bar: Bar) -> None:
    order.status = Order.Status.CANCELLED
    order.save(update_fields=["status"])
    gap = bar.timestamp - order.after_bar_timestamp
    reason = (f"entry not taken: the next bar ({bar.timestamp:%Y-%m-%d %H:%M} UTC) came {gap} after the last one "
              f"seen at approval, so its open is not the market the recommendation was sized for")
    recommendation = Recommendation.objects.select_for_update().get(pk=order.recommendation_id)
    if recommendation.state == Recommendation.State.APPROVED:
        recommendation.state = Recommendation.State.EXPIRED
        recommendation.reasons = [*recommendation.reasons, reason]
        recommendation.save(update_fields=["state", "reasons"])
        _push_recommendation(recommendation.pk)


def _run_brackets(account: Account, bar: Bar, prices: BarPrices, costs: FillCosts) -> list[Fill]:
    fills = []
    open_trades = (Order.objects.select_for_update(of=("self",))
                   .filter(account=account, instrument=bar.instrument, timeframe=bar.timeframe,
                           kind=Order.Kind.ENTRY, status=Order.Status.FILLED, closed=False)
                   .select_related("fill").order_by("id"))
    for entry in open_trades:
        if entry.fill.timestamp > bar.timestamp or (entry.last_bar_timestamp and entry.last_bar_timestamp >= bar.timestamp):
            continue  # this bar is before the entry, or was already run against this trade
        side = "long" if entry.side == "buy" else "short"
        bracket = Bracket(side=side, entry=entry.fill.price, take_profit=entry.take_profit,
                          stop_loss=entry.stop_loss, horizon_bars=entry.horizon_bars)
        for bar_run, prices_run in _bars_to_run(entry, bar, prices):
            entry.bars_held += 1
            entry.last_bar_timestamp = bar_run.timestamp
            exit_ = bracket_exit(bracket, prices_run, entry.bars_held, costs)
            if exit_ is not None:
                order = Order.objects.create(
                    account=account, instrument=bar.instrument, timeframe=bar.timeframe,
                    recommendation_id=entry.recommendation_id, parent=entry, kind=exit_.reason,
                    side="sell" if entry.side == "buy" else "buy", quantity=entry.quantity,
                    idempotency_key=f"order-{entry.pk}-exit", after_bar_timestamp=bar_run.timestamp,
                    take_profit=entry.take_profit, stop_loss=entry.stop_loss)
                fills.append(_fill(order, bar=bar_run, price=exit_.price, costs=costs))
                entry.closed = True
                break
        entry.save(update_fields=["bars_held", "last_bar_timestamp", "closed"])
    return fills


def _bars_to_run(entry: Order, bar: Bar, prices: BarPrices) -> list[tuple[Bar, BarPrices]]:
    """The bars this trade's bracket has not seen, up to and including `bar`, oldest first.

    Normally that is `bar` alone. After a settlement that failed, or bars settled out of order, the bars the
    bracket missed are run first: a stop that was touched while settlement was down still fills at that bar.
    """
    step = timeframe_delta(bar.timeframe)
    since = entry.last_bar_timestamp
    if (since is None and entry.fill.timestamp == bar.timestamp) or (since is not None and since + step >= bar.timestamp):
        return [(bar, prices)]
    missed = Bar.objects.filter(instrument_id=bar.instrument_id, timeframe=bar.timeframe, timestamp__lt=bar.timestamp)
    missed = missed.filter(timestamp__gt=since) if since is not None else missed.filter(
        timestamp__gte=entry.fill.timestamp)
    return [(b, BarPrices(timestamp=b.timestamp, open=b.open, high=b.high, low=b.low, close=b.close))
            for b in missed.order_by("timestamp")] + [(bar, prices)]


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
    if not account.circuit_breaker_tripped and state.daily_pnl <= -config.daily_loss_limit:
        circuit_breaker_trip(account_id=account.pk, reason=(
            f"daily loss {-state.daily_pnl:.2f} reached the limit {config.daily_loss_limit:.2f} "
            f"({config.instrument.symbol}, bar {bar.timestamp:%Y-%m-%d %H:%M} UTC)"))
    return marked


def _push_account(account: Account, symbol: str, timeframe: str) -> None:
    def push():
        payload = {"account": selectors.account_summary(account=Account.objects.get(pk=account.pk)),
                   "positions": [selectors.position_payload(p) for p in selectors.position_list(account=account)]}
        realtime.broadcast(symbol, timeframe, "account.updated", payload)
    transaction.on_commit(push, robust=True)


def _push_recommendation(recommendation_id: int) -> None:
    def push():
        recommendation = Recommendation.objects.select_related("account", "instrument").get(pk=recommendation_id)
        realtime.broadcast(recommendation.instrument.symbol, recommendation.timeframe, "recommendation.updated",
                           selectors.recommendation_payload(recommendation))
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
