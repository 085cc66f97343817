"""`bench statements`: SQL statements per bar of the live per-bar steps, settle and decide (issue 20's target: 15
together). A scratch market and auto-trading account; every bar is settled (`services.bar_settle`, then the expiry
of pending recommendations) and decided (`services.recommendations_create` on a stored prediction, as the workflow
does once the model has predicted), each inside Django's query capture. Predictions alternate between a confident
long (a trade: an entry, its bracket, an exit) and a side under the confidence floor (blocked), so the figures cover
bars with and without an open trade. The model's own prediction (`mlcore.services.prediction_create`) is not counted:
it is the ML core's step, measured by `bench e2e`.
"""
from __future__ import annotations

import os
import statistics
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext


def bench_statements(*, bars: int = 300) -> dict:
    from mlcore import selectors as ml_selectors
    from mlcore.models import ModelVersion, Prediction

    from . import services
    from .models import Account, Bar, Instrument

    symbol = f"BST{os.getpid()}"[:20]
    start = datetime(2024, 1, 3, 14, 30, tzinfo=timezone.utc)  # a Wednesday, in session
    instrument = Instrument.objects.create(symbol=symbol, name="statements benchmark", tick_size="0.25",
                                           point_value="20")
    account = Account.objects.create(name=f"bench-{symbol}", auto_trading=True)
    services.trading_config_get(account=account, instrument=instrument)
    label = {"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 5}
    version = ModelVersion.objects.create(
        instrument=instrument, timeframe="1m", status=ModelVersion.Status.CANDIDATE, preset="fast", seed=0,
        data_start=start, data_end=start, n_bars=1000, feature_names=["x"], feature_window=61, sequence_length=20,
        hyperparameters={}, label_settings=label, payoff_ratio=1.5, health_score=100.0)
    settle, decide = [], []
    try:
        price = Decimal("18000")
        for i in range(bars):
            step = Decimal((i * 7919) % 13 - 6) * Decimal("0.25")  # a seeded wander on the tick grid
            close = price + step
            bar = Bar.objects.create(instrument=instrument, timeframe="1m", timestamp=start + i * timedelta(minutes=1),
                                     open=price, high=max(price, close) + 1, low=min(price, close) - 1, close=close,
                                     volume=Decimal(100))
            price = close
            p = 0.72 if i % 4 == 0 else 0.52
            made = Prediction.objects.create(instrument=instrument, bar=bar, version=version, p_long=p,
                                             p_short=1 - p, side="long", confidence=p, agreement=0.8,
                                             members={"members": {}, "meta_raw": {}}, latency_ms=1.0, atr=4.0,
                                             atr_reference=4.0)
            facts = ml_selectors.prediction_facts(prediction_id=made.pk)
            now = bar.timestamp + timedelta(minutes=1)
            with CaptureQueriesContext(connection) as captured:
                services.bar_settle(bar_id=bar.pk)
                services.recommendations_expire(instrument=instrument, timeframe="1m", latest_bar_timestamp=bar.timestamp)
            settle.append(len(captured))
            with CaptureQueriesContext(connection) as captured:
                services.recommendations_create(facts=facts, now=now)
            decide.append(len(captured))
        from .models import Fill

        fills = Fill.objects.filter(account=account).count()
    finally:
        _cleanup(instrument, account, version)
    together = [a + b for a, b in zip(settle, decide)]
    return {
        "bench": "statements",
        "database": connection.vendor,
        "bars": bars,
        "fills": fills,
        "settle": _summary(settle),
        "decide": _summary(decide),
        "together": _summary(together),
        "target_together": 15,
    }


def _summary(values: list[int]) -> dict:
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values), "max": max(values)}


def _cleanup(instrument, account, version) -> None:
    from mlcore.models import Prediction

    from .models import AuditEvent, Bar, EquitySnapshot, Fill, Order, Position, Recommendation, TradingConfig

    AuditEvent.objects.filter(account=account).delete()
    Fill.objects.filter(account=account).delete()
    Order.objects.filter(account=account, parent__isnull=False).delete()
    Order.objects.filter(account=account).delete()
    for model in (Position, EquitySnapshot, Recommendation, TradingConfig):
        model.objects.filter(account=account).delete()
    Prediction.objects.filter(instrument=instrument).delete()
    Bar.objects.filter(instrument=instrument).delete()
    version.delete()
    account.delete()
    instrument.delete()
