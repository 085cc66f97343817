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


def bench_backtest(*, bars: int = 100_000, history: int = 20_000, preset: str = "fast", seed: int = 7,
                   keep: bool = False) -> dict:
    """`bars` one-minute bars replayed through the backtest (the live per-bar workflow) with a `preset` model
    trained on the `history` bars before them; then MinhOS's entries exported as signals and run through
    backtesting.py (requirements-bench.txt) on the same bars with the same brackets, commission and slippage.

    Prints both throughputs, both trade counts and every trade difference with the rule that explains it
    (trading.peer_backtest.RULES). A scratch market, account and run; all deleted afterwards unless `keep`.
    """
    import pandas as pd

    from mlcore import services as ml_services
    from mlcore.models import ModelVersion

    from . import backtest, peer_backtest
    from .domain.synthetic import DEMO_SIGNAL, SyntheticParams
    from .models import Account, BacktestRun, Order

    symbol = f"BTB{os.getpid()}"[:20]
    stamps = session_timestamps(datetime(2023, 1, 2, 23, 0, tzinfo=timezone.utc), history + bars, timeframe="1m")
    frame = generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25,
                          params=SyntheticParams(**DEMO_SIGNAL))
    instrument = Instrument.objects.create(symbol=symbol, name="backtest benchmark", tick_size="0.25",
                                           point_value="20")
    account = Account.objects.create(name=f"bench-{symbol}")
    run = None
    try:
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[:history])
        t0 = time.perf_counter()
        version = ml_services.model_version_train(symbol=symbol, timeframe="1m", preset=preset, seed=0,
                                                  promote=False)
        train_seconds = time.perf_counter() - t0
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[history:])
        window = frame.iloc[history:]
        config = services.trading_config_get(account=account, instrument=instrument)
        run = backtest.backtest_create(symbol=symbol, timeframe="1m", start=window.timestamp.iloc[0].to_pydatetime(),
                                       end=window.timestamp.iloc[-1].to_pydatetime(), version_id=version.pk,
                                       account_name=account.name, breaker=backtest.BREAKER_DAILY, via="bench")
        t1 = time.perf_counter()
        run = backtest.backtest_execute(run_id=run.pk)
        ours_seconds = time.perf_counter() - t1

        # MinhOS's entries as signals: the bar each was decided on, its side, size and bracket distances.
        entries = (Order.objects.filter(account=run.account, kind=Order.Kind.ENTRY, status=Order.Status.FILLED)
                   .select_related("recommendation").order_by("id"))
        signals = [peer_backtest.PeerSignal(
            signal_at=e.recommendation.bar_timestamp, side=e.recommendation.side, contracts=e.quantity,
            stop_distance=e.recommendation.stop_distance, take_profit_distance=e.recommendation.take_profit_distance,
            horizon_bars=e.recommendation.horizon_bars) for e in entries]
        path = window.set_index(pd.DatetimeIndex(window.timestamp, tz="UTC"))[["open", "high", "low", "close",
                                                                              "volume"]]
        costs = {"tick_size": instrument.tick_size, "point_value": instrument.point_value,
                 "slippage_ticks": config.slippage_ticks}
        peer = peer_backtest.peer_run(path, signals, commission_per_contract=config.commission_per_contract,
                                      cash=account.starting_equity, **costs)
        ours = [peer_backtest.PeerTrade(
            side=t["side"], contracts=t["contracts"], entry_at=_aware(t["entry_at"]), entry_price=t["entry_price"],
            exit_at=_aware(t["exit_at"]), exit_price=t["exit_price"], exit_reason=t["exit_reason"],
            net_pnl=t["gross_pnl"] - t["commission"]) for t in backtest.trades_of(account=run.account)
            if t["exit_at"] is not None]
        comparison = peer_backtest.trades_compare(ours, peer.trades, bars=path, signals=signals, **costs)
        report = run.report
        return {
            "bench": "backtest",
            "database": connection.vendor,
            "bars": bars,
            "history_bars": history,
            "preset": preset,
            "train_seconds": round(train_seconds, 1),
            "minhos": {"seconds": round(ours_seconds, 1), "bars_per_s": round(bars / ours_seconds, 1),
                       "trades": len(ours), "open_at_end": report["open_trades"], "net_pnl": report["net_pnl"],
                       "recommendations": report["recommendations"], "breaker_trips": report["breaker_trips"]},
            "backtesting_py": {"seconds": round(peer.seconds, 3), "bars_per_s": round(peer.bars_per_s),
                               "trades": len(peer.trades)},
            "comparison": {key: comparison[key] for key in comparison if key != "differences"},
            "differences_sample": comparison["differences"][:20],
            "rules": list(peer_backtest.RULES),
        }
    finally:
        if not keep:
            if run is not None:
                BacktestRun.objects.filter(pk=run.pk, status=BacktestRun.Status.RUNNING).update(
                    status=BacktestRun.Status.FAILED)
                backtest.backtest_delete(run_id=run.pk)
            for version in ModelVersion.objects.filter(instrument=instrument):
                _version_delete(version)
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Bar._meta.db_table} WHERE instrument_id = %s", [instrument.pk])
            account.delete()
            instrument.delete()


def _aware(value):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if isinstance(value, str) else value


def _version_delete(version) -> None:
    """A benchmark's version: its artifacts from storage, then the row (nothing else refers to it by then)."""
    from django.core.files.storage import default_storage

    from mlcore.models import Prediction, TrainingRun

    for relative in (version.artifacts or {}):
        default_storage.delete(f"{version.artifact_root}/{relative}")
    Prediction.objects.filter(version=version).delete()
    TrainingRun.objects.filter(version=version).delete()
    version.delete()
