"""The broker interface MinhOS trades through, and the paper broker that implements it.

A live adapter (Interactive Brokers, Rithmic, ...) implements `Broker` and is named in the setting MINHOS_BROKER.
The contract: orders are `trading.models.Order` rows with a unique idempotency key; `submit` is called once the
approval has committed and must treat a second submission of the same key as the first (no second order at the
venue); `on_bar` is called for every closed bar and records each fill exactly once through the execution service
(which applies it to the position), so positions stay derivable from fills whoever the broker is.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from .models import Fill, Order


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, order: Order) -> None: ...

    def cancel(self, order: Order) -> None: ...

    def on_bar(self, bar_id: int) -> list[Fill]: ...


class PaperBroker:
    """Fills from the bars themselves (`domain.broker` rules): entries at the next bar's open, brackets after."""

    name = "paper"

    def submit(self, order: Order) -> None:
        # Nothing to send: the order row rests until the next bar, whose open fills it (see on_bar).
        return None

    def cancel(self, order: Order) -> None:
        Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(status=Order.Status.CANCELLED)

    def on_bar(self, bar_id: int) -> list[Fill]:
        from .services.execution import broker_process_bar

        return broker_process_bar(bar_id=bar_id)


@lru_cache(maxsize=None)
def broker_get() -> Broker:
    broker = import_string(getattr(settings, "MINHOS_BROKER", "trading.brokers.PaperBroker"))()
    if not isinstance(broker, Broker):
        raise TypeError(f"MINHOS_BROKER {type(broker).__name__} does not implement trading.brokers.Broker")
    return broker
