"""`manage.py bench monitor`: one snapshot over N resolved predictions (default 100,000), timed.

It works on an instrument of its own (BENCHMON), made and removed by the run, so the configured database's real
markets are untouched; bars and predictions are written in bulk, then `snapshot_take` is timed three times (the
median and every run are reported, with the snapshot's own stored duration)."""
from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db import transaction

from mlcore.domain.drift import reference_bins
from mlcore.domain.features import FEATURE_NAMES
from mlcore.models import ModelVersion, Prediction
from trading.models import Bar, Instrument

from . import services

SYMBOL = "BENCHMON"
CHUNK = 5_000


def bench_monitor(*, predictions: int = 100_000, runs: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    _cleanup()
    instrument = Instrument.objects.create(symbol=SYMBOL, name="monitoring benchmark", exchange="BENCH",
                                           tick_size=Decimal("0.25"), point_value=Decimal("20"), currency="USD",
                                           active=False)
    try:
        started = time.perf_counter()
        version = _version(instrument, rng)
        _predictions(instrument, version, predictions, rng)
        setup = time.perf_counter() - started
        timings, stored = [], []
        for _ in range(runs):
            version.refresh_from_db()
            t0 = time.perf_counter()
            result = services.snapshot_take(version=version)
            timings.append(time.perf_counter() - t0)
            stored.append(result.snapshot.seconds)
        chosen = result.snapshot.metrics["windows"]["version"]["chosen"]
        return {
            "bench": "monitor",
            "resolved_predictions": chosen["n"],
            "snapshot_seconds_median": round(statistics.median(timings), 3),
            "snapshot_seconds_runs": [round(t, 3) for t in timings],
            "snapshot_seconds_stored": stored,
            "target_seconds": 2.0,
            "health_score": result.snapshot.health_score,
            "setup_seconds": round(setup, 1),
        }
    finally:
        _cleanup()


def _cleanup() -> None:
    instrument = Instrument.objects.filter(symbol=SYMBOL).first()
    if instrument is None:
        return
    with transaction.atomic():
        Prediction.objects.filter(instrument=instrument).delete()
        from .models import Alert, MetricSnapshot

        Alert.objects.filter(instrument=instrument).delete()
        MetricSnapshot.objects.filter(instrument=instrument).delete()
        ModelVersion.objects.filter(instrument=instrument).delete()
        Bar.objects.filter(instrument=instrument).delete()
        instrument.delete()


def _version(instrument, rng) -> ModelVersion:
    figures = {"accuracy": 0.6, "log_loss": 0.66, "brier": 0.235, "ece": 0.02, "roc_auc": 0.63, "n": 20_000,
               "base_rate": 0.45}
    reference = {"features": {name: reference_bins(rng.normal(size=20_000)) for name in FEATURE_NAMES},
                 "probability": {side: reference_bins(rng.uniform(0.3, 0.8, 20_000)) for side in ("long", "short")}}
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return ModelVersion.objects.create(
        instrument=instrument, timeframe="1m", status=ModelVersion.Status.ACTIVE, preset="fast", seed=0,
        data_start=start, data_end=start, n_bars=20_000, feature_names=list(FEATURE_NAMES), feature_window=61,
        sequence_length=20, hyperparameters={}, label_settings={"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 30,
                                                                "payoff_ratio": 1.5},
        payoff_ratio=1.5, metrics={"long": {"meta": figures}, "short": {"meta": figures}}, has_edge=True,
        edge_statement="benchmark", drift_reference=reference)


def _predictions(instrument, version, n: int, rng) -> None:
    start = datetime(2020, 1, 2, tzinfo=UTC)
    price = Decimal("18000")
    for offset in range(0, n, CHUNK):
        size = min(CHUNK, n - offset)
        bars = Bar.objects.bulk_create([
            Bar(instrument=instrument, timeframe="1m", timestamp=start + timedelta(minutes=offset + i), open=price,
                high=price + 1, low=price - 1, close=price, volume=Decimal(100)) for i in range(size)])
        p_long = rng.uniform(0.3, 0.8, size)
        won = rng.uniform(size=size) < p_long
        Prediction.objects.bulk_create([
            Prediction(instrument=instrument, bar=bar, version=version, p_long=float(pl), p_short=float(1 - pl),
                       side="long" if pl >= 0.5 else "short", confidence=float(max(pl, 1 - pl)), agreement=0.8,
                       members={}, latency_ms=float(rng.gamma(4.0, 5.0)), atr=10.0, atr_reference=10.0,
                       outcome_status="resolved", outcome_long="take_profit" if w else "stop",
                       outcome_short="stop" if w else "take_profit", return_long=0.001 if w else -0.0007,
                       return_short=-0.0007 if w else 0.001)
            for bar, pl, w in zip(bars, p_long, won)])
