"""The paper broker: fills from the bars themselves, by the engine's rules (`domain.engine.settle`, `domain.broker`).

An approved entry fills at the open of the bar after the approval; the trade's bracket (take-profit, stop, time
limit) is then run against every bar, the entry's own included, each bar once (`last_bar_timestamp`). Settlement
(`services.execution`) runs those rules for every account at each closed bar and writes the fills; there is nothing
to send anywhere, so submitting and cancelling only touch the order's row.
"""
from __future__ import annotations

from django.db import transaction

from .. import realtime, selectors
from ..models import Instrument, Order, Recommendation


class PaperBroker:
    name = "paper"
    simulated = True  # its fills are the engine's (settlement makes them); a venue's adapter reports its own

    def submit(self, order: Order) -> None:
        # Nothing to send: the order row rests until the next bar, whose open fills it (settlement).
        return None

    def cancel(self, order: Order) -> None:
        Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(status=Order.Status.CANCELLED)


def push_recommendation(recommendation_id: int, instrument: Instrument) -> None:
    """Show a recommendation's new state on its market's dashboards once the transaction commits."""
    if instrument.backtest:
        return  # no dashboard shows a backtest's private market
    def push():
        recommendation = Recommendation.objects.select_related("account", "instrument").get(pk=recommendation_id)
        realtime.broadcast(recommendation.instrument.symbol, recommendation.timeframe, "recommendation.updated",
                           selectors.recommendation_payload(recommendation))
    transaction.on_commit(push, robust=True)
