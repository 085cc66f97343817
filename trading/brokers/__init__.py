"""The broker interface MinhOS trades through, and how the configured broker is chosen.

A live adapter (Interactive Brokers, Rithmic, ...) implements `Broker` and is named in the setting MINHOS_BROKER.
The contract: orders are `trading.models.Order` rows with a unique idempotency key; `submit` is called by a task
queued once the approval has committed and must treat a second submission of the same key as the first (no second
order at the venue). The paper broker's fills are the engine's rules, run by settlement at each closed bar
(`domain.engine.settle`); an adapter to a venue will report its fills as the same events, so positions stay
derivable from fills whoever the broker is.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from ..models import Order
from .paper import PaperBroker


@runtime_checkable
class Broker(Protocol):
    name: str

    def submit(self, order: Order) -> None: ...

    def cancel(self, order: Order) -> None: ...


@lru_cache(maxsize=None)
def broker_get() -> Broker:
    broker = import_string(getattr(settings, "MINHOS_BROKER", "trading.brokers.PaperBroker"))()
    if not isinstance(broker, Broker):
        raise TypeError(f"MINHOS_BROKER {type(broker).__name__} does not implement trading.brokers.Broker")
    return broker


__all__ = ["Broker", "PaperBroker", "broker_get"]
