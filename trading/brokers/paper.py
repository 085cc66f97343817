"""The paper broker: fills from the bars themselves (`domain.broker` rules).

An approved entry fills at the open of the bar after the approval; the trade's bracket (take-profit, stop, time
limit) is then run against every bar, the entry's own included, each bar once (`last_bar_timestamp`). Fills are
reported through the settlement service's `record`, which applies them to the position.
"""
from __future__ import annotations

from datetime import datetime

from django.db import transaction

from .. import realtime, selectors
from ..domain.broker import BarPrices, Bracket, FillCosts, bracket_at, bracket_exit, entry_price
from ..domain.sides import Side
from ..domain.timeframes import timeframe_delta
from ..models import Account, Bar, Fill, Order, Recommendation


class PaperBroker:
    name = "paper"

    def submit(self, order: Order) -> None:
        # Nothing to send: the order row rests until the next bar, whose open fills it (see on_bar).
        return None

    def cancel(self, order: Order) -> None:
        Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(status=Order.Status.CANCELLED)

    def on_bar(self, *, account: Account, bar: Bar, costs: FillCosts, record) -> list[Fill]:
        prices = _prices(bar)
        fills = _fill_entries(account, bar, prices, costs, record)
        return fills + _run_brackets(account, bar, prices, costs, record)


def _prices(bar: Bar) -> BarPrices:
    return BarPrices(timestamp=bar.timestamp, open=bar.open, high=bar.high, low=bar.low, close=bar.close)


def _fill_entries(account: Account, bar: Bar, prices: BarPrices, costs: FillCosts, record) -> list[Fill]:
    fills = []
    entries = (Order.objects.select_for_update(of=("self",)).select_related("recommendation")
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
        side = Side.of_order(order.side)
        price = entry_price(side, prices, costs)
        # The distances the recommendation showed when it was approved, around the actual fill price.
        bracket = bracket_at(side, price, recommendation.take_profit_distance, recommendation.stop_distance,
                             order.horizon_bars or recommendation.horizon_bars, bar.instrument.tick_size)
        fills.append(record(order, bar, price))
        order.take_profit, order.stop_loss = bracket.take_profit, bracket.stop_loss
        order.save(update_fields=["take_profit", "stop_loss"])
        Recommendation.objects.filter(pk=recommendation.pk, state=Recommendation.State.APPROVED).update(
            state=Recommendation.State.EXECUTED, executed_at=bar.timestamp)
        _push_recommendation(recommendation.pk, bar.instrument)
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
        _push_recommendation(recommendation.pk, bar.instrument)


def _run_brackets(account: Account, bar: Bar, prices: BarPrices, costs: FillCosts, record) -> list[Fill]:
    fills = []
    open_trades = (Order.objects.select_for_update(of=("self",))
                   .filter(account=account, instrument=bar.instrument, timeframe=bar.timeframe,
                           kind=Order.Kind.ENTRY, status=Order.Status.FILLED, closed=False)
                   .select_related("fill").order_by("id"))
    for entry in open_trades:
        if entry.fill.timestamp > bar.timestamp or (entry.last_bar_timestamp and entry.last_bar_timestamp >= bar.timestamp):
            continue  # this bar is before the entry, or was already run against this trade
        side = Side.of_order(entry.side)
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
                    side=side.closing_order_side, quantity=entry.quantity,
                    idempotency_key=f"order-{entry.pk}-exit", after_bar_timestamp=bar_run.timestamp,
                    take_profit=entry.take_profit, stop_loss=entry.stop_loss)
                fills.append(record(order, bar_run, exit_.price))
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
    since: datetime | None = entry.last_bar_timestamp
    if (since is None and entry.fill.timestamp == bar.timestamp) or (since is not None and since + step >= bar.timestamp):
        return [(bar, prices)]
    missed = Bar.objects.filter(instrument_id=bar.instrument_id, timeframe=bar.timeframe, timestamp__lt=bar.timestamp)
    missed = missed.filter(timestamp__gt=since) if since is not None else missed.filter(
        timestamp__gte=entry.fill.timestamp)
    return [(b, _prices(b)) for b in missed.order_by("timestamp")] + [(bar, prices)]


def _push_recommendation(recommendation_id: int, instrument) -> None:
    if instrument.backtest:
        return  # no dashboard shows a backtest's private market
    def push():
        recommendation = Recommendation.objects.select_related("account", "instrument").get(pk=recommendation_id)
        realtime.broadcast(recommendation.instrument.symbol, recommendation.timeframe, "recommendation.updated",
                           selectors.recommendation_payload(recommendation))
    transaction.on_commit(push, robust=True)
