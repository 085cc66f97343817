"""Benchmarks of the trading app, run by `manage.py bench NAME`; each returns one dict of measured figures."""
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from django.db import connection

from . import services
from .domain.bars import read_bar_file
from .domain.synthetic import generate_bars, session_timestamps
from .models import Bar, Instrument


def bench_ingest(*, rows: int = 1_000_000, seed: int = 1) -> dict:
    """Generate a one-minute CSV of `rows` bars, import it into the configured database, import it again."""
    started = time.perf_counter()
    stamps = session_timestamps(datetime(2020, 1, 1, tzinfo=timezone.utc), rows, timeframe="1m")
    frame = generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25).drop(columns="row")
    generate_seconds = time.perf_counter() - started
    symbol = f"BENCH-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="minhos-bench-") as folder:
        path = Path(folder) / "bars_1m.csv"
        frame.to_csv(path, index=False)
        csv_mb = path.stat().st_size / 1e6
        instrument = Instrument.objects.create(symbol=symbol, name="benchmark", tick_size="0.25", point_value="20")
        try:
            t0 = time.perf_counter()
            parsed = read_bar_file(path)
            t1 = time.perf_counter()
            first = services.bars_ingest(instrument=instrument, timeframe="1m", frame=parsed)
            t2 = time.perf_counter()
            again = services.bars_import_file(path=path, symbol=symbol, timeframe="1m")
            t3 = time.perf_counter()
        finally:
            # One DELETE statement: the ORM's cascade collector would walk a million rows looking for dependants.
            # The benchmark instrument has none (a foreign key would refuse the delete if it had).
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Bar._meta.db_table} WHERE instrument_id = %s", [instrument.pk])
            instrument.delete()
    seconds = t2 - t0
    return {
        "bench": "ingest",
        "database": connection.vendor,
        "rows": rows,
        "csv_mb": round(csv_mb, 1),
        "inserted": first.inserted,
        "seconds": round(seconds, 4),
        "bars_per_s": round(rows / seconds),
        "phases_s": {"read_csv": round(t1 - t0, 3), "validate_and_write": round(t2 - t1, 3)},
        "reimport_unchanged": again.unchanged,
        "reimport_seconds": round(t3 - t2, 3),
        "reimport_bars_per_s": round(rows / (t3 - t2)),
        "generate_seconds": round(generate_seconds, 3),
    }


def bench_sizing(*, predictions: int = 300, calls: int = 20_000) -> dict:
    """Kelly + risk for one prediction (pure, µs), and the whole sizing service with its database writes (ms).

    The service is timed on a scratch instrument and account: per prediction it reads the account's exposure and
    P&L, sizes, checks risk, writes the recommendation and commits; everything made is deleted afterwards.
    """
    import numpy as np
    from datetime import timedelta
    from decimal import Decimal

    from mlcore.models import ModelVersion, Prediction

    from .domain.config_ranges import CONFIG_RANGES
    from .domain.kelly import KellyConfig, KellyInputs, kelly_size
    from .domain.risk import Proposal, RiskContext, RiskLimits, TradingState, assess
    from .models import Account, TradingConfig

    def percentiles(samples, scale):
        values = np.asarray(samples) * scale
        return {q: round(float(np.percentile(values, int(q[1:]))), 3) for q in ("p50", "p95", "p99")}

    start = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)  # a Tuesday, 10:00 New York: in session
    inputs = KellyInputs(probability=0.68, payoff_ratio=1.5, confidence=0.68, drawdown=0.02, model_health=0.9,
                         volatility_ratio=1.2, equity=Decimal("100000"), stop_distance=Decimal("12.5"),
                         point_value=Decimal("20"))
    config, limits = KellyConfig(), RiskLimits()
    context = RiskContext(now=start, trading_state=TradingState.ACTIVE, kill_switch=False,
                          circuit_breaker_tripped=False, position_contracts=1, total_contracts=1,
                          daily_pnl=Decimal("-150"), drawdown=0.02, trades_today=3, last_bar_age_seconds=5.0,
                          model_health=0.9)
    pure = []
    for _ in range(calls):
        t0 = time.perf_counter()
        size = kelly_size(inputs, config)
        assess(Proposal(side="long", contracts=size.contracts, confidence=inputs.confidence,
                        risk_per_contract=Decimal("260.00")), context, limits)
        pure.append(time.perf_counter() - t0)

    symbol = f"BENCH-SZ-{os.getpid()}"
    instrument = Instrument.objects.create(symbol=symbol, name="benchmark", tick_size="0.25", point_value="20")
    account = Account.objects.create(name=symbol)
    # As many trades a day as a setting may allow, so the day's count never blocks the measured path.
    TradingConfig.objects.create(account=account, instrument=instrument,
                                 max_trades_per_day=CONFIG_RANGES["max_trades_per_day"].high)
    label = {"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 30}
    version = ModelVersion.objects.create(
        instrument=instrument, timeframe="1m", preset="fast", seed=0, data_start=start, data_end=start, n_bars=0,
        feature_names=[], feature_window=61, sequence_length=20, hyperparameters={}, label_settings=label,
        payoff_ratio=1.5)
    service = []
    try:
        rng = np.random.default_rng(0)
        for i in range(predictions):
            price = Decimal(18_000) + Decimal(int(rng.integers(-40, 40))) / 4
            bar = Bar.objects.create(instrument=instrument, timeframe="1m", timestamp=start + timedelta(minutes=i),
                                     open=price, high=price + 2, low=price - 2, close=price, volume=100)
            p = float(rng.uniform(0.55, 0.8))
            prediction = Prediction.objects.create(
                instrument=instrument, bar=bar, version=version, p_long=p, p_short=1 - p, side="long", confidence=p,
                agreement=0.8, members={}, latency_ms=1.0, atr=10.0 + float(rng.uniform(0, 5)), atr_reference=11.0)
            now = bar.timestamp + timedelta(minutes=1, seconds=1)
            t0 = time.perf_counter()
            services.recommendations_create_for_prediction(prediction_id=prediction.pk, now=now)
            service.append(time.perf_counter() - t0)
    finally:
        account.recommendations.all().delete()
        account.delete()
        Prediction.objects.filter(instrument=instrument).delete()
        version.delete()
        instrument.delete()
    return {
        "bench": "sizing",
        "database": connection.vendor,
        "kelly_risk_us": percentiles(pure, 1e6),
        "service_ms": percentiles(service, 1e3),
        "calls": calls,
        "predictions": predictions,
    }
