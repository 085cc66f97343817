"""Test helpers for the decision path: a market of hand-made bars, a model version row and predictions on it.

Bars start on a Tuesday at 09:30 New York time (inside the Globex session), one minute apart, and are made with
the factory (no "bar closed" event), so nothing predicts them by itself: tests create the predictions they need
and call the services directly, passing `now` (the wall clock) so staleness is under their control.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from mlcore.models import ModelVersion, Prediction
from trading.models import Bar, Instrument
from trading.tests.factories import SERIES_ORIGIN, BarFactory

ONE_MINUTE = timedelta(minutes=1)
LABEL = {"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 30, "payoff_ratio": 1.5}


def bar_at(instrument: Instrument, i: int, *, open_: str = "18000", high: str | None = None, low: str | None = None,
           close: str | None = None, timeframe: str = "1m") -> Bar:
    """Bar number i of the test market; prices given as strings (Decimal), high/low default to open/close +- 1."""
    o = Decimal(open_)
    c = Decimal(close) if close is not None else o
    h = Decimal(high) if high is not None else max(o, c) + 1
    lo = Decimal(low) if low is not None else min(o, c) - 1
    return BarFactory.create(instrument=instrument, timeframe=timeframe, timestamp=SERIES_ORIGIN + i * ONE_MINUTE,
                             open=o, high=h, low=lo, close=c, volume=Decimal(100))


def flat_bars(instrument: Instrument, count: int, *, start: int = 0, price: str = "18000") -> list[Bar]:
    return [bar_at(instrument, start + i, open_=price) for i in range(count)]


def close_time(bar: Bar) -> datetime:
    return bar.timestamp + ONE_MINUTE


def model_version(instrument: Instrument, *, timeframe: str = "1m", health_score: float | None = 100.0,
                  label: dict | None = None) -> ModelVersion:
    """A version row (no artifacts: it never predicts by itself), with the label bracket sizing reads."""
    label = label or LABEL
    return ModelVersion.objects.create(
        instrument=instrument, timeframe=timeframe, status=ModelVersion.Status.CANDIDATE, preset="fast", seed=0,
        data_start=SERIES_ORIGIN, data_end=SERIES_ORIGIN, n_bars=1000, feature_names=["x"], feature_window=61,
        sequence_length=20, hyperparameters={}, label_settings=label,
        payoff_ratio=label["tp_atr"] / label["sl_atr"], health_score=health_score)


def prediction(bar: Bar, version: ModelVersion, *, side: str = "long", p: float = 0.70, atr: float = 10.0,
               atr_reference: float | None = 10.0, agreement: float = 0.8) -> Prediction:
    """A stored prediction of `bar`: p for the chosen side, 1 - p for the other (confidence = p)."""
    p_long, p_short = (p, 1 - p) if side == "long" else (1 - p, p)
    return Prediction.objects.create(
        instrument=bar.instrument, bar=bar, version=version, p_long=p_long, p_short=p_short, side=side,
        confidence=p, agreement=agreement, members={"members": {}, "meta_raw": {}}, latency_ms=1.0, atr=atr,
        atr_reference=atr_reference)


def user_with(username: str, *permissions: str):
    """A user holding the given "app_label.codename" permissions (none: a read-only user)."""
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return get_user_model().objects.get(pk=user.pk)  # fresh instance: no stale permission cache
