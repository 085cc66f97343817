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
                   db_bars: int = 2_000, keep: bool = False) -> dict:
    """`bars` one-minute bars backtested three ways, on a `preset` model trained on the `history` bars before them:
    MinhOS's memory engine (the default), MinhOS's database replay through the live services (`engine="db"`, on the
    first `db_bars` bars only: it runs tens of bars a second), and backtesting.py (requirements-bench.txt) given the
    memory run's entries as signals, with the same brackets, commission and slippage.

    Gives each one's throughput under `memory`, `db`, `backtesting_py`; the memory run's phases and peak memory;
    every trade difference against backtesting.py with the rule that explains it (trading.peer_backtest.RULES); and
    the differences between the engines on the db window (every record of a memory run over that window against
    the db run's, and the long memory run's trades closed inside it). Scratch market, account and runs; all deleted
    afterwards unless `keep`.
    """
    import pandas as pd

    from mlcore import services as ml_services
    from mlcore.models import ModelVersion

    from . import backtest, peer_backtest
    from .domain.synthetic import DEMO_SIGNAL, SyntheticParams
    from .models import Account, BacktestRun, Order

    if bars < 1 or history < 1 or db_bars < 1:
        raise ValueError(f"bars, history and db_bars must be positive, got {bars}, {history}, {db_bars}")
    db_bars = min(db_bars, bars)
    symbol = f"BTB{os.getpid()}"[:20]
    stamps = session_timestamps(datetime(2023, 1, 2, 23, 0, tzinfo=timezone.utc), history + bars, timeframe="1m")
    frame = generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25,
                          params=SyntheticParams(**DEMO_SIGNAL))
    instrument = Instrument.objects.create(symbol=symbol, name="backtest benchmark", tick_size="0.25",
                                           point_value="20")
    account = Account.objects.create(name=f"bench-{symbol}")
    runs = []
    try:
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[:history])
        t0 = time.perf_counter()
        version = ml_services.model_version_train(symbol=symbol, timeframe="1m", preset=preset, seed=0,
                                                  promote=False)
        train_seconds = time.perf_counter() - t0
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[history:])
        window = frame.iloc[history:]
        config = services.trading_config_get(account=account, instrument=instrument)

        def execute(engine: str, last: int):
            run = backtest.backtest_create(
                symbol=symbol, timeframe="1m", start=window.timestamp.iloc[0].to_pydatetime(),
                end=window.timestamp.iloc[last - 1].to_pydatetime(), version_id=version.pk, account_name=account.name,
                breaker=backtest.BREAKER_DAILY, via="bench", engine=engine)
            runs.append(run)
            started = time.perf_counter()
            run = backtest.backtest_execute(run_id=run.pk)
            return run, time.perf_counter() - started

        with _PeakRss() as rss:
            memory, memory_seconds = execute(backtest.ENGINE_MEMORY, bars)
        db, db_seconds = execute(backtest.ENGINE_DB, db_bars)
        memory_short, _ = execute(backtest.ENGINE_MEMORY, db_bars)

        # MinhOS's entries as signals: the bar each was decided on, its side, size and bracket distances.
        entries = (Order.objects.filter(account=memory.account, kind=Order.Kind.ENTRY, status=Order.Status.FILLED)
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
        ours = _closed_trades(memory)
        comparison = peer_backtest.trades_compare(ours, peer.trades, bars=path, signals=signals, **costs)

        # The engines on the db window: every record, and the long run's trades that closed inside the window (what
        # happened up to a bar never depends on the bars after it).
        record_differences = records_differences(run_records(db), run_records(memory_short))
        db_end = window.timestamp.iloc[db_bars - 1].to_pydatetime()
        db_trades = _closed_trades(db)
        long_trades = [t for t in ours if t.exit_at <= db_end]
        trade_differences = [f"{a} != {b}" for a, b in zip(db_trades, long_trades) if a != b]
        if len(db_trades) != len(long_trades):
            trade_differences.append(f"{len(db_trades)} db trades against {len(long_trades)} memory trades")
        report = memory.report
        timings = (report.get("engine") or {}).get("seconds")  # backtest_execute's phases, stored with the report
        return {
            "bench": "backtest",
            "database": connection.vendor,
            "bars": bars,
            "history_bars": history,
            "preset": preset,
            "train_seconds": round(train_seconds, 1),
            "memory": {
                "seconds": round(memory_seconds, 3), "bars_per_s": round(bars / memory_seconds, 1),
                "trades": len(ours), "open_at_end": report["open_trades"], "net_pnl": report["net_pnl"],
                "recommendations": report["recommendations"], "breaker_trips": report["breaker_trips"],
                # backtest_execute's whole call: the phases below (read_bars, predict, engine, write, ..., report)
                # plus the private market.
                "phases_s": {name: round(seconds, 3) for name, seconds in timings.items()} if timings else None,
                "peak_rss_mb": rss.peak_mb, "rss_growth_mb": rss.growth_mb,
                "memory_measure": (f"resident set size of this process sampled every {_PeakRss.EVERY * 1000:g} ms "
                                   "from /proc/self/statm during the run: its peak, and the peak less the size "
                                   "at the start (memory freed by the training before may be reused unseen)"),
            },
            "db": {"seconds": round(db_seconds, 3), "bars": db_bars, "bars_per_s": round(db_bars / db_seconds, 1),
                   "trades": len(db_trades),
                   "note": f"the database replay runs the window's first {db_bars} bars only (--db-bars); its "
                           "bars_per_s is measured on those"},
            "backtesting_py": {"seconds": round(peer.seconds, 3), "bars_per_s": round(peer.bars_per_s),
                               "trades": len(peer.trades)},
            "speedup_memory_over_db": round(db_seconds / db_bars * bars / memory_seconds, 1),
            "comparison": {key: comparison[key] for key in comparison if key != "differences"},
            "differences_sample": comparison["differences"][:20],
            "rules": list(peer_backtest.RULES),
            "engines_on_db_window": {
                "bars": db_bars,
                "record_differences": len(record_differences),
                "record_differences_sample": record_differences[:20],
                "records_compared": {name: len(rows) for name, rows in run_records(db).items()},
                "trades_compared": len(db_trades),
                "trade_differences": len(trade_differences),
                "trade_differences_sample": trade_differences[:20],
            },
        }
    finally:
        if not keep:
            for run in runs:
                BacktestRun.objects.filter(pk=run.pk, status=BacktestRun.Status.RUNNING).update(
                    status=BacktestRun.Status.FAILED)
                backtest.backtest_delete(run_id=run.pk)
            for version in ModelVersion.objects.filter(instrument=instrument):
                _version_delete(version)
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Bar._meta.db_table} WHERE instrument_id = %s", [instrument.pk])
            account.delete()
            instrument.delete()


def _closed_trades(run) -> list:
    """A run's closed trades as trading.peer_backtest compares them."""
    from . import backtest, peer_backtest

    return [peer_backtest.PeerTrade(
        side=t["side"], contracts=t["contracts"], entry_at=_aware(t["entry_at"]), entry_price=t["entry_price"],
        exit_at=_aware(t["exit_at"]), exit_price=t["exit_price"], exit_reason=t["exit_reason"],
        net_pnl=t["gross_pnl"] - t["commission"]) for t in backtest.trades_of(account=run.account)
        if t["exit_at"] is not None]


# The fields two runs over the same bars must agree on (the engines' parity, trading/tests/engine/test_parity.py).
RECOMMENDATION_FIELDS = ("bar_timestamp", "side", "probability", "payoff_ratio", "confidence", "agreement",
                         "reference_price", "atr", "stop_distance", "take_profit_distance", "horizon_bars", "kelly",
                         "kelly_contracts", "risk", "risk_decision", "contracts", "reasons", "state", "expires_after",
                         "executed_at")
ORDER_FIELDS = ("kind", "side", "quantity", "status", "after_bar_timestamp", "take_profit", "stop_loss",
                "horizon_bars", "bars_held", "last_bar_timestamp", "closed")
FILL_FIELDS = ("side", "quantity", "price", "commission", "timestamp")
EQUITY_FIELDS = ("timestamp", "equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown")
POSITION_FIELDS = ("quantity", "average_price", "realized_pnl", "commissions", "fills", "cost_basis", "mark_price",
                   "unrealized_pnl")
ACCOUNT_FIELDS = ("peak_equity", "trading_state", "circuit_breaker_reason")
AUDIT_FIELDS = ("action", "state_before", "state_after")


def run_records(run) -> dict[str, list[tuple]]:
    """A run's records in a comparable order, without ids: recommendations, orders, fills, equity snapshots, the
    position, the account's breaker and the audit trail."""
    from .models import Account, AuditEvent, EquitySnapshot, Fill, Order, Position, Recommendation

    account = run.account
    recommendations = list(Recommendation.objects.filter(account=account).order_by("bar_timestamp"))
    ids = {r.pk: i for i, r in enumerate(recommendations)}
    orders = Order.objects.filter(account=account).order_by("recommendation__bar_timestamp", "parent_id", "id")
    return {
        "recommendations": [tuple(getattr(r, f) for f in RECOMMENDATION_FIELDS) for r in recommendations],
        "orders": [(ids[o.recommendation_id], *(getattr(o, f) for f in ORDER_FIELDS)) for o in orders],
        "fills": [(ids[f.order.recommendation_id], f.order.kind, *(getattr(f, n) for n in FILL_FIELDS))
                  for f in Fill.objects.filter(account=account).select_related("order").order_by("timestamp", "id")],
        "equity": list(EquitySnapshot.objects.filter(account=account).order_by("timestamp")
                       .values_list(*EQUITY_FIELDS)),
        "position": list(Position.objects.filter(account=account).values_list(*POSITION_FIELDS)),
        "account": list(Account.objects.filter(pk=account.pk).values_list(*ACCOUNT_FIELDS)),
        "audit": sorted(AuditEvent.objects.filter(account=account).values_list(*AUDIT_FIELDS)),
    }


def records_differences(a: dict, b: dict) -> list[str]:
    """Every row that differs between two runs' records (and every kind whose counts differ)."""
    found = []
    for name in a:
        left, right = a[name], b[name]
        if len(left) != len(right):
            found.append(f"{name}: {len(left)} rows against {len(right)}")
        found.extend(f"{name}[{i}]: {x!r} != {y!r}" for i, (x, y) in enumerate(zip(left, right)) if x != y)
    return found


class _PeakRss:
    """The process's resident set size sampled in a thread while the block runs: its peak and growth, in MB.
    (tracemalloc would see only Python's allocator and slow every allocation down by about half.)"""

    EVERY = 0.01

    def __enter__(self):
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self):
        while not self._stop.wait(self.EVERY):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.peak_mb = round(self.peak / 1e6, 1)
        self.growth_mb = round((self.peak - self.start) / 1e6, 1)
        return False


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


def bench_backtest_live(*, backtests: int = 5, bars: int = 2_000, history: int = 3_000, pace: float = 0.05,
                        alone: int = 20, preset: str = "fast", seed: int = 7, keep: bool = False) -> dict:
    """A live feed storing and deciding bars while `backtests` memory backtests of `bars` bars run at once in threads
    of this process, as the page starts them in embedded mode (`backtest.backtest_request`).

    The live loop stores a bar every `pace` seconds through `services.feed_publish_bar`, the feed's own call, with
    the workflow inline (eager Celery, as in embedded mode): each step is the bar's store, settlement and decision
    on a model trained on `history` bars and promoted. `alone` steps run first without backtests (the baseline).
    Reports each step's duration, the longest gap between two steps' ends, the live thread's longest SQL statement
    (a wait for the database's write lock shows there), every live bar's workflow error and each backtest's end.
    Scratch market, account, version and runs; all deleted afterwards unless `keep`.
    """
    import threading

    import numpy as np
    from celery import current_app

    from mlcore import services as ml_services
    from mlcore.models import ModelVersion

    from . import backtest
    from .domain.bars import BarData
    from .domain.synthetic import DEMO_SIGNAL, SyntheticParams
    from .models import Account, BacktestRun, BarWorkflow, FeedStatus

    if backtests < 1 or bars < 1 or history < 1 or alone < 1 or not pace >= 0:
        raise ValueError("backtests, bars, history and alone must be positive and pace >= 0")
    symbol = f"BTL{os.getpid()}"[:20]
    supply = 20_000  # live bars at hand: more than the loop stores while the backtests run
    stamps = session_timestamps(datetime(2023, 1, 2, 23, 0, tzinfo=timezone.utc), history + bars + supply,
                                timeframe="1m")
    frame = generate_bars(stamps, seed=seed, start_price=18_000.0, tick_size=0.25,
                          params=SyntheticParams(**DEMO_SIGNAL))
    instrument = Instrument.objects.create(symbol=symbol, name="live beside backtests", tick_size="0.25",
                                           point_value="20")
    account = Account.objects.create(name=f"bench-{symbol}")
    eager = current_app.conf.task_always_eager
    runs = []
    try:
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[:history])
        version = ml_services.model_version_train(symbol=symbol, timeframe="1m", preset=preset, seed=0, promote=True)
        services.bars_ingest(instrument=instrument, timeframe="1m", frame=frame.iloc[history:history + bars])
        live = [BarData(row.timestamp.to_pydatetime(), row.open, row.high, row.low, row.close, row.volume)
                for row in frame.iloc[history + bars:].itertuples()]
        services.trading_config_get(account=account, instrument=instrument)
        services.feed_status_start(instrument=instrument, timeframe="1m", source="bench", pace_seconds=pace)
        current_app.conf.task_always_eager = True  # the workflow inline, as embedded mode runs it

        statements = _Statements()
        steps: list[tuple[float, float]] = []  # (start, end) of each live step, perf_counter seconds
        raised: list[str] = []

        def step(bar: BarData) -> None:
            started = time.perf_counter()
            try:
                with connection.execute_wrapper(statements):
                    services.feed_publish_bar(instrument=instrument, timeframe="1m", bar=bar, already_stored=False,
                                              simulated=True)
            except Exception as exc:  # a live step that fails is counted, and the loop goes on as the feed's does
                raised.append(f"{bar.timestamp}: {type(exc).__name__}: {exc}")
            steps.append((started, time.perf_counter()))

        feed = iter(live)
        for _ in range(alone):
            step(next(feed))
            time.sleep(pace)
        baseline = len(steps)
        statements.reset()

        start, end = frame.timestamp.iloc[history].to_pydatetime(), frame.timestamp.iloc[history + bars - 1]
        for _ in range(backtests):
            runs.append(backtest.backtest_create(symbol=symbol, timeframe="1m", start=start, end=end.to_pydatetime(),
                                                 version_id=version.pk, account_name=account.name, via="bench",
                                                 engine=backtest.ENGINE_MEMORY))
        threads = [threading.Thread(target=_backtest_thread, args=(run.pk,), name=f"backtest-{run.pk}", daemon=True)
                   for run in runs]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for bar in feed:
            if not any(thread.is_alive() for thread in threads):
                break
            step(bar)
            time.sleep(pace)
        for thread in threads:
            thread.join()
        backtests_seconds = time.perf_counter() - began
        current_app.conf.task_always_eager = eager

        workflows = list(BarWorkflow.objects.filter(instrument=instrument).order_by("timestamp")
                         .values_list("timestamp", "stage", "error"))
        undecided = [f"{t:%Y-%m-%d %H:%M} {stage} {error}".strip() for t, stage, error in workflows
                     if stage != BarWorkflow.Stage.DONE or error]
        durations = np.array([e - s for s, e in steps])
        ends = np.array([e for _, e in steps])
        beside = durations[baseline:]
        # From the backtests' start to the first live step's end, then between two steps' ends (pace included).
        gaps = np.diff(np.concatenate([[began], ends[baseline:]]))
        finished = {r.pk: r for r in BacktestRun.objects.filter(pk__in=[r.pk for r in runs])}

        def figures(values):
            if not len(values):
                return {"steps": 0}
            return {"steps": len(values), "p50_s": round(float(np.percentile(values, 50)), 4),
                    "p99_s": round(float(np.percentile(values, 99)), 4), "max_s": round(float(values.max()), 4)}

        return {
            "bench": "backtest-live",
            "database": connection.vendor,
            "backtests": backtests,
            "backtest_bars": bars,
            "pace_s": pace,
            "live_alone": figures(durations[:baseline]),
            "live_beside_backtests": {
                **figures(beside),
                "longest_gap_s": round(float(gaps.max()), 4),
                "longest_sql_s": round(statements.longest, 4),
                "longest_sql": statements.longest_sql,
            },
            "live_steps_failed": len(raised) + len(undecided),
            "live_failures_sample": (raised + undecided)[:20],
            "live_bars_stored": len(workflows),
            "live_bars_decided": sum(1 for _, stage, error in workflows
                                     if stage == BarWorkflow.Stage.DONE and not error),
            "backtests_seconds": round(backtests_seconds, 2),
            "backtests_done": sum(1 for r in finished.values() if r.status == BacktestRun.Status.DONE),
            "backtest_errors": [r.error for r in finished.values() if r.error],
        }
    finally:
        current_app.conf.task_always_eager = eager
        if not keep:
            for run in runs:
                BacktestRun.objects.filter(pk=run.pk, status__in=(BacktestRun.Status.QUEUED,
                                                                  BacktestRun.Status.RUNNING)).update(
                    status=BacktestRun.Status.FAILED)
                backtest.backtest_delete(run_id=run.pk)
            from .models import AuditEvent, Recommendation

            # The live decisions: every account's recommendations on the scratch market (a fresh database's
            # default account is sized too), their orders and audit lines, then the market's own rows.
            AuditEvent.objects.filter(recommendation__instrument=instrument).delete()
            Recommendation.objects.filter(instrument=instrument).delete()
            for version in ModelVersion.objects.filter(instrument=instrument):
                _version_delete(version)
            BarWorkflow.objects.filter(instrument=instrument).delete()
            FeedStatus.objects.filter(instrument=instrument).delete()
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Bar._meta.db_table} WHERE instrument_id = %s", [instrument.pk])
            account.delete()
            instrument.delete()


def _backtest_thread(run_id: int) -> None:
    """One backtest in a thread of its own, as `backtest.backtest_request` runs it in embedded mode."""
    from . import backtest

    try:
        backtest.backtest_execute(run_id=run_id)
    except Exception:
        pass  # recorded on the run (status failed, the error) by backtest_execute, and reported from there
    finally:
        connection.close()


class _Statements:
    """An execute wrapper timing each SQL statement of one connection: the longest, and its text."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.longest, self.longest_sql = 0.0, ""

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - started
            if took > self.longest:
                self.longest, self.longest_sql = took, sql[:200]
