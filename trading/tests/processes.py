"""Real processes for the workflow tests: a private redis-server, Celery workers and beat, and the feed, all on the
test database; a market with a trained model to decide with; `wait_for` that polls and shows the processes' logs.

Each test gets a redis-server of its own (parallel runs share the main Redis, and the queue names `trading` and
`inference` are fixed), which it may kill and start again; the test process's own queueing and pushes go there too.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings as django_settings
from django.db import connection

from trading.tests.live import LiveServer, database_url, wait_for_other_database_sessions_to_end
from trading.tests.redis_server import PrivateRedis

POLL_SECONDS = 0.05
START_TIMEOUT = 60.0
# The workflow's sweeper re-drives a bar idle for this long (the deployment default is 10 s).
REDRIVE_SECONDS = "1"
# The channel layer's prefix, the same in the test process and in its processes (on the test's own Redis).
CHANNELS_PREFIX = "processes-test"
# Every process a ProcessStack starts names its database sessions so (libpq's PGAPPNAME): a database outage ends
# theirs, not the test process's own.
STACK_APPLICATION_NAME = "minhos-test-stack"


class StillWaiting(AssertionError):
    pass


def wait_for(condition: Callable[[], object], timeout: float, message: str | Callable[[], str], *,
             processes: Iterable[ManagedProcess] = ()) -> object:
    """Poll `condition` every POLL_SECONDS until it returns something truthy (returned); after `timeout` seconds
    fail with `message` (a string, or a callable giving one then) and the last lines of each process's log."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise StillWaiting(f"{text} (waited {timeout:.0f} s)\n{log_tails(processes)}")
        time.sleep(POLL_SECONDS)


def log_tails(processes: Iterable[ManagedProcess], lines: int = 30) -> str:
    return "\n".join(f"--- {p.name} ({p.state()}), last {lines} lines of {p.log_path.name}:\n{p.log_tail(lines)}"
                     for p in processes)


class ManagedProcess(LiveServer):
    """A subprocess in its own process group (see LiveServer), with a name, a way to kill the whole group at once,
    and a readiness line to wait for in its log."""

    def __init__(self, *, name: str, ready_line: str, **kwargs):
        self.name = name
        self.ready_line = ready_line
        self.ended_by_test = False  # killed or stopped on purpose, not exited by itself
        self.restart: Callable[[], ManagedProcess] | None = None
        super().__init__(**kwargs)

    def state(self) -> str:
        code = self.process.poll()
        return "running" if code is None else f"exited {code}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        wait_for(lambda: self.ready_line in self.log_text() or not self.alive(), timeout,
                 f"{self.name} did not log {self.ready_line!r}", processes=[self])
        if not self.alive():
            raise AssertionError(f"{self.name} exited before it was ready\n{log_tails([self])}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.ended_by_test = True
        return super().stop(sig)

    def kill(self, *, wait: bool = True) -> None:
        """SIGKILL the whole process group (the Celery parent and its pool children together), as a crash would."""
        self.ended_by_test = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if wait:
            self.process.wait(timeout=10)
            if not self._log.closed:
                self._log.close()


class ProcessStack:
    """The processes of one test, on its private Redis; `stop_all` ends every one still running."""

    def __init__(self, *, tmp_path: Path, redis: PrivateRedis, redis_url: str):
        self.tmp_path = tmp_path
        self.redis = redis
        self.redis_url = redis_url
        self.processes: list[ManagedProcess] = []
        self._starts: dict[str, int] = {}
        self.exits: list[str] = []  # workers that exited by themselves, with the lines that say why
        self.extra_env: dict[str, str] = {}  # a test's own settings for its processes (short timers)

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": django_settings.SECRET_KEY,
            "MINHOS_VAR_DIR": str(self.tmp_path),
            "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
            "MINHOS_INSECURE_HTTP": "1",
            "MINHOS_WORKFLOW_REDRIVE_SECONDS": REDRIVE_SECONDS,
            "CHANNELS_PREFIX": CHANNELS_PREFIX,
            "PGAPPNAME": STACK_APPLICATION_NAME,
            **self.extra_env,
        }

    def _start(self, name: str, command: list[str], ready_line: str, wait: bool,
               env: dict[str, str] | None = None) -> ManagedProcess:
        count = self._starts[name] = self._starts.get(name, 0) + 1
        process = ManagedProcess(
            name=f"{name}#{count}", ready_line=ready_line, command=command, env={**self.env(), **(env or {})},
            log_path=self.tmp_path / f"{name}-{count}.log",
            # The deployment default (persistent connections, 300 s) rather than the suite's 0.
            remove_env=("CONN_MAX_AGE",),
        )
        self.processes.append(process)
        if wait:
            process.wait_ready()
        return process

    def worker(self, queues: Iterable[str], *, concurrency: int = 2, wait: bool = True) -> ManagedProcess:
        """A Celery worker serving `queues` with `concurrency` pool processes (once it says it is ready)."""
        queues = list(queues)
        process = self._start("worker", [
            sys.executable, "-m", "celery", "-A", "minhos_site", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "-Q", ",".join(queues), "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
            "--without-mingle",  # nobody else on this Redis to synchronise with: a second quicker start
            "--without-gossip",  # as the Procfile runs them
        ], ready_line=" ready.", wait=wait)
        process.restart = lambda: self.worker(queues, concurrency=concurrency, wait=False)
        return process

    def restart_exited_workers(self) -> None:
        """What the process supervisor does in production (a role that dies is started again): a worker that exited
        by itself is replaced, and its exit recorded in `exits` with the log lines saying why, for the test to
        report once it has checked that the workflow recovered."""
        for process in list(self.processes):
            if process.restart is not None and not process.ended_by_test and not process.alive():
                process.ended_by_test = True  # replaced once
                log = process.log_text().splitlines()
                why = [line for line in log if "CRITICAL" in line or "Unrecoverable" in line] or log[-5:]
                self.exits.append(f"{process.name} exited with code {process.process.returncode}: "
                                  + " | ".join(why[:5]) + f" (log: {process.log_path})")
                process.restart()

    def workers(self, *queue_lists: Iterable[str], concurrency: int = 2) -> list[ManagedProcess]:
        """One worker per list of queues, started together, once all are ready."""
        started = [self.worker(queues, concurrency=concurrency, wait=False) for queues in queue_lists]
        for process in started:
            process.wait_ready()
        return started

    def web(self, *, wait: bool = True, **env: str) -> ManagedProcess:
        """The web role (uvicorn serving the ASGI app) on a free port, with these extra environment variables."""
        return self._start("web", [
            sys.executable, "-m", "uvicorn", "minhos_site.asgi:application", "--host", "127.0.0.1", "--port",
            "{port}", "--no-access-log", "--lifespan", "off",
        ], ready_line="Uvicorn running on", wait=wait, env=env)

    def beat(self, *, wait: bool = True) -> ManagedProcess:
        return self._start("beat", [
            sys.executable, "-m", "celery", "-A", "minhos_site", "beat", "--loglevel", "INFO",
            "--pidfile", str(self.tmp_path / "beat.pid"), "--schedule", str(self.tmp_path / "beat-schedule"),
        ], ready_line="beat: Starting...", wait=wait)

    def feed(self, *arguments: str, wait: bool = True) -> ManagedProcess:
        """`manage.py run_feed` with these arguments (once it has said what it feeds)."""
        return self._start("feed", [sys.executable, "manage.py", "run_feed", *arguments], ready_line="feed ",
                           wait=wait)

    @staticmethod
    def kill(*processes: ManagedProcess) -> None:
        """SIGKILL these processes' groups all at once (a machine dying), then wait for each to be gone."""
        for process in processes:
            process.kill(wait=False)
        for process in processes:
            process.kill()

    def wait_for(self, condition: Callable[[], object], timeout: float, message: str | Callable[[], str]) -> object:
        return wait_for(condition, timeout, message, processes=self.processes)

    def logs(self, name: str) -> str:
        """Every log of the processes called `name` (all its starts), in order."""
        return "\n".join(p.log_text() for p in self.processes if p.name.split("#")[0] == name)

    def stop_all(self) -> None:
        """SIGTERM every process still running at once (they shut down together), then wait for each; stragglers
        of each process group are killed and the logs closed (see LiveServer.stop)."""
        for process in self.processes:
            process.ended_by_test = True
            if process.alive():
                with contextlib.suppress(ProcessLookupError):
                    process.process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            process.stop()


@contextlib.contextmanager
def celery_broker(url: str):
    """The test process queues its tasks to `url` meanwhile (the Celery app's pools are made again for it)."""
    from minhos_site.celery import app

    def reset_pools():
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        with contextlib.suppress(AttributeError, KeyError):
            app.__dict__["amqp"]._producer_pool = None

    previous = app.conf.broker_url
    app.conf.broker_url = url
    reset_pools()
    try:
        yield app
    finally:
        reset_pools()
        app.conf.broker_url = previous


def send(stack: ProcessStack, task_name: str, *args) -> None:
    """Queue a task on the stack's redis-server from a process of its own (`celery call`), routed as the app routes
    it. Not from the test process: Celery's producer pools are process-wide and keyed by broker address, and in a full
    run a task queued with `.delay()` went out on a pooled connection to an earlier test's stopped private
    redis-server ("Error 111 connecting"; "Acquire on closed pool" once the pools were reset)."""
    import json
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if k != "CONN_MAX_AGE"}, **stack.env()}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "minhos_site", "call", task_name,
                           "--args", json.dumps(list(args))], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"celery call {task_name} failed: {done.stdout}{done.stderr}"


@pytest.fixture
def process_stack(transactional_db, tmp_path, settings):
    """A ProcessStack on a private redis-server that the test may stop (`stack.redis.stop()`) and start again; the
    test process queues to it and pushes through it too. Every process is stopped at the end, then the test waits
    for their database sessions to end (the test database is flushed and dropped after)."""
    if not (django_settings.REDIS_URL and connection.vendor == "postgresql"):
        pytest.fail("this test needs DATABASE_URL (PostgreSQL) and REDIS_URL (deployment mode)")
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = PrivateRedis(redis_dir)
    redis.start()
    url = redis.url(0)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "minhos_site.channel_layer.RedisChannelLayer",
                                           "CONFIG": {"hosts": [url], "prefix": CHANNELS_PREFIX}}}
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    stack = ProcessStack(tmp_path=tmp_path, redis=redis, redis_url=url)
    with celery_broker(url):
        try:
            yield stack
        finally:
            # Captured by pytest and shown only if the test failed: what each process said last.
            print(log_tails(stack.processes))
            stack.stop_all()
            redis.stop()
            wait_for_other_database_sessions_to_end()


# ---- a market with a trained model --------------------------------------------------------------------------------

HISTORY_BARS = 1500  # the fast preset's three walk-forward folds, and the window of the first live bar
LIVE_BARS_MAX = 300
SERIES_START = datetime(2024, 1, 2, tzinfo=UTC)
SERIES_SEED = 11
START_PRICE = 18000.0


@functools.cache
def _series() -> pd.DataFrame:
    """History and live bars of one made-up NQ 1m series with a strong planted pattern, so a fast model finds an
    edge and most bars get a confident prediction (the live bars sit inside one session, no daily break)."""
    from trading.domain.synthetic import DEMO_SIGNAL, SyntheticParams, generate_bars, session_timestamps

    params = SyntheticParams(**{**DEMO_SIGNAL, "signal_edge": 0.8, "signal_persist": 20})  # the demo's earlier drift
    return generate_bars(session_timestamps(SERIES_START, HISTORY_BARS + LIVE_BARS_MAX), seed=SERIES_SEED,
                         start_price=START_PRICE, tick_size=0.25, params=params)


@functools.cache
def _trained():
    """The fast preset fitted once per test process on the history (about 10-20 s), as mlcore's tests do.

    A symmetric bracket (1 ATR each way) over 10 bars: a payoff of 1, so any calibrated probability over 0.5 is an
    edge Kelly sizes, and trades exit (bracket or time) within the few dozen bars a test runs.
    """
    from mlcore.domain.labels import LabelConfig
    from mlcore.training import TrainConfig, train_model

    config = TrainConfig(preset="fast", seed=0, label=LabelConfig(tp_atr=1.0, sl_atr=1.0, horizon=10))
    return config, train_model(_series().iloc[:HISTORY_BARS].reset_index(drop=True), config)


@dataclass
class Market:
    instrument: object
    version: object
    auto: object  # the account with auto-trading on
    desk: object  # an account whose recommendations wait for a person (who never comes: they expire)
    live: pd.DataFrame  # the bars after the history, in order, for the test to store
    configs: dict  # account name -> TradingConfig

    def bar(self, i: int):
        from trading.domain.bars import BarData

        row = self.live.iloc[i]
        return BarData(row["timestamp"].to_pydatetime(), float(row["open"]), float(row["high"]), float(row["low"]),
                       float(row["close"]), float(row["volume"]))

    def store(self, i: int):
        """Store live bar `i` as the feed does (stored, its workflow row written, announced once committed)."""
        from trading import services

        stored = services.feed_publish_bar(instrument=self.instrument, timeframe="1m", bar=self.bar(i),
                                           already_stored=False, simulated=True)
        assert stored is not None, f"live bar {i} was not stored"
        return stored


# Sizing limits that bind within a test: Kelly asks for more than max_contracts on a confident bar, so positions
# reach the position limit in two bars and sizes are cut (reduce) or refused (block) against the settled position.
TRADING_CONFIG = {
    "kelly_fraction": 1.0,
    "min_confidence": 0.5,
    "max_contracts": 3,
    "max_position_contracts": 5,
    "max_total_contracts": 6,
    "daily_loss_limit": Decimal("50000.00"),
    "max_trades_per_day": 1000,
    "recommendation_ttl_bars": 2,
}


@pytest.fixture
def market(process_stack) -> Market:
    """NQ 1m: the history stored without events, the session's trained model registered and promoted (artifacts in
    this test's MEDIA_ROOT, which the processes share); `auto` trading by itself, `desk` waiting for a person."""
    from mlcore import services as ml_services
    from mlcore.registry import model_version_promote
    from trading import services
    from trading.models import Account, TradingConfig
    from trading.tests.factories import InstrumentFactory

    config, trained = _trained()
    ml_services.model_cache_clear()
    nq = InstrumentFactory(symbol="NQ")
    services.bars_ingest(instrument=nq, timeframe="1m", frame=_series().iloc[:HISTORY_BARS])
    # As mlcore's tests register the session's model: no second training per test.
    version = ml_services._version_register(instrument=nq, timeframe="1m", config=config, trained=trained)
    version = model_version_promote(version_id=version.pk)
    # These tests are about the workflow, not the model: the session's fast model has no validated edge, which
    # monitoring (rightly) scores under the blocking floor when it is promoted. Scored healthy here, it trades.
    type(version).objects.filter(pk=version.pk).update(health_score=100.0, health_reason="set healthy by the test")
    version.refresh_from_db()
    auto = services.account_default_get()
    Account.objects.filter(pk=auto.pk).update(auto_trading=True)
    auto.refresh_from_db()
    desk = Account.objects.create(name="desk")
    configs = {}
    for account in (auto, desk):
        services.trading_config_get(account=account, instrument=nq)
        TradingConfig.objects.filter(account=account, instrument=nq).update(**TRADING_CONFIG)
        configs[account.name] = TradingConfig.objects.get(account=account, instrument=nq)
    services.feed_status_start(instrument=nq, timeframe="1m", source="test", pace_seconds=0)
    yield Market(instrument=nq, version=version, auto=auto, desk=desk,
                 live=_series().iloc[HISTORY_BARS:].reset_index(drop=True), configs=configs)
    ml_services.model_cache_clear()


# ---- what every workflow test checks at the end -------------------------------------------------------------------

SUPERSEDED = "expired before it was offered"


def live_workflows(market: Market) -> list:
    """The workflow rows of the live bars (history is stored without one), in bar order."""
    from trading.models import BarWorkflow

    return list(BarWorkflow.objects.filter(instrument=market.instrument, timeframe="1m").order_by("timestamp"))


def wait_until_every_bar_is_done(stack: ProcessStack, market: Market, *, expected: int, timeout: float,
                                 supervise: bool = False) -> list:
    """The live bars' workflow rows once `expected` bars are stored and every one is done; with `supervise`, a
    worker that exits meanwhile is started again (ProcessStack.restart_exited_workers)."""
    from trading.models import BarWorkflow

    def done():
        if supervise:
            stack.restart_exited_workers()
        rows = BarWorkflow.objects.filter(instrument=market.instrument, timeframe="1m")
        return rows.count() == expected and not rows.exclude(stage=BarWorkflow.Stage.DONE).exists()

    def progress():
        rows = live_workflows(market)
        stages = pd.Series([r.stage for r in rows]).value_counts().to_dict()
        waiting = [(r.timestamp.strftime("%H:%M"), r.stage, r.attempts, r.error[:200]) for r in rows
                   if r.stage != BarWorkflow.Stage.DONE][:10]
        return f"{len(rows)} of {expected} bars stored, stages {stages}; first waiting: {waiting}"

    stack.wait_for(done, timeout, progress)
    return live_workflows(market)


def assert_settled_and_decided_in_bar_order(rows: list) -> None:
    """Each bar was settled before its decision started; settled after every earlier bar was settled (the next
    settlement starting only once the previous one ended), and decided likewise after every earlier decision."""
    from trading.models import BarWorkflow

    assert rows, "no live bar"
    problems = [f"bar {r.timestamp:%H:%M}: {r.stage} {r.error!r}" for r in rows
                if r.stage != BarWorkflow.Stage.DONE or r.error]
    assert not problems, f"bars not done or with an error: {problems[:10]}"
    for r in rows:
        assert r.settled_at is not None and r.decide_started_at is not None and r.decided_at is not None, r
        assert r.settle_started_at <= r.settled_at <= r.decide_started_at <= r.decided_at, (
            f"bar {r.timestamp:%H:%M}: settle {r.settle_started_at}..{r.settled_at}, "
            f"decide {r.decide_started_at}..{r.decided_at}")
    for earlier, later in zip(rows, rows[1:]):
        assert earlier.settled_at <= later.settle_started_at, (
            f"bar {later.timestamp:%H:%M} began settling at {later.settle_started_at}, before bar "
            f"{earlier.timestamp:%H:%M} was settled at {earlier.settled_at}")
        assert earlier.decided_at <= later.decide_started_at, (
            f"bar {later.timestamp:%H:%M} began its decision at {later.decide_started_at}, before bar "
            f"{earlier.timestamp:%H:%M} was decided at {earlier.decided_at}")


def assert_decided_once(market: Market, rows: list) -> None:
    """One prediction per bar and version, recorded on the bar's workflow; one recommendation per prediction and
    account; each approved once (one audit record, one entry order); no order filled twice."""
    from django.db.models import Count

    from mlcore.models import Prediction
    from trading.models import AuditEvent, Fill, Order, Recommendation

    bar_ids = [r.bar_id for r in rows]
    predictions = Prediction.objects.filter(bar_id__in=bar_ids)
    per_bar = dict(predictions.values_list("bar_id").annotate(n=Count("id")))
    assert per_bar == dict.fromkeys(bar_ids, 1), f"predictions per bar: {per_bar}"
    assert set(predictions.values_list("version_id", flat=True)) == {market.version.pk}
    assert {r.bar_id: r.prediction_id for r in rows} == dict(predictions.values_list("bar_id", "id"))
    per_prediction = {(p, a): n for p, a, n in Recommendation.objects.values_list("prediction_id", "account_id")
                      .annotate(n=Count("id"))}
    expected = {(p, a.pk): 1 for p in predictions.values_list("id", flat=True) for a in (market.auto, market.desk)}
    assert per_prediction == expected, "not one recommendation per prediction and account"
    assert [r.recommendations for r in rows] == [2] * len(rows)
    approvals = dict(AuditEvent.objects.filter(action=AuditEvent.Action.AUTO_APPROVE)
                     .values_list("recommendation_id").annotate(n=Count("id")))
    assert set(approvals.values()) <= {1}, f"approved more than once: {approvals}"
    entries = dict(Order.objects.filter(kind=Order.Kind.ENTRY).values_list("recommendation_id")
                   .annotate(n=Count("id")))
    assert entries.keys() == approvals.keys() and set(entries.values()) <= {1}
    assert Fill.objects.count() == Fill.objects.values("order_id").distinct().count()
    exits = dict(Order.objects.filter(parent__isnull=False).values_list("parent_id").annotate(n=Count("id")))
    assert set(exits.values()) <= {1}, f"an entry exited more than once: {exits}"
    assert Recommendation.objects.filter(account=market.desk).exclude(
        state__in=[Recommendation.State.PENDING, Recommendation.State.EXPIRED, Recommendation.State.BLOCKED]
    ).count() == 0, "the desk account approves nothing by itself"


def assert_stale_recommendations_expired(market: Market, rows: list) -> int:
    """Nothing is left to act on but the latest bar's recommendations: an earlier bar's is executed, expired or
    blocked, never pending past its time to live or approved; a recommendation sized after a later bar was stored
    (a backlog) was expired at once, never offered or auto-approved. Returns how many were sized in a backlog."""
    from trading.models import Recommendation

    State = Recommendation.State
    latest = rows[-1].timestamp
    for recommendation in Recommendation.objects.filter(bar_id__in=[r.bar_id for r in rows]):
        where = (f"{recommendation.account.name}'s recommendation #{recommendation.pk} of the bar of "
                 f"{recommendation.bar_timestamp:%H:%M} ({recommendation.state}; {recommendation.reasons[:1]})")
        if recommendation.bar_timestamp < latest:
            assert recommendation.state != State.APPROVED, f"{where}: approved, never filled"
            if recommendation.expires_after < latest:
                assert recommendation.state != State.PENDING, f"{where}: pending past its time to live"
    later = {earlier.bar_id: following.stored_at for earlier, following in zip(rows, rows[1:])}
    backlog = 0
    for recommendation in Recommendation.objects.filter(bar_id__in=later):
        # created after the next bar's row was written (with a margin for its commit): it was superseded
        if recommendation.created_at > later[recommendation.bar_id] + pd.Timedelta(seconds=0.5):
            backlog += 1
            assert recommendation.state == State.EXPIRED and SUPERSEDED in recommendation.reasons[0], (
                f"{recommendation.account.name}'s recommendation of {recommendation.bar_timestamp:%H:%M} sized "
                f"after the next bar was stored is {recommendation.state}: {recommendation.reasons}")
    return backlog


def positions_by_bar(account, rows: list) -> dict:
    """For each bar: the contracts long and short in open entries once the bar was settled, from the fills alone
    (an entry is open from the bar of its fill until the bar of its exit's fill)."""
    from trading.models import Order

    entries = list(Order.objects.filter(account=account, kind=Order.Kind.ENTRY, fill__isnull=False)
                   .select_related("fill__bar"))
    exits = {o.parent_id: o.fill.bar.timestamp
             for o in Order.objects.filter(account=account, parent__isnull=False, fill__isnull=False)
             .select_related("fill__bar")}
    result = {}
    for row in rows:
        longs = shorts = 0
        for entry in entries:
            opened, closed = entry.fill.bar.timestamp, exits.get(entry.pk)
            if opened <= row.timestamp and (closed is None or closed > row.timestamp):
                if entry.side == "buy":
                    longs += entry.quantity
                else:
                    shorts += entry.quantity
        result[row.bar_id] = (longs, shorts)
    return result


def assert_limits_held(market: Market, rows: list) -> None:
    """After every bar's settlement each side's open contracts are within the position limit and the account's
    total within the total limit; no entry was cancelled (the bars follow each other without a gap)."""
    from trading.models import Order

    for account in (market.auto, market.desk):
        config = market.configs[account.name]
        for bar_id, (longs, shorts) in positions_by_bar(account, rows).items():
            assert longs <= config.max_position_contracts and shorts <= config.max_position_contracts, (
                f"{account.name} after bar #{bar_id}: {longs} long, {shorts} short, limit "
                f"{config.max_position_contracts}")
            assert max(longs, shorts) <= config.max_total_contracts
    assert not Order.objects.filter(status=Order.Status.CANCELLED).exists()


def _number(pattern: str, text: str) -> str:
    import re

    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return found.group(1)


def assert_sized_against_settled_positions(market: Market, rows: list) -> int:
    """Every recommendation offered (not expired as superseded) was sized against the account as its bar's
    settlement left it: the position and total the risk check recorded are the open entries after that bar's
    fills (and the entries approved before it and not filled yet), its daily P&L and Kelly's drawdown factor are
    the equity snapshot of that bar's close. Returns how many were sized against a position that was not flat."""
    from trading.models import EquitySnapshot, Order, Recommendation

    step = pd.Timedelta(minutes=1)
    not_flat = 0
    for account in (market.auto, market.desk):
        config = market.configs[account.name]
        positions = positions_by_bar(account, rows)
        entries = list(Order.objects.filter(account=account, kind=Order.Kind.ENTRY).select_related("fill__bar"))
        snapshots = {s.timestamp: s for s in EquitySnapshot.objects.filter(account=account)}
        offered = [r for r in Recommendation.objects.filter(account=account, bar_id__in=positions)
                   .order_by("bar_timestamp") if not (r.reasons and r.reasons[0].startswith(SUPERSEDED))]
        for recommendation in offered:
            where = (f"{account.name}'s recommendation #{recommendation.pk} ({recommendation.side}) of the bar of "
                     f"{recommendation.bar_timestamp:%H:%M}")
            checks = {c["name"]: c["message"] for c in recommendation.risk["checks"]}
            longs, shorts = positions[recommendation.bar_id]
            for entry in entries:  # approved before this sizing, not filled by this bar: working
                filled = getattr(entry, "fill", None)
                if entry.placed_at < recommendation.created_at and (
                        filled is None or filled.bar.timestamp > recommendation.bar_timestamp):
                    longs, shorts = (longs + entry.quantity, shorts) if entry.side == "buy" else (
                        longs, shorts + entry.quantity)
            net = int(_number(r"\(net position (-?\d+)\)", checks["position_limit"]))
            assert net == (longs if recommendation.side == "long" else -shorts), (
                f"{where} was sized against a position of {net}; after its bar settled the account held {longs} "
                f"long and {shorts} short: {checks['position_limit']}")
            total = int(_number(r"\(open contracts (\d+)\)", checks["total_limit"]))
            assert total == max(longs, shorts), f"{where}: {checks['total_limit']} ({longs} long, {shorts} short)"
            snapshot = snapshots[recommendation.bar_timestamp + step]
            pnl = Decimal(_number(r"daily P&L (-?[\d.]+) is within", checks["daily_loss_limit"]))
            assert abs(pnl - (snapshot.equity - account.starting_equity)) <= Decimal("0.01"), (
                f"{where}: daily P&L {pnl}, but the equity at its bar's close was {snapshot.equity}")
            factor = 1.0 - max(snapshot.drawdown, 0.0) / config.max_drawdown
            assert abs(recommendation.kelly["drawdown_factor"] - factor) < 1e-6, (
                f"{where}: Kelly's drawdown factor {recommendation.kelly['drawdown_factor']}, the snapshot's "
                f"drawdown {snapshot.drawdown} gives {factor}")
            not_flat += bool(longs or shorts)
    return not_flat
