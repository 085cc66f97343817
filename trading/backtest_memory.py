"""The memory shell: a backtest run by the per-bar engine (`domain.engine`) over state kept in memory.

The bars of the window are read once, every prediction is made in one batch (bit-identical to the live one-bar
prediction: `LoadedModel.predict_frame`), then each bar is settled and decided by the same engine the live services
call, and the run's records (bars, predictions, recommendations with their Kelly and risk, orders, fills, the
position, equity snapshots, audit events) are written once at the end, in short transactions, so a backtest never
holds the database's write lock for long beside the live loop. The reference is the database replay through the live
services (`--engine db`, `trading.backtest`); the parity test runs both and compares every record.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from mlcore import services as ml_services
from mlcore.facts import PredictionFacts
from mlcore.models import ModelVersion, Prediction

from . import bulk
from .domain import engine
from .domain.broker import BarPrices
from .domain.sides import Side
from .domain.timeframes import timeframe_delta
from .models import (
    Account,
    AuditEvent,
    BacktestRun,
    Bar,
    EquitySnapshot,
    Fill,
    Instrument,
    Order,
    Position,
    Recommendation,
)

logger = logging.getLogger(__name__)

WRITE_CHUNK = 20_000  # rows a COPY on PostgreSQL (its readers never wait on a writer)
SQLITE_WRITE_CHUNK = 500  # on SQLite: a few milliseconds of the single write lock
SQLITE_PAUSE = 0.12  # seconds between two SQLite chunks (longer than SQLite's longest retry): a live step gets in
PROGRESS_EVERY = 5000  # bars between two progress writes (and cancellation checks)


class BacktestCancelled(RuntimeError):
    """The run was no longer running when the engine looked (stopped from the page, the API or the admin)."""


@dataclass
class _Records:
    """What the run produced, in memory until the end: one entry per record to write."""

    recommendations: list = field(default_factory=list)  # (bar index, facts, engine.Recommendation)
    states: dict = field(default_factory=dict)  # recommendation index -> (state, extra reasons, executed_at)
    entries: dict = field(default_factory=dict)  # recommendation index -> engine.Entry (its final form)
    fills: list = field(default_factory=list)  # engine.Filled
    snapshots: list = field(default_factory=list)  # engine.Snapshot
    audits: list = field(default_factory=list)  # (action, recommendation index or None, before, after, details)
    approved: dict = field(default_factory=dict)  # recommendation index -> contracts approved
    position: engine.Position | None = None


def replay_in_memory(run: BacktestRun, market: Instrument, account: Account, *,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the window through the engine and write its records; returns where the time went (seconds by phase)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    version = ModelVersion.objects.get(pk=run.model_version_id)
    needed = version.feature_window + version.sequence_length - 1
    rows, first = _bars(run, needed)
    timings["read_bars"] = time.perf_counter() - started

    mark = time.perf_counter()
    frame = _frame(rows)
    results = ml_services.predictions_for_frame(version_id=version.pk, frame=frame, first=first)
    timings["predict"] = time.perf_counter() - mark

    with _heap_frozen():
        mark = time.perf_counter()
        records, state = _run_engine(run, market, account, version, rows, first, results, progress)
        timings["engine"] = time.perf_counter() - mark

        mark = time.perf_counter()
        _write(run, market, account, version, rows, first, results, records, state)
        timings["write"] = time.perf_counter() - mark

    # The predictions' outcomes are not resolved: they are monitoring's record, never an input of a decision, and
    # monitoring never counts a backtest's predictions; resolving them cost ~4 ms a prediction, more than the rest of
    # the run together (the database replay still resolves them, in batches).
    return timings


@contextmanager
def _heap_frozen():
    """The objects alive now (the ML libraries' hold millions) left out of the garbage collector's passes while the
    engine and the writer allocate: each full pass their allocations set off re-scanned them all, about a third of
    the engine's time (profiled). Process-wide and harmless to other threads: frozen objects are only not scanned
    for cycles until the run ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _bars(run: BacktestRun, needed: int) -> tuple[list[tuple], int]:
    """The real market's bars: `needed` before the window (the first prediction's history) and the window's, oldest
    first, read once; and the index of the window's first bar."""
    columns = ("timestamp", "open", "high", "low", "close", "volume")
    source = Bar.objects.filter(instrument=run.instrument, timeframe=run.timeframe)
    warmup = list(source.filter(timestamp__lt=run.start).order_by("-timestamp").values_list(*columns)[:needed])[::-1]
    window = list(source.filter(timestamp__gte=run.start, timestamp__lte=run.end).order_by("timestamp")
                  .values_list(*columns))
    return warmup + window, len(warmup)


def _frame(rows: list[tuple]):
    """The bars as ML reads them (`selectors.bars_frame`'s shape and conversion)."""
    import pandas as pd

    columns = ["timestamp", "open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns[1:]:
        frame[column] = frame[column].astype("float64")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def _facts(version: ModelVersion, run: BacktestRun, timestamp: datetime, result: dict) -> PredictionFacts:
    """The facts the live decision reads of a stored prediction (`mlcore.selectors.prediction_facts`), with the
    run's held model health (as the database replay holds it)."""
    label = version.label_settings
    side = result["side"]
    return PredictionFacts(
        prediction_id=0, version_id=version.pk, bar_id=0, instrument_id=0, timeframe=run.timeframe,
        bar_timestamp=timestamp, p_long=result["p_long"], p_short=result["p_short"], side=side,
        confidence=result["confidence"], agreement=result["agreement"], members=len(result["members"][side] or {}),
        latency_ms=result["latency_ms"], atr=result["atr"], atr_reference=result["atr_reference"],
        payoff_ratio=version.payoff_ratio, take_profit_atr=float(label["tp_atr"]),
        stop_loss_atr=float(label["sl_atr"]), horizon_bars=int(label["horizon"]),
        model_health=run.config["model_health"], version_has_edge=bool(version.has_edge),
        health_reason=run.config.get("model_health_reason", "") or "", created=True)


def _state(run: BacktestRun, market: Instrument, account: Account) -> tuple[engine.State, engine.Config]:
    config = engine.Config.of(run.config, breaker_resets_daily=run.config.get("breaker") == "daily")
    state = engine.State(
        market=engine.Market(instrument_id=market.pk, symbol=market.symbol, timeframe=run.timeframe,
                             tick_size=market.tick_size, point_value=market.point_value),
        account=engine.AccountFigures(starting_equity=account.starting_equity,
                                      peak_equity=Decimal(run.config.get("peak_equity",
                                                                         run.config["starting_equity"])),
                                      auto_trading=account.auto_trading))
    return state, config


def _run_engine(run, market, account, version, rows, first, results, progress):
    state, config = _state(run, market, account)
    records = _Records()
    step = timeframe_delta(run.timeframe)
    total = len(rows) - first
    for done, index in enumerate(range(first, len(rows)), start=1):
        timestamp, o, h, low, c, _ = rows[index]
        bar = BarPrices(timestamp=timestamp, open=o, high=h, low=low, close=c)
        state, events = engine.settle(state, bar, config)
        _record_settle(records, events, run.pk)
        result = results[index - first]
        if result is not None:
            key = len(records.recommendations)
            facts = _facts(version, run, timestamp, result)
            close = timestamp + step
            clock = engine.Clock(market_now=close, wall_now=close, bar_close=c, latest_bar_timestamp=timestamp)
            state, recommendation, events = engine.decide(state, facts, config, clock, key=key)
            records.recommendations.append((index, facts, recommendation))
            records.states[key] = [recommendation.state, [], None]
            _record_decide(records, events, key, recommendation)
        if done % PROGRESS_EVERY == 0:
            _progress(run, done)
            if progress is not None:
                progress(done, total)
    records.position = state.position
    for key, entry in state.entries.items():
        records.entries[key] = entry  # still working or open at the end
    return records, state


def _progress(run: BacktestRun, done: int) -> None:
    if not BacktestRun.objects.filter(pk=run.pk, status=BacktestRun.Status.RUNNING).update(
            bars_done=done, progress_at=timezone.now()):
        raise BacktestCancelled(f"backtest #{run.pk} was stopped after {done} bars; nothing of it was written")


def _record_settle(records: _Records, events: list, run_id: int) -> None:
    for event in events:
        kind = type(event)
        if kind is engine.Snapshot:
            records.snapshots.append(event)
        elif kind is engine.Filled:
            records.fills.append(event)
            if not event.exit_reason:
                records.states[event.recommendation][0] = engine.EXECUTED
                records.states[event.recommendation][2] = event.timestamp
        elif kind is engine.EntryCancelled:
            records.states[event.recommendation][0] = engine.EXPIRED
            records.states[event.recommendation][1].append(event.reason)
        elif kind is engine.RecommendationsExpired:
            for key in event.recommendations:
                records.states[key][0] = engine.EXPIRED
        elif kind is engine.BreakerTripped:
            records.audits.append((AuditEvent.Action.CIRCUIT_BREAKER_TRIP, None, event.state_before, "HALTED",
                                   {"reason": event.reason}))
        elif kind is engine.BreakerReset:
            records.audits.append((AuditEvent.Action.CIRCUIT_BREAKER_RESET, None, event.state_before, "ACTIVE",
                                   {"reason": breaker_reset_reason(run_id, event.day, event.reason)}))


def _record_decide(records: _Records, events: list, key: int, recommendation: engine.Recommendation) -> None:
    for event in events:
        if isinstance(event, engine.Approved):
            records.entries[key] = event.entry
            records.approved[key] = event.contracts
            records.audits.append((AuditEvent.Action.AUTO_APPROVE, key, engine.PENDING, engine.APPROVED,
                                   {"contracts": event.contracts, "risk": event.risk_decision}))
        elif isinstance(event, engine.BreakerTripped):
            records.audits.append((AuditEvent.Action.CIRCUIT_BREAKER_TRIP, None, event.state_before, "HALTED",
                                   {"reason": event.reason}))


def outcomes_through_end(market: Instrument, timeframe: str) -> None:
    """Resolve every outcome the replayed bars decide (a call resolves at most a batch)."""
    from mlcore import services as ml_services

    from . import selectors

    latest = selectors.bar_latest(instrument=market, timeframe=timeframe)
    while latest is not None:
        result = ml_services.prediction_outcomes_resolve(instrument_id=market.pk, timeframe=timeframe,
                                                         through=latest.timestamp)
        if not (result.resolved or result.unresolvable):
            return


def breaker_reset_reason(run_id: int, day: datetime, reason: str) -> str:
    """The audit line of the "daily" breaker policy's reset (both engines write it)."""
    return f"backtest #{run_id}'s daily breaker policy, at the trading day of {day:%Y-%m-%d %H:%M} UTC (tripped: {reason})"


_sqlite_writers = threading.Lock()


def _chunks(objects: list, model) -> list:
    """bulk_create in short transactions; the objects get their ids.

    SQLite has one writer and its busy wait is not first come, first served: there a chunk is small, backtests write
    one at a time (a lock in the process: embedded mode runs them as threads of the web process), and each chunk is
    followed by a pause in which the live loop's step gets the write lock (~0.1 s a 500 rows: a 100,000-bar run
    spends about a minute in them on SQLite; PostgreSQL needs none)."""
    sqlite = connection.vendor == "sqlite"
    size = SQLITE_WRITE_CHUNK if sqlite else WRITE_CHUNK
    for start in range(0, len(objects), size):
        part = objects[start:start + size]
        if sqlite:
            with _sqlite_writers:
                with transaction.atomic():
                    model.objects.bulk_create(part)
                # Still holding the process's writer lock, so no other backtest takes the gap: SQLite's busy wait
                # retries every 25-100 ms once it has waited a while, and a shorter gap would let it miss every one.
                time.sleep(SQLITE_PAUSE)
        else:
            with transaction.atomic():
                bulk.copy_create(part, model)
    return objects


def _write(run, market, account, version, rows, first, results, records: _Records, state: engine.State) -> None:
    """Every record of the run, as the database replay would have left it (the parity test compares them)."""
    now = timezone.now()
    bars = _chunks([Bar(instrument=market, timeframe=run.timeframe, timestamp=t, open=o, high=h, low=low, close=c,
                        volume=v) for t, o, h, low, c, v in rows[first:]], Bar)
    bar_ids = {bar.timestamp: bar.pk for bar in bars}
    predictions = _chunks([
        Prediction(bar_id=bars[index - first].pk, version_id=version.pk, backtest=True,
                   **ml_services._prediction_fields(results[index - first], instrument_id=market.pk))
        for index, _, _ in records.recommendations], Prediction)
    recommendations = []
    for key, ((index, facts, made), prediction) in enumerate(zip(records.recommendations, predictions)):
        final, extra, executed_at = records.states[key]
        recommendations.append(Recommendation(
            account=account, instrument=market, timeframe=run.timeframe, prediction_id=prediction.pk,
            model_version_id=version.pk, bar_id=bars[index - first].pk, bar_timestamp=facts.bar_timestamp,
            side=made.side, probability=facts.probability, payoff_ratio=facts.payoff_ratio,
            confidence=facts.confidence, agreement=facts.agreement, reference_price=made.reference_price,
            atr=made.atr, stop_distance=made.stop_distance, take_profit_distance=made.take_profit_distance,
            horizon_bars=made.horizon_bars, kelly=made.kelly, kelly_contracts=made.kelly_contracts, risk=made.risk,
            risk_decision=made.risk_decision, contracts=records.approved.get(key, made.contracts),
            reasons=[*made.reasons, *extra], state=final, expires_after=made.expires_after,
            decided_at=now if key in records.approved else None, executed_at=executed_at))
    _chunks(recommendations, Recommendation)
    entries = {}
    for key in sorted(records.entries):
        entry, recommendation = records.entries[key], recommendations[key]
        entries[key] = Order(
            account=account, instrument=market, timeframe=run.timeframe, recommendation_id=recommendation.pk,
            kind=Order.Kind.ENTRY, side=Side(entry.side).order_side, quantity=entry.quantity, status=entry.status,
            idempotency_key=f"recommendation-{recommendation.pk}-entry", after_bar_timestamp=entry.after_bar_timestamp,
            take_profit=entry.take_profit, stop_loss=entry.stop_loss, horizon_bars=entry.horizon_bars,
            bars_held=entry.bars_held, last_bar_timestamp=entry.last_bar_timestamp, closed=entry.closed)
    _chunks(list(entries.values()), Order)
    exits, fills = [], []
    for event in records.fills:
        entry = entries[event.entry]
        order = entry
        if event.exit_reason:
            order = Order(account=account, instrument=market, timeframe=run.timeframe,
                          recommendation_id=entry.recommendation_id, parent=entry, kind=event.exit_reason,
                          side=event.order_side, quantity=event.quantity, status=Order.Status.FILLED,
                          idempotency_key=f"order-{entry.pk}-exit", after_bar_timestamp=event.timestamp,
                          take_profit=event.take_profit, stop_loss=event.stop_loss)
            exits.append(order)
        fills.append((order, event))
    _chunks(exits, Order)
    _chunks([Fill(order=order, account=account, instrument=market, side=event.order_side, quantity=event.quantity,
                  price=event.price, commission=event.commission, bar_id=bar_ids[event.timestamp],
                  timestamp=event.timestamp) for order, event in fills], Fill)
    _chunks([EquitySnapshot(account=account, timestamp=s.at, equity=s.equity, realized_pnl=s.realized_pnl,
                            unrealized_pnl=s.unrealized_pnl, peak_equity=s.peak_equity, drawdown=s.drawdown)
             for s in records.snapshots], EquitySnapshot)
    audits = []
    for action, key, before, after, details in records.audits:
        recommendation = recommendations[key] if key is not None else None
        if action == AuditEvent.Action.AUTO_APPROVE:
            details = {"contracts": details["contracts"], "order": entries[key].pk, "risk": details["risk"]}
        audits.append(AuditEvent(action=action, account=account, recommendation=recommendation,
                                 state_before=before, state_after=after, details=details))
    _chunks(audits, AuditEvent)
    with transaction.atomic():
        position = records.position
        if position is not None:
            held = position.ledger
            Position.objects.create(account=account, instrument=market, quantity=held.quantity,
                                    average_price=held.average_price, realized_pnl=held.realized_pnl,
                                    commissions=held.commissions, fills=held.fills, cost_basis=held.cost_basis,
                                    mark_price=position.mark_price, unrealized_pnl=position.unrealized_pnl)
        figures = state.account
        Account.objects.filter(pk=account.pk).update(
            peak_equity=figures.peak_equity, trading_state=figures.trading_state,
            circuit_breaker_tripped_at=now if figures.breaker_tripped else None,
            circuit_breaker_reason=figures.breaker_reason)

