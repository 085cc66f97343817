"""Backtests through the live code: stored history replayed bar by bar through the per-bar workflow.

A run copies the real market's bars, one at a time and in order, into a private market of its own (an Instrument
marked `backtest`) and drives each one through `workflow.replay_bar`: the same settlement (paper broker fills,
brackets, marks, equity snapshots, the circuit breaker), the same prediction (features and the named model
version), the same Kelly sizing and risk checks, the same approval, on a simulated clock equal to the bar's close.
Nothing here re-implements a rule: the live code sees exactly what it would have seen live, because the private
market holds exactly the bars a live feed would have stored by then. The run's own account trades only that
market, so the live accounts are never touched, and its predictions are marked so monitoring never counts them.

Approval is a parameter: "approve" (the run's account auto-approves what risk approves, through the live
auto-approval) or "record" (nothing is approved; every recommendation is kept, and expires).

A version trained on bars inside the window knows the answer: it is refused, unless the run is asked to go ahead
anyway (`allow_lookahead`), and then the report says so on every page.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from minhos_site.api_fields import control_character_problem
from mlcore.models import ModelVersion

from . import selectors, workflow
from .backtest_memory import breaker_reset_reason, outcomes_through_end, replay_in_memory
from .domain import performance
from .domain.calendar import trading_day_start
from .domain.timeframes import timeframe_delta
from .models import (
    Account,
    AuditEvent,
    BacktestRun,
    Bar,
    BarWorkflow,
    EquitySnapshot,
    Fill,
    Instrument,
    Order,
    Recommendation,
    TradingConfig,
)
from .services import account_default_get, trading_config_get

logger = logging.getLogger(__name__)

CONFIG_FIELDS = ("kelly_fraction", "min_confidence", "max_contracts", "max_position_contracts", "max_total_contracts",
                 "daily_loss_limit", "max_drawdown", "max_trades_per_day", "stale_after_seconds", "health_floor",
                 "health_full_size_floor", "recommendation_ttl_bars", "slippage_ticks", "commission_per_contract")
BREAKER_HOLD, BREAKER_DAILY = "hold", "daily"  # a tripped breaker stays tripped (as live), or resets next day
# The engine in memory (the default: bars read once, predictions batched, records written at the end), or the replay
# through the live services bar by bar (the reference the parity test holds the memory engine to).
ENGINE_MEMORY, ENGINE_DB = "memory", "db"
ENGINES = (ENGINE_MEMORY, ENGINE_DB)
PROGRESS_EVERY = 100  # bars of a page (one transaction, then a progress write) on PostgreSQL
SQLITE_PAGE = 10
ABANDONED_AFTER = timedelta(minutes=10)  # a page of bars takes seconds; this long without one, the run is dead
CHART_POINTS = 5000  # points of each chart series stored with the report
OUTCOMES_EVERY = 250  # bars between two resolutions of the predictions' outcomes (a batch is at most 500)
TRADING_DAYS_PER_YEAR = 252
SESSION_HOURS = 23  # CME Globex: 23 hours a day, five days a week


class BacktestRefused(ValueError):
    """A backtest that cannot run as asked; the message says what is wrong."""


def backtest_create(*, symbol: str, timeframe: str, start: datetime, end: datetime, version_id: int | None = None,
                    approval: str = BacktestRun.Approval.APPROVE, account_name: str | None = None,
                    allow_lookahead: bool = False, requested_by=None, via: str = "command",
                    equity_from_account: bool = False, breaker: str = BREAKER_HOLD,
                    engine: str = ENGINE_MEMORY) -> BacktestRun:
    """Check a backtest's request and record it as queued (`backtest_execute` runs it).

    The run copies the account's trading configuration and starting equity; with `equity_from_account` (a
    comparison with the account's live record) it starts from the account's equity and peak at the window's start
    instead, so Kelly sizes from the same money."""
    try:
        instrument = selectors.instrument_get(symbol=symbol)
    except selectors.BacktestMarket:
        raise BacktestRefused(f"{symbol} is a backtest's own market; backtest the real market it copies") from None
    except selectors.UnknownInstrument as exc:
        raise BacktestRefused(str(exc)) from None
    try:
        step = timeframe_delta(timeframe)
    except ValueError as exc:
        raise BacktestRefused(str(exc)) from None
    for name, moment in (("from", start), ("to", end)):
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise BacktestRefused(f"'{name}' must be a date and time with a time zone, got {moment!r}")
    # Every message below says UTC; a window typed with another offset is the same moments.
    start, end = start.astimezone(dt_timezone.utc), end.astimezone(dt_timezone.utc)
    if end < start:
        raise BacktestRefused(f"'to' ({end:%Y-%m-%d %H:%M} UTC) is before 'from' ({start:%Y-%m-%d %H:%M} UTC)")
    if breaker not in (BREAKER_HOLD, BREAKER_DAILY):
        raise BacktestRefused(f"unknown breaker policy {breaker!r}; use {BREAKER_HOLD} or {BREAKER_DAILY}")
    if engine not in ENGINES:
        raise BacktestRefused(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    if approval not in BacktestRun.Approval.values:
        raise BacktestRefused(f"unknown approval {approval!r}; use one of {', '.join(BacktestRun.Approval.values)}")
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe, timestamp__gte=start, timestamp__lte=end)
    total = bars.count()
    if not total:
        raise BacktestRefused(f"no stored {symbol} {timeframe} bars between {start:%Y-%m-%d %H:%M} and "
                              f"{end:%Y-%m-%d %H:%M} UTC")
    version = _version(instrument, timeframe, version_id)
    lookahead = version.data_end is not None and version.data_end >= start
    if lookahead and not allow_lookahead:
        raise BacktestRefused(
            f"model version {version.pk} was trained on bars up to {version.data_end:%Y-%m-%d %H:%M} UTC, inside or "
            f"after the window (from {start:%Y-%m-%d %H:%M} UTC): its results there would be look-ahead, not "
            f"out-of-sample. Start the backtest after {version.data_end + step:%Y-%m-%d %H:%M} UTC, name an older "
            f"version, train one on the bars before the window (manage.py train --symbol {symbol} --timeframe "
            f"{timeframe} --until {start - step:%Y-%m-%dT%H:%MZ}), or allow look-ahead (the report is then flagged "
            "on every page)")
    if account_name:
        source = Account.objects.filter(name=account_name, backtest=False).first()
        if source is None:
            raise BacktestRefused(f"there is no account named {account_name!r}")
    else:
        source = account_default_get()
    config = trading_config_get(account=source, instrument=instrument)
    equity, peak = source.starting_equity, source.starting_equity
    if equity_from_account:
        before = EquitySnapshot.objects.filter(account=source, timestamp__lte=start).order_by("-timestamp").first()
        if before is not None:
            equity, peak = before.equity, before.peak_equity
    return BacktestRun.objects.create(
        instrument=instrument, timeframe=timeframe, start=start, end=end, model_version=version, approval=approval,
        lookahead=lookahead, source_account=source, bars_total=total, requested_by=requested_by, via=via,
        config={**{name: _plain(getattr(config, name)) for name in CONFIG_FIELDS},
                "starting_equity": str(equity), "peak_equity": str(peak), "account": source.name,
                "model_health": version.health_score, "model_health_reason": version.health_reason,
                "model_has_edge": version.has_edge, "breaker": breaker, "engine": engine})


def window_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A window bound as people type it (the command, the page): an ISO date or date-time, UTC when it names no
    zone. A bare date is its midnight, or with `end_of_day` (the window's end) the whole day. ValueError says why."""
    text = text.strip()
    problem = control_character_problem(text)
    if problem:  # Python's ISO parser reads "2026-03-02T14:30:00\x00Z" as a time
        raise ValueError(f"not an ISO date or date-time: {problem}")
    try:
        # parse_datetime reads a bare date as its midnight, so a date is recognised first.
        day = parse_date(text) if len(text) == 10 else None
        value = None if day else parse_datetime(text)
    except ValueError as exc:  # well formed, but no such date
        raise ValueError(f"not an ISO date or date-time: {text!r} ({exc})") from None
    if day is not None:
        midnight = datetime(day.year, day.month, day.day, tzinfo=dt_timezone.utc)
        return midnight + timedelta(days=1, microseconds=-1) if end_of_day else midnight
    if value is None:
        raise ValueError(f"not an ISO date or date-time: {text!r} (e.g. 2026-03-02 or 2026-03-02T14:30Z)")
    return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)


def _version(instrument: Instrument, timeframe: str, version_id: int | None) -> ModelVersion:
    if version_id is None:
        version = ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe,
                                              status=ModelVersion.Status.ACTIVE).first()
        if version is None:
            raise BacktestRefused(f"{instrument.symbol} {timeframe} has no active model version; name one")
        return version
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise BacktestRefused(f"there is no model version {version_id}")
    if version.instrument_id != instrument.pk or version.timeframe != timeframe:
        raise BacktestRefused(f"model version {version_id} predicts {version.instrument.symbol} {version.timeframe}, "
                              f"not {instrument.symbol} {timeframe}")
    return version


def _plain(value):
    return str(value) if isinstance(value, Decimal) else value


# --- running ----------------------------------------------------------------------------------------------------

def backtest_execute(*, run_id: int, progress: Callable[[int, int], None] | None = None,
                     bar_hook: Callable[[Bar], None] | None = None) -> BacktestRun:
    """Run a queued backtest to its end and store its report. A failure is recorded on the run (status failed, the
    error) and raised. `progress(done, total)` hears every PROGRESS_EVERY bars; `bar_hook(bar)` each copied bar
    before it is settled and decided."""
    now = timezone.now()
    claimed = BacktestRun.objects.filter(pk=run_id, status=BacktestRun.Status.QUEUED).update(
        status=BacktestRun.Status.RUNNING, started_at=now, progress_at=now, bars_done=0)
    run = BacktestRun.objects.select_related("instrument", "model_version").get(pk=run_id)
    if not claimed:
        raise BacktestRefused(f"backtest #{run_id} is {run.get_status_display().lower()}, not queued")
    try:
        run.market, run.account = _private_market(run)
        market = run.market
        started = time.perf_counter()
        engine = run.config.get("engine", ENGINE_DB)
        if engine == ENGINE_MEMORY and bar_hook is None:
            seconds = replay_in_memory(run, market, run.account, progress=progress)
        else:
            engine = ENGINE_DB  # a bar hook (tests) acts between bars: only the replay has them
            _replay(run, market, progress=progress, bar_hook=bar_hook)
            seconds = {"replay": time.perf_counter() - started}
        mark = time.perf_counter()
        report = backtest_report(run=BacktestRun.objects.get(pk=run_id))
        seconds["report"] = time.perf_counter() - mark
        # Where the time went, by phase (the benchmark's breakdown; the page shows the engine).
        report["engine"] = {"name": engine, "seconds": {k: round(v, 3) for k, v in seconds.items()},
                            "total_seconds": round(time.perf_counter() - started, 3)}
    except BaseException as exc:
        BacktestRun.objects.filter(pk=run_id).update(status=BacktestRun.Status.FAILED, finished_at=timezone.now(),
                                                     error=f"{type(exc).__name__}: {exc}"[:4000])
        logger.exception("backtest #%s failed", run_id)
        raise
    BacktestRun.objects.filter(pk=run_id).update(status=BacktestRun.Status.DONE, finished_at=timezone.now(),
                                                 report=report, bars_done=run.bars_total)
    return BacktestRun.objects.get(pk=run_id)


def _private_market(run: BacktestRun) -> tuple[Instrument, Account]:
    """The run's own market (the real one's contract terms, no bars yet) and account (the source account's
    equity and trading configuration, auto-approving under the "approve" policy)."""
    real = run.instrument
    with transaction.atomic():
        market = Instrument.objects.create(
            symbol=f"BT{run.pk}.{real.symbol}"[:20], name=f"Backtest #{run.pk} of {real.symbol}",
            exchange=real.exchange, tick_size=real.tick_size, point_value=real.point_value, currency=real.currency,
            active=False, backtest=True)
        account = Account.objects.create(
            name=f"backtest #{run.pk}", backtest=True, currency=real.currency,
            starting_equity=Decimal(run.config["starting_equity"]),
            auto_trading=run.approval == BacktestRun.Approval.APPROVE)
        Account.objects.filter(pk=account.pk).update(peak_equity=Decimal(run.config.get("peak_equity",
                                                                                      run.config["starting_equity"])))
        TradingConfig.objects.create(account=account, instrument=market,
                                     **{name: run.config[name] for name in CONFIG_FIELDS})
        BacktestRun.objects.filter(pk=run.pk).update(market=market, account=account)
        # The history the first prediction reads: bars before the window, stored without a workflow (never traded).
        needed = run.model_version.feature_window + run.model_version.sequence_length - 1
        warmup = list(Bar.objects.filter(instrument=real, timeframe=run.timeframe, timestamp__lt=run.start)
                      .order_by("-timestamp")[:needed])
        Bar.objects.bulk_create([_copy(bar, market) for bar in reversed(warmup)])
    return market, account


def _copy(bar: Bar, market: Instrument) -> Bar:
    return Bar(instrument=market, timeframe=bar.timeframe, timestamp=bar.timestamp, open=bar.open, high=bar.high,
               low=bar.low, close=bar.close, volume=bar.volume)


def _replay(run: BacktestRun, market: Instrument, *, progress, bar_hook) -> None:
    step = timeframe_delta(run.timeframe)
    done = 0
    daily_reset = run.config.get("breaker") == BREAKER_DAILY
    tripped_day = None
    held = {"version_id": run.model_version_id, "model_health": run.config["model_health"],
            "health_reason": run.config.get("model_health_reason", "")}
    for page in _source_pages(run):
        # One transaction a page of bars: each step's own transaction becomes a savepoint of it, and the run pays one
        # commit a page instead of one per statement. Nothing outside the run's private market and account is
        # written, and a failure fails the run, so a page is all or nothing. Its commits need not wait for the disk:
        # a backtest lost in a crash is run again.
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            for source in page:
                close = source.timestamp + step  # the simulated clock: the bar has just closed
                if daily_reset:
                    tripped_day = _breaker_daily(run, close, tripped_day)
                with transaction.atomic():  # stored with its workflow row, as a feed stores a live bar
                    bar = _copy(source, market)
                    bar.save()
                    BarWorkflow.objects.create(bar=bar, instrument=market, timeframe=run.timeframe,
                                               timestamp=bar.timestamp, stored_at=close, touched_at=close)
                if bar_hook is not None:
                    bar_hook(bar)
                done += 1
                workflow.replay_bar(bar.pk, replay=workflow.Replay(now=close, **held),
                                    outcomes=done % OUTCOMES_EVERY == 0)
        BacktestRun.objects.filter(pk=run.pk).update(bars_done=done, progress_at=timezone.now())
        if progress is not None:
            progress(done, run.bars_total)
    outcomes_through_end(market, run.timeframe)


def _page_size() -> int:
    # SQLite has one writer: a page's transaction holds the write lock, so in embedded mode a page is a few bars and
    # the live feed and workflow running beside a backtest wait a fraction of a second, not seconds.
    return PROGRESS_EVERY if connection.vendor == "postgresql" else SQLITE_PAGE


def _source_pages(run: BacktestRun):
    """The real market's bars of the window, oldest first, a page at a time."""
    after = None
    while True:
        bars = Bar.objects.filter(instrument=run.instrument, timeframe=run.timeframe, timestamp__gte=run.start,
                                  timestamp__lte=run.end)
        if after is not None:
            bars = bars.filter(timestamp__gt=after)
        page = list(bars.order_by("timestamp")[:_page_size()])
        if not page:
            return
        yield page
        after = page[-1].timestamp


def _breaker_daily(run: BacktestRun, close: datetime, tripped_day):
    """The "daily" breaker policy: a breaker the run's account tripped on a trading day is reset at the first bar of
    the next one, as a person at the desk would (audited as the run's policy). The default holds it to the end."""
    day = trading_day_start(close)
    if not Account.objects.filter(pk=run.account_id, circuit_breaker_tripped_at__isnull=False).exists():
        return None
    if tripped_day is None:
        return day
    if day <= tripped_day:
        return tripped_day
    from .models import TradingState

    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=run.account_id)
        reason = account.circuit_breaker_reason
        Account.objects.filter(pk=account.pk).update(circuit_breaker_tripped_at=None, circuit_breaker_reason="",
                                                     trading_state=TradingState.ACTIVE)
        AuditEvent.objects.create(action=AuditEvent.Action.CIRCUIT_BREAKER_RESET, account=account,
                                  state_before=account.trading_state, state_after=TradingState.ACTIVE,
                                  details={"reason": breaker_reset_reason(run.pk, day, reason)})
    return None


def backtests_abandoned_fail(*, now: datetime | None = None) -> int:
    """Fail every run still "running" that has committed no bar for ABANDONED_AFTER: the worker or the process
    running it died (a redelivered task finds it no longer queued and leaves it). Returns how many."""
    now = now or timezone.now()
    since = now - ABANDONED_AFTER
    stalled = list(BacktestRun.objects.filter(status=BacktestRun.Status.RUNNING, progress_at__lt=since)
                   .values_list("pk", "progress_at", "bars_done", "bars_total"))
    for pk, moved, done, total in stalled:
        failed = BacktestRun.objects.filter(pk=pk, status=BacktestRun.Status.RUNNING, progress_at=moved).update(
            status=BacktestRun.Status.FAILED, finished_at=now,
            error=(f"abandoned: no progress since {moved:%Y-%m-%d %H:%M:%S} UTC at {done} of {total} bars (the worker "
                   "or process running it stopped); start it again"))
        if failed:
            logger.error("backtest #%s abandoned at %s of %s bars", pk, done, total)
    return len(stalled)


def backtest_request(*, run: BacktestRun) -> None:
    """Start a recorded backtest from the page or the API: a task on the training queue in deployment mode, a
    background thread in embedded mode (no worker there, and a request must not wait for the whole replay)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        transaction.on_commit(lambda: threading.Thread(target=_run_in_thread, args=(run.pk,),
                                                       name=f"backtest-{run.pk}", daemon=True).start())
        return

    def queue():
        from celery import current_app

        try:
            current_app.send_task("trading.tasks.backtest_run", args=(run.pk,), queue="training")
        except Exception as exc:
            BacktestRun.objects.filter(pk=run.pk, status=BacktestRun.Status.QUEUED).update(
                status=BacktestRun.Status.FAILED, finished_at=timezone.now(),
                error=f"could not be queued: {type(exc).__name__}: {exc}")

    transaction.on_commit(queue)


def _run_in_thread(run_id: int) -> None:
    try:
        backtest_execute(run_id=run_id)
    except Exception:
        pass  # recorded on the run and logged by backtest_execute
    finally:
        connection.close()


def backtest_delete(*, run_id: int) -> None:
    """Remove a finished run with its private market and account and every record made on them (raw deletes in
    dependency order: the ORM's collector would walk every row of a long run). A running run is refused."""
    run = BacktestRun.objects.get(pk=run_id)
    if run.status in (BacktestRun.Status.QUEUED, BacktestRun.Status.RUNNING):
        raise BacktestRefused(f"backtest #{run_id} is {run.status}: delete it once it has finished")
    from mlcore.models import Prediction

    from .models import Position

    with transaction.atomic():
        if run.account_id:
            AuditEvent.objects.filter(account_id=run.account_id).delete()
            Fill.objects.filter(account_id=run.account_id)._raw_delete(Fill.objects.db)
            # Exits first: an exit order protects its entry.
            Order.objects.filter(account_id=run.account_id, parent__isnull=False)._raw_delete(Order.objects.db)
            Order.objects.filter(account_id=run.account_id)._raw_delete(Order.objects.db)
            for model in (Position, EquitySnapshot, Recommendation, TradingConfig):
                model.objects.filter(account_id=run.account_id)._raw_delete(model.objects.db)
        if run.market_id:
            Prediction.objects.filter(instrument_id=run.market_id)._raw_delete(Prediction.objects.db)
            BarWorkflow.objects.filter(instrument_id=run.market_id)._raw_delete(BarWorkflow.objects.db)
            Bar.objects.filter(instrument_id=run.market_id)._raw_delete(Bar.objects.db)
        account_id, market_id = run.account_id, run.market_id
        run.delete()
        Account.objects.filter(pk=account_id, backtest=True).delete()
        Instrument.objects.filter(pk=market_id, backtest=True).delete()


# --- the report -------------------------------------------------------------------------------------------------

def periods_per_year(timeframe: str) -> float:
    step = timeframe_delta(timeframe)
    if step >= timedelta(days=1):
        return TRADING_DAYS_PER_YEAR * timedelta(days=1) / step
    return TRADING_DAYS_PER_YEAR * timedelta(hours=SESSION_HOURS) / step


def trades_of(*, account: Account) -> list[dict]:
    """Every entry the account filled, with its exit (None while open) and the recommendation it came from."""
    instrument_terms = {}
    fills = {f.order_id: f for f in Fill.objects.filter(account=account)}
    entries = (Order.objects.filter(account=account, kind=Order.Kind.ENTRY, status=Order.Status.FILLED)
               .select_related("recommendation", "instrument").order_by("id"))
    exits = {}
    for order in Order.objects.filter(account=account, parent__isnull=False, status=Order.Status.FILLED):
        exits[order.parent_id] = order
    config = TradingConfig.objects.filter(account=account).first()
    slip_ticks = config.slippage_ticks if config else 0
    trades = []
    for entry in entries:
        terms = instrument_terms.setdefault(entry.instrument_id, (entry.instrument.tick_size,
                                                                  entry.instrument.point_value))
        tick, point_value = terms
        entry_fill = fills[entry.pk]
        exit_order = exits.get(entry.pk)
        exit_fill = fills.get(exit_order.pk) if exit_order else None
        recommendation = entry.recommendation
        side = recommendation.side if recommendation else ("long" if entry.side == "buy" else "short")
        sign = 1 if side == "long" else -1
        slip_money = slip_ticks * tick * point_value * entry.quantity
        trade = {
            "recommendation": recommendation.pk if recommendation else None,
            "side": side, "contracts": entry.quantity,
            "entry_at": entry_fill.timestamp, "entry_price": entry_fill.price,
            "exit_at": exit_fill.timestamp if exit_fill else None, "exit_price": exit_fill.price if exit_fill else None,
            "exit_reason": exit_order.kind if exit_order else None,
            "commission": entry_fill.commission + (exit_fill.commission if exit_fill else 0),
            # Every market fill (entry, stop, time exit) pays the slippage; a take-profit is a resting limit.
            "slippage": slip_money * (1 + (exit_fill is not None and exit_order.kind != Order.Kind.TAKE_PROFIT)),
            "probability": recommendation.probability if recommendation else None,
            "kelly_fraction": (recommendation.kelly or {}).get("adjusted_fraction") if recommendation else None,
        }
        trade["gross_pnl"] = ((exit_fill.price - entry_fill.price) * sign * entry.quantity * point_value
                              if exit_fill else None)
        trades.append(trade)
    return trades


def backtest_report(*, run: BacktestRun) -> dict:
    """Every figure of the run, from its own records: equity and drawdown against buy-and-hold, money, ratios,
    trades, risk blocks by reason, per-side figures and the calibration of the traded probabilities."""
    account = run.account
    equity_rows = list(EquitySnapshot.objects.filter(account=account).order_by("timestamp")
                       .values_list("timestamp", "equity"))
    bars = list(Bar.objects.filter(instrument=run.market, timeframe=run.timeframe, timestamp__gte=run.start,
                                   timestamp__lte=run.end).order_by("timestamp")
                .values_list("timestamp", "open", "close"))
    start_equity = Decimal(run.config["starting_equity"])
    point_value = run.instrument.point_value
    times = [t for t, _ in equity_rows]
    equity = [float(e) for _, e in equity_rows]
    buy_hold = [float(start_equity + (close - bars[0][1]) * point_value) for _, _, close in bars] if bars else []
    trades = trades_of(account=account)
    closed = [performance.TradeRecord(
        side=t["side"], contracts=t["contracts"], entry_at=t["entry_at"], exit_at=t["exit_at"],
        gross_pnl=t["gross_pnl"], commission=t["commission"], slippage=t["slippage"], probability=t["probability"],
        kelly_fraction=t["kelly_fraction"]) for t in trades if t["exit_at"] is not None]
    per_year = periods_per_year(run.timeframe)
    down = performance.drawdown(times, equity) if equity else None
    span_days = ((run.end - run.start) + timeframe_delta(run.timeframe)).total_seconds() / 86400
    trading_days = len({trading_day_start(t + timeframe_delta(run.timeframe)) for t, *_ in bars}) or 1
    in_position = _in_position(trades, [t for t, *_ in bars], timeframe_delta(run.timeframe))
    figures = performance.trade_figures(closed)
    blocks, states = _risk_blocks(run)
    return _json_ready({
        "lookahead": run.lookahead,
        "lookahead_warning": (f"LOOK-AHEAD: model version {run.model_version_id} was trained on bars up to "
                              f"{run.model_version.data_end:%Y-%m-%d %H:%M} UTC, inside this window; these "
                              "results are not out-of-sample.") if run.lookahead else "",
        "window": {"from": run.start, "to": run.end, "bars": len(bars), "calendar_days": span_days,
                   "trading_days": trading_days},
        "model_version": run.model_version_id, "approval": run.approval, "config": run.config,
        "starting_equity": start_equity,
        "ending_equity": Decimal(str(equity[-1])) if equity else start_equity,
        "equity": dict(zip(("t", "equity", "buy_hold", "drawdown"),
                           _chart_points(times, equity, buy_hold, _drawdown_series(equity)))),
        "buy_hold": {"net_pnl": Decimal(str(buy_hold[-1])) - start_equity if buy_hold else Decimal(0),
                     "contracts": 1},
        # sharpe, sortino, annualised_return, calmar: each null when the window cannot estimate it, beside <name>_na
        **performance.ratio_figures([float(start_equity), *equity], per_year, down.max_fraction if down else 0.0),
        "max_drawdown": {"fraction": down.max_fraction, "money": down.max_money, "peak_at": down.peak_at,
                         "trough_at": down.trough_at, "longest_seconds": down.longest.total_seconds(),
                         "longest_from": down.longest_from, "recovered": down.recovered} if down else None,
        **{key: figures[key] for key in ("trades", "wins", "losses", "hit_rate", "profit_factor", "expectancy",
                                         "net_pnl", "gross_pnl", "commissions", "slippage", "sizes")},
        "open_trades": sum(1 for t in trades if t["exit_at"] is None),
        "exposure": performance.exposure(in_position),
        "trades_per_day": performance.trades_per_day(closed, trading_days),
        "risk_blocks": blocks,
        "breaker_trips": AuditEvent.objects.filter(account=account,
                                                   action=AuditEvent.Action.CIRCUIT_BREAKER_TRIP).count(),
        "recommendations": states,
        "per_side": performance.per_side(closed),
        "calibration": performance.calibration_table(closed),
        "trade_list": trades,
        "periods_per_year": per_year,
    })


def _drawdown_series(equity: list[float]) -> list[float]:
    peak, series = float("-inf"), []
    for value in equity:
        peak = max(peak, value)
        series.append(1.0 - value / peak if peak > 0 else 0.0)
    return series


def _in_position(trades: list[dict], bar_times: list[datetime], step: timedelta) -> np.ndarray:
    """Per bar: a trade was open at the bar's close (entered at or before the bar, not yet exited)."""
    times = np.array([t.timestamp() for t in bar_times])
    open_count = np.zeros(len(times) + 1, dtype=np.int64)
    for trade in trades:
        first = np.searchsorted(times, trade["entry_at"].timestamp(), side="left")
        last = len(times) if trade["exit_at"] is None else np.searchsorted(times, trade["exit_at"].timestamp(),
                                                                           side="left")
        open_count[first] += 1
        open_count[last] -= 1
    return np.cumsum(open_count[:-1]) > 0


def _chart_points(times: list, *series: list) -> tuple[list, ...]:
    """At most CHART_POINTS points of each series for the charts (every k-th and the last); the figures are
    computed on every point."""
    if len(times) <= CHART_POINTS:
        return (times, *series)
    keep = sorted(set(range(0, len(times), -(-len(times) // CHART_POINTS))) | {len(times) - 1})
    return ([times[i] for i in keep], *([values[i] for i in keep] for values in series))


def _risk_blocks(run: BacktestRun) -> tuple[dict, dict]:
    """Blocked recommendations counted by every check that said no (and Kelly's reason for a size of zero), and
    the recommendations counted by state."""
    blocks: Counter = Counter()
    examples: dict[str, str] = {}
    states = Counter()
    rows = Recommendation.objects.filter(account=run.account).values_list("state", "risk", "kelly", "kelly_contracts",
                                                                          "reasons")
    for state, risk, kelly, kelly_contracts, reasons in rows:
        states[state] += 1
        if state != Recommendation.State.BLOCKED:
            continue
        failed = [c for c in (risk or {}).get("checks", []) if not c.get("passed")]
        for check in failed:
            blocks[check["name"]] += 1
            examples.setdefault(check["name"], check.get("message", ""))
        if kelly_contracts == 0 and (kelly or {}).get("reason"):
            name = "kelly: " + _NUMBER.sub("…", kelly["reason"])
            blocks[name] += 1
            examples.setdefault(name, kelly["reason"])
        if not failed and not (kelly_contracts == 0 and (kelly or {}).get("reason")):
            blocks["other"] += 1
            examples.setdefault("other", "; ".join(reasons or []))
    return ({name: {"count": n, "example": examples.get(name, "")} for name, n in blocks.most_common()},
            dict(sorted(states.items())))


_NUMBER = re.compile(r"[-+]?\d[\d.,]*\d|\d")  # a reason's figures vary; its words name the cause


def _json_ready(value):
    """Decimals as strings (exact), datetimes as ISO 8601 UTC, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value
