"""The broker interface MinhOS trades through, and how the configured broker is chosen.

A live adapter (Interactive Brokers, Rithmic, ...) implements `Broker` and is named in the setting MINHOS_BROKER.
The contract: orders are `trading.models.Order` rows with a unique idempotency key; `submit` is called by a task
queued once the approval has committed and must treat a second submission of the same key as the first (no second
order at the venue); `on_bar` is called for every closed bar of the market, once per account, inside the account's
settlement transaction, and reports each fill through `record` exactly once (the settlement service applies it to
the position), so positions stay derivable from fills whoever the broker is.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from ..domain.broker import FillCosts
from ..models import Account, Bar, Fill, Order
from .paper import PaperBroker

# What a broker calls for each fill: (order, the bar it filled on, price) -> the recorded fill.
RecordFill = Callable[[Order, Bar, Decimal], Fill]


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, order: Order) -> None: ...

    def cancel(self, order: Order) -> None: ...

    def on_bar(self, *, account: Account, bar: Bar, costs: FillCosts, record: RecordFill) -> list[Fill]: ...


@lru_cache(maxsize=None)
def broker_get() -> Broker:
    broker = import_string(getattr(settings, "MINHOS_BROKER", "trading.brokers.PaperBroker"))()
    if not isinstance(broker, Broker):
        raise TypeError(f"MINHOS_BROKER {type(broker).__name__} does not implement trading.brokers.Broker")
    return broker


__all__ = ["Broker", "PaperBroker", "RecordFill", "broker_get"]
