"""`manage.py bench e2e`: the deployment mode for real, measured from a bar's commit to what websocket clients receive.

It brings up, on a database and a Redis logical database of its own, the processes the Procfile runs (uvicorn, one
Celery worker per per-bar queue, beat, the feed), streams synthetic bars with the demo's planted pattern to a fast
model, and watches them with N websocket clients in a separate process. Latencies run from the bar row's commit
(BarWorkflow.stored_at) to the receipt of `bar.closed`, `prediction.created` and the bar's first
`recommendation.updated`; the hops come from the BarWorkflow rows. Everything it started is stopped, its Redis
database emptied and its PostgreSQL database dropped, also when it fails.

The module is also the entry point of two child processes (`python -m trading.bench_e2e setup|clients`): the setup
of the fresh database, and the websocket clients, which import neither Django nor the ML stack.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

SYMBOL, TIMEFRAME = "NQ", "1m"
# Message type -> its latency's name in the result.
WATCHED = {
    "bar.closed": "bar",
    "prediction.created": "prediction",
    "recommendation.updated": "recommendation",
}
# The hops of a bar, from the BarWorkflow row's times; "push" ends at the clients' receipt of the recommendation.
HOPS = (
    ("queue_settle", "stored", "settle_started"),
    ("settle", "settle_started", "settled"),
    ("queue_decide", "settled", "decide_started"),
    ("predict", "decide_started", "predicted"),
    ("size", "predicted", "decided"),
)
TARGETS = {"clients": 100, "recommendation_p50_ms": 50.0, "recommendation_p99_ms": 150.0, "missed": 0}
READY_TIMEOUT = 120.0  # web answering and both per-bar queues' workers seen by /healthz
CLIENTS_TIMEOUT = 90.0  # every websocket open and greeted
SETTLE_TIMEOUT = 90.0  # after the feed's last bar, for every bar's workflow to finish (the sweeper re-drives in 10 s)
GRACE_SECONDS = 1.5  # after the last decision, for its pushes to reach every client
BASE_DIR = Path(__file__).resolve().parent.parent
# Knobs of the caller's environment the bench's processes must not inherit: it runs deployment as deployed.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CHANNELS_PREFIX", "CACHE_PREFIX", "MINHOS_VAR_DIR",
                 "MEDIA_ROOT", "CONN_MAX_AGE", "CELERY_TASK_ALWAYS_EAGER", "DEBUG")


def bench_e2e(
    *,
    bars: int = 200,
    clients: str | list[int] = "1,100",
    pace: float = 0.3,
    warmup: int = 10,
    redis_db: int = 14,
    flush: bool = False,
    # Measured on 2 cores: a second process per queue does not help one market (its steps are serialised by the
    # market's lock) and lengthens the tail (the processes compete for the cores; each loads the model).
    concurrency: str = "1,1",
    pool: str = "prefork",
    preset: str = "fast",
    history_days: int = 5,
    seed: int = 42,
    database: str = "minhos_bench_e2e",
    database_url: str | None = None,
    redis_url: str | None = None,
    keep: bool = False,
    progress: bool | None = None,
    deflate: bool = True,
) -> dict:
    """Bring up deployment mode, stream `warmup` then, per client count, `bars` bars, and return the figures.

    `clients`: websocket clients per run ("1,100"); `concurrency`: worker processes of the trading and the
    inference queue ("1,1"); `pool`: Celery's pool (prefork, threads, solo); `database_url` / `redis_url`: the
    servers (default: the configured ones), on which it makes the database `database` and uses Redis database
    `redis_db`, refusing one that is not empty unless `flush`. `keep` leaves the database and the logs behind.
    `deflate`: the clients offer per-message compression, as browsers do.
    """
    from django.core.management.base import CommandError

    client_counts = _parse_counts(clients)
    trading_concurrency, inference_concurrency = _parse_concurrency(concurrency)
    if bars < 1 or warmup < 0 or not pace >= 0:
        raise CommandError("bench e2e: --bars must be >= 1, warm-up bars >= 0 and --pace >= 0")
    if pool not in ("prefork", "threads", "solo"):
        raise CommandError(f"bench e2e: --pool must be prefork, threads or solo, not {pool!r}")
    server = _database_server(database_url)
    redis_url = _redis_url(redis_url, redis_db)
    progress = sys.stderr.isatty() if progress is None else progress
    say = (lambda message: print(f"bench e2e: {message}", file=sys.stderr, flush=True)) if progress else (
        lambda message: None)

    logs = Path(tempfile.mkdtemp(prefix="minhos-bench-e2e-"))
    stack = _Stack(logs)
    succeeded = False
    redis_claimed = database_made = False
    load_before = os.getloadavg()
    started = time.monotonic()
    previous_sigterm = _stop_cleanly_on_sigterm()
    try:
        _redis_claim(redis_url, flush=flush)
        redis_claimed = True
        _database_create(server, database)
        database_made = True
        prefix = f"bench-e2e-{secrets.token_hex(4)}"
        env = _child_env(database_url=_url_with_database(server, database), redis_url=redis_url, var_dir=logs,
                         prefix=prefix)

        phases = {}
        clock = time.monotonic()
        say(f"migrating database {database}...")
        stack.run("migrate", [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, timeout=600)
        phases["migrate"] = _lap(clock)

        clock = time.monotonic()
        port = _free_port()
        say(f"starting web :{port}, workers (trading x{trading_concurrency}, inference x{inference_concurrency}, "
            f"{pool} pool), beat; meanwhile {history_days} days of history and a {preset} model...")
        stack.start("web", [sys.executable, "-m", "uvicorn", "minhos_site.asgi:application", "--host", "127.0.0.1",
                            "--port", str(port), "--no-access-log", "--forwarded-allow-ips", ""], env=env)
        for queue, count in (("trading", trading_concurrency), ("inference", inference_concurrency)):
            stack.start(f"worker-{queue}", [_celery(), "-A", "minhos_site", "worker", "-Q", queue, "--loglevel",
                                            "INFO", "--concurrency", str(count), "--pool", pool,
                                            "-n", f"{queue}-{prefix}@%h"], env=env)
        stack.start("beat", [_celery(), "-A", "minhos_site", "beat", "--loglevel", "INFO",
                             "--schedule", str(logs / "celerybeat-schedule")], env=env)
        # The processes start while the market and its model are made (they load the model on their first bar).
        sessions_file = logs / "sessions.json"
        stack.run("setup", [sys.executable, "-m", "trading.bench_e2e", "setup", "--days", str(history_days),
                            "--seed", str(seed), "--preset", preset, "--sessions", str(max(client_counts)),
                            "--out", str(sessions_file)], env=env, timeout=900)
        sessions = json.loads(sessions_file.read_text())
        phases["history_and_model"] = _lap(clock)
        _wait_ready(f"http://127.0.0.1:{port}", stack)
        phases["ready"] = _lap(clock)

        reader = _Reader(server, database)
        stack.reader = reader
        feed = [sys.executable, "manage.py", "run_feed", "--symbol", SYMBOL, "--timeframe", TIMEFRAME, "--source",
                "synthetic", "--demo-signal", "--seed", str(seed), "--pace", str(pace)]
        if warmup:
            clock = time.monotonic()
            say(f"warm-up: {warmup} bars (each worker process loads the model on its first bar)")
            _stream(stack, reader, env, feed, bars=warmup, pace=pace, name="feed-warmup", progress=progress)
            phases["warmup"] = _lap(clock)

        runs, all_rows, all_receipts = [], [], []
        for count in client_counts:
            clock = time.monotonic()
            say(f"{count} client(s): streaming {bars} bars every {pace}s...")
            run, rows, receipts = _measured_run(stack, reader, env, feed, port=port, sessions=sessions[:count],
                                                bars=bars, pace=pace, progress=progress, deflate=deflate)
            runs.append(run)
            phases[f"run_{count}_clients"] = _lap(clock)
            all_rows.extend(rows)
            all_receipts.extend(receipts)
        result = {
            "bench": "e2e",
            "runs": runs,
            "hops_ms": _hops(all_rows, all_receipts),
            "targets": {**TARGETS, "met": _targets_met(runs)},
            "setup": {"bars_per_run": bars, "warmup_bars": warmup, "pace_s": pace, "preset": preset,
                      "history_days": history_days, "workers": {"trading": trading_concurrency,
                                                                "inference": inference_concurrency, "pool": pool},
                      "cpus": os.cpu_count(), "load_avg_before": [round(v, 2) for v in load_before],
                      "load_avg_after": [round(v, 2) for v in os.getloadavg()],
                      "seconds": round(time.monotonic() - started, 1), "phases_s": phases},
        }
        reader.close()
        succeeded = True
        return result
    except CommandError:
        raise
    except Exception as exc:
        kept = f"\n(logs kept in {logs})" if stack.processes else ""
        raise CommandError(f"bench e2e failed: {type(exc).__name__}: {exc}{kept}") from exc
    finally:
        stack.stop_all()
        if redis_claimed:
            with contextlib.suppress(Exception):
                _redis_release(redis_url)
        if database_made and not keep:
            with contextlib.suppress(Exception):
                _database_drop(server, database)
        if (succeeded and not keep) or not stack.processes:  # logs are kept when there is something to read
            shutil.rmtree(logs, ignore_errors=True)
        elif progress:
            print(f"bench e2e: logs in {logs}", file=sys.stderr)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _stop_cleanly_on_sigterm():
    """SIGTERM ends the bench through its clean-up (Python's default would leave its processes running); returns
    the handler it replaced (None off the main thread, where handlers cannot be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _lap(since: float) -> float:
    return round(time.monotonic() - since, 1)


# --- one measured run ----------------------------------------------------------------------------------------------

def _measured_run(stack, reader, env, feed, *, port, sessions, bars, pace, progress, deflate):
    clients_out = stack.logs / f"clients-{len(sessions)}.json"
    sessions_file = stack.logs / f"sessions-{len(sessions)}.json"
    sessions_file.write_text(json.dumps(sessions))
    watcher = stack.start(f"clients-{len(sessions)}", [
        sys.executable, "-m", "trading.bench_e2e", "clients", "--url", f"ws://127.0.0.1:{port}/ws/market/{SYMBOL}/"
        f"{TIMEFRAME}/", "--origin", f"http://127.0.0.1:{port}", "--sessions", str(sessions_file),
        "--out", str(clients_out), *([] if deflate else ["--no-deflate"])], env=env, stdout_pipe=True)
    watcher.wait_for_line("ready", CLIENTS_TIMEOUT)
    after = reader.latest_timestamp()
    cpu_before, wall = stack.cpu(), time.monotonic()
    feed_cpu = _stream(stack, reader, env, feed, bars=bars, pace=pace, name=f"feed-{len(sessions)}",
                       progress=progress)
    time.sleep(GRACE_SECONDS)
    cpu_after, wall = stack.cpu(), time.monotonic() - wall
    watcher.stop(sig=signal.SIGINT, timeout=30)
    if not clients_out.exists():
        raise RuntimeError(f"the websocket clients wrote no results:\n{watcher.tail()}")
    watched = _load_watched(clients_out)
    rows = reader.rows(after=after)
    figures = _run_figures(len(sessions), rows, watched)
    # CPU seconds each process used while the bars streamed (two cores give 2 s per second of wall time).
    cpu = {"clients" if name.startswith("clients") else name: round(cpu_after[name] - cpu_before.get(name, 0.0), 1)
           for name in cpu_after}
    figures["cpu_s"] = {"wall": round(wall, 1), **cpu, "feed": round(feed_cpu, 1)}
    figures["client_process"] = watched.get("process")
    return figures, rows, _receipts(rows, watched)


def _stream(stack, reader, env, feed, *, bars, pace, name, progress) -> float:
    """Run the feed for `bars` bars, then wait until every bar's workflow has finished (bounded); returns the
    feed's CPU seconds (sampled while it runs)."""
    from tqdm import tqdm

    after = reader.latest_timestamp()
    process = stack.start(name, [*feed, "--max-bars", str(bars)], env=env)
    bar = tqdm(total=bars, desc=name, unit="bar", file=sys.stderr, disable=not progress, leave=False)
    deadline = time.monotonic() + bars * pace + 120
    finished_at = None
    feed_cpu = 0.0
    try:
        while True:
            done, total = reader.progress(after=after)
            bar.update(done - bar.n)
            feed_cpu = max(feed_cpu, _cpu_seconds(process.process.pid))
            code = process.process.poll()
            if code is not None and code != 0:
                raise RuntimeError(f"the feed exited with code {code}:\n{process.tail()}")
            if code == 0:
                finished_at = finished_at or time.monotonic()
                if total < bars:
                    raise RuntimeError(f"the feed stopped after {total} of {bars} bars:\n{process.tail()}")
                if done >= total or time.monotonic() - finished_at > SETTLE_TIMEOUT:
                    return feed_cpu
            if time.monotonic() > deadline + SETTLE_TIMEOUT:
                raise RuntimeError(f"{name}: {done} of {bars} bars decided before the deadline:\n"
                                   f"{stack.tails()}")
            time.sleep(0.25)
    finally:
        bar.close()


# --- figures -------------------------------------------------------------------------------------------------------

def _percentiles(values, *, with_max: bool = True) -> dict | None:
    import numpy as np

    if not len(values):
        return None
    array = np.asarray(values, dtype=np.float64)
    figures = {q: round(float(np.percentile(array, int(q[1:]))), 2) for q in ("p50", "p95", "p99")}
    if with_max:
        figures["max"] = round(float(array.max()), 2)
    return figures


def _run_figures(clients: int, rows: list[dict], watched: dict) -> dict:
    """Latencies per message type over every (client, bar) receipt; what some client never got; disorder."""
    latencies = {key: [] for key in WATCHED.values()}
    missed = {key: 0 for key in WATCHED.values()}
    spread = []
    for row in rows:
        expected = {"bar.closed": True, "prediction.created": row["prediction_id"] is not None,
                    "recommendation.updated": row["recommendations"] > 0}
        for message_type, key in WATCHED.items():
            if not expected[message_type]:
                continue
            times = []
            for client in watched["clients"]:
                received = client["received"][message_type].get(row["key"])
                if received is None:
                    missed[key] += 1
                    continue
                times.append(received[0])
                latencies[key].append((received[0] - row["stored"]) * 1000)
            if message_type == "recommendation.updated" and len(times) > 1:
                spread.append((max(times) - min(times)) * 1000)
    keys = {row["key"] for row in rows}
    out_of_order = {key: sum(_out_of_order(client["received"][message_type], keys) for client in watched["clients"])
                    for message_type, key in WATCHED.items()}
    first = watched["clients"][0]["received"]["recommendation.updated"] if watched["clients"] else {}
    pushed_states = {}
    for row in rows:
        if row["key"] in first:
            state = first[row["key"]][2]
            pushed_states[state] = pushed_states.get(state, 0) + 1
    return {
        "clients": clients,
        "bars": len(rows),
        "latency_ms": {key: _percentiles(values) for key, values in latencies.items()},
        "missed": sum(missed.values()),
        "out_of_order": sum(out_of_order.values()),
        "missed_by_type": missed,
        "out_of_order_by_type": out_of_order,
        "bars_received_min": min((sum(1 for k in keys if k in c["received"]["bar.closed"]) for c in watched["clients"]),
                                 default=0),
        "bars_without_prediction": sum(1 for row in rows if row["prediction_id"] is None),
        "bars_without_recommendation": sum(1 for row in rows if row["recommendations"] == 0),
        # As first pushed: pending (waits for a person), blocked (risk said no, with reasons), expired (a newer bar
        # had closed before it was sized).
        "recommendations_pushed": pushed_states,
        "workflow_errors": sum(1 for row in rows if row["error"]),
        "recommendation_fanout_spread_ms": _percentiles(spread),
        "client_connections_closed": sum(1 for client in watched["clients"] if client["closed"] is not None),
        "hops_ms": _hops(rows, _receipts(rows, watched)),
    }


def _out_of_order(received: dict, keys: set) -> int:
    """First messages about one of `keys` (the run's bars) that reached the client after one about a newer bar."""
    newest, count = None, 0
    for key, _ in sorted(((k, v[1]) for k, v in received.items() if k in keys), key=lambda item: item[1]):
        if newest is not None and key < newest:
            count += 1
        newest = key if newest is None else max(newest, key)
    return count


def _receipts(rows: list[dict], watched: dict) -> list[tuple[dict, float]]:
    """(row, time) of every client's first receipt of each bar's recommendation."""
    return [(row, client["received"]["recommendation.updated"][row["key"]][0])
            for row in rows for client in watched["clients"]
            if row["key"] in client["received"]["recommendation.updated"]]


def _hops(rows: list[dict], receipts: list[tuple[dict, float]]) -> dict:
    """Each hop's p50/p95/p99 in ms and its share of the mean path (commit to the recommendation received)."""
    hops = {name: [(row[end] - row[start]) * 1000 for row in rows if row[end] is not None and row[start] is not None]
            for name, start, end in HOPS}
    # The recommendation is pushed when its sizing commits, just before decided_at is written: "push" can be < 0.
    hops["push"] = [(received - row["decided"]) * 1000 for row, received in receipts if row["decided"] is not None]
    means = {name: sum(values) / len(values) for name, values in hops.items() if values}
    total = sum(means.values())
    return {name: {**(_percentiles(values, with_max=False) or {}),
                   "mean": round(means[name], 2) if name in means else None,
                   "share": round(means[name] / total, 3) if name in means and total > 0 else None}
            for name, values in hops.items()}


def _targets_met(runs: list[dict]) -> bool | None:
    run = next((r for r in runs if r["clients"] == TARGETS["clients"]), None)
    if run is None or run["latency_ms"]["recommendation"] is None:
        return None
    latency = run["latency_ms"]["recommendation"]
    return (latency["p50"] <= TARGETS["recommendation_p50_ms"] and latency["p99"] <= TARGETS["recommendation_p99_ms"]
            and run["missed"] == TARGETS["missed"])


# --- processes -----------------------------------------------------------------------------------------------------

class _Process:
    """A child in its own process group (everything it forks goes down with it), its output in a log file."""

    def __init__(self, name: str, command: list[str], *, env: dict, logs: Path, stdout_pipe: bool = False):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "wb")  # a file, not a pipe: a chatty child never blocks on a full pipe
        self.process = subprocess.Popen(command, cwd=BASE_DIR, env=env, start_new_session=True,
                                        stdout=subprocess.PIPE if stdout_pipe else self._log,
                                        stderr=self._log if stdout_pipe else subprocess.STDOUT)

    def wait_for_line(self, word: str, timeout: float) -> str:
        """The first line of its stdout that starts with `word` (the client process says when it is ready)."""
        deadline = time.monotonic() + timeout
        pipe = self.process.stdout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([pipe], [], [], 0.2)
            if readable:
                line = pipe.readline().decode(errors="replace")
                if line.startswith(word):
                    return line
                if not line and self.process.poll() is not None:
                    break
            elif self.process.poll() is not None:
                break
        raise RuntimeError(f"{self.name} did not say {word!r} within {timeout:.0f}s:\n{self.tail()}")

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Stragglers (Celery's pool children, uvicorn's) must not outlive the bench and hold its database open.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(f"  [{self.name}] {line}" for line in text.splitlines()[-lines:])


class _Stack:
    def __init__(self, logs: Path):
        self.logs = logs
        self.processes: list[_Process] = []
        self.reader = None

    def start(self, name: str, command: list[str], *, env: dict, stdout_pipe: bool = False) -> _Process:
        process = _Process(name, command, env=env, logs=self.logs, stdout_pipe=stdout_pipe)
        self.processes.append(process)
        return process

    def run(self, name: str, command: list[str], *, env: dict, timeout: float) -> None:
        process = self.start(name, command, env=env)
        try:
            code = process.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} did not finish within {timeout:.0f}s:\n{process.tail()}") from None
        if code != 0:
            raise RuntimeError(f"{name} exited with code {code}:\n{process.tail()}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running process group (web, workers with their pool, beat, clients)."""
        return {p.name: _cpu_seconds(p.process.pid) for p in self.processes if p.process.poll() is None
                and not p.name.startswith("feed")}

    def tails(self) -> str:
        return "\n".join(process.tail(15) for process in self.processes if process.process.poll() is None)

    def stop_all(self) -> None:
        """Newest first: the feed and the clients, then beat, the workers, the web server."""
        if self.reader is not None:
            self.reader.close()
        for process in reversed(self.processes):
            process.stop()


def _cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux /proc; 0 elsewhere)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it exited meanwhile
            if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ..., utime (12th), stime (13th)
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def _celery() -> str:
    return str(Path(sys.executable).with_name("celery"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env(*, database_url: str, redis_url: str, var_dir: Path, prefix: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return {**env, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": secrets.token_urlsafe(50),
            "MINHOS_INSECURE_HTTP": "1", "MINHOS_VAR_DIR": str(var_dir), "CHANNELS_PREFIX": prefix,
            "CACHE_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
            # The caller's settings module (a variant under test), else the project's.
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "minhos_site.settings")}


def _wait_ready(url: str, stack: _Stack) -> None:
    """/healthz answers 200 and names both per-bar queues' workers ok (beat sends them a heartbeat every 5 s)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        for process in stack.processes:
            code = process.process.poll()
            if code is not None and process.name in ("web", "worker-trading", "worker-inference", "beat"):
                raise RuntimeError(f"{process.name} exited with code {code} during start-up:\n{process.tail()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            status, body = None, str(error).encode()
        last = f"{status}: {body[:500].decode(errors='replace')}"
        if status == 200:
            queues = json.loads(body)["components"]["workers"]["queues"]
            if all(queues.get(queue, {}).get("status") == "ok" for queue in ("trading", "inference")):
                return
        time.sleep(0.5)
    raise RuntimeError(f"not ready within {READY_TIMEOUT:.0f}s (last /healthz {last}):\n{stack.tails()}")


# --- PostgreSQL and Redis of its own -------------------------------------------------------------------------------

def _database_server(database_url: str | None) -> dict:
    from django.conf import settings
    from django.core.management.base import CommandError

    if database_url:
        import environ

        config = environ.Env.db_url_config(database_url)
    else:
        config = settings.DATABASES["default"]
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise CommandError("bench e2e runs deployment mode: set DATABASE_URL to a PostgreSQL server "
                           "(e.g. postgres://postgres@127.0.0.1:5432/postgres) and REDIS_URL")
    return {"host": config.get("HOST") or "127.0.0.1", "port": str(config.get("PORT") or 5432),
            "user": config.get("USER") or "", "password": config.get("PASSWORD") or ""}


def _connect(server: dict, database: str):
    import psycopg

    return psycopg.connect(host=server["host"], port=server["port"], user=server["user"] or None,
                           password=server["password"] or None, dbname=database, autocommit=True)


def _url_with_database(server: dict, database: str) -> str:
    user, password = quote(server["user"], safe=""), quote(server["password"], safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{server['host']}:{server['port']}/{quote(database, safe='')}"


def _database_create(server: dict, database: str) -> None:
    """The database, made afresh; refused while anything is connected to it (another bench e2e running)."""
    from django.core.management.base import CommandError
    from psycopg import sql

    with _connect(server, "postgres") as connection:
        sessions = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                      [database]).fetchone()[0]
        if sessions:
            raise CommandError(f"database {database} has {sessions} open session(s): is another bench e2e running? "
                               "It is dropped and made afresh, so it must be nobody else's.")
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _database_drop(server: dict, database: str) -> None:
    from psycopg import sql

    with _connect(server, "postgres") as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def _redis_url(redis_url: str | None, db: int) -> str:
    from django.conf import settings
    from django.core.management.base import CommandError

    url = redis_url or settings.REDIS_URL
    if not url:
        raise CommandError("bench e2e runs deployment mode: set REDIS_URL (e.g. redis://127.0.0.1:6379/0) "
                           "and DATABASE_URL")
    if not 0 <= db <= 15:
        raise CommandError(f"--redis-db must be a Redis logical database 0-15, not {db}")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


CLAIM_KEY = "minhos:bench-e2e:running"


def _redis_claim(url: str, *, flush: bool) -> None:
    """The Redis database must be empty (another deployment's queues and groups must never mix with ours)."""
    import redis
    from django.core.management.base import CommandError

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = client.dbsize()
        if keys and not flush:
            raise CommandError(
                f"Redis database {url} holds {keys} keys: bench e2e needs an empty one of its own (its Celery queues "
                "and channel groups must not mix with a running deployment's). Pick another with --redis-db N, or "
                "empty this one with --flush if it holds nothing you need.")
        if keys:
            client.flushdb()
        if not client.set(CLAIM_KEY, str(os.getpid()), nx=True):
            raise CommandError(f"another bench e2e claimed Redis database {url} just now")
    finally:
        client.close()


def _redis_release(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


class _Reader:
    """Reads the bench database's BarWorkflow rows (plain SQL: the ORM here is bound to the configured database)."""

    def __init__(self, server: dict, database: str):
        from trading.models import BarWorkflow

        self.connection = _connect(server, database)
        self.workflow = BarWorkflow._meta.db_table

    def latest_timestamp(self):
        row = self.connection.execute(f"SELECT max(timestamp) FROM {self.workflow}").fetchone()
        return row[0] or datetime(1970, 1, 1, tzinfo=UTC)

    def progress(self, *, after) -> tuple[int, int]:
        return self.connection.execute(
            f"SELECT count(*) FILTER (WHERE stage = 'done'), count(*) FROM {self.workflow} WHERE timestamp > %s",
            [after]).fetchone()

    def rows(self, *, after) -> list[dict]:
        columns = ("stored", "settle_started", "settled", "decide_started", "predicted", "decided")
        epochs = ", ".join(f"extract(epoch FROM w.{c}_at)::float8" for c in columns)
        query = (f"SELECT w.timestamp, {epochs}, w.prediction_id, w.recommendations, w.error "
                 f"FROM {self.workflow} w WHERE w.timestamp > %s ORDER BY w.timestamp")
        return [{"key": _bar_key(record[0]), **dict(zip(columns, record[1:7], strict=True)),
                 "prediction_id": record[7], "recommendations": record[8], "error": record[9]}
                for record in self.connection.execute(query, [after]).fetchall()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def _bar_key(moment) -> float:
    """A bar's time as the key both sides agree on: POSIX seconds."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return float(moment.timestamp())


def _parse_counts(clients) -> list[int]:
    from django.core.management.base import CommandError

    try:
        counts = [int(part) for part in str(clients).split(",")] if isinstance(clients, str) else list(clients)
    except ValueError:
        counts = []
    if not counts or any(count < 1 for count in counts):
        raise CommandError(f"--clients must be client counts >= 1 separated by commas (e.g. 1,100), not {clients!r}")
    return counts


def _parse_concurrency(text: str) -> tuple[int, int]:
    from django.core.management.base import CommandError

    try:
        parts = [int(part) for part in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise CommandError(f"--concurrency is the worker processes of the trading and the inference queue, e.g. 1,2 "
                           f"(or one number for both), not {text!r}")
    return parts[0], parts[1]


# --- child process: set up the fresh database ----------------------------------------------------------------------

def _setup_main(args) -> None:
    """Store the demo market's history, train and promote a model, sign in one user N times (on a migrated
    database)."""
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.core.management import call_command

    from trading import selectors, services

    call_command("generate_bars", "--symbol", SYMBOL, "--timeframe", TIMEFRAME, "--days", str(args.days),
                 "--seed", str(args.seed), "--demo-signal")
    call_command("train", "--symbol", SYMBOL, "--timeframe", TIMEFRAME, "--seed", str(args.seed), "--promote",
                 *(["--fast"] if args.preset == "fast" else []))
    # The default paper account, auto-trading off: recommendations wait for a person, as deployed.
    instrument = selectors.instrument_get(symbol=SYMBOL)
    config = services.trading_config_get(account=services.account_default_get(), instrument=instrument)
    if config.account.auto_trading:
        raise SystemExit("the default account trades automatically: the bench measures recommendations that wait")
    user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(24),
                                                is_staff=True, is_superuser=True)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = []
    for _ in range(args.sessions):
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        keys.append(session.session_key)
    Path(args.out).write_text(json.dumps(keys))


# --- child process: the websocket clients --------------------------------------------------------------------------

def _clients_main(args) -> None:
    sessions = json.loads(Path(args.sessions).read_text())
    asyncio.run(_watch(args.url, args.origin, sessions, Path(args.out), deflate=not args.no_deflate))


async def _watch(url: str, origin: str, sessions: list[str], out: Path, *, deflate: bool = True) -> None:
    """Open one websocket per session, say "ready", record each message's receipt until SIGINT/SIGTERM, write them.

    Per client and message type, the first receipt of each bar (later messages of a bar, such as its recommendation
    expiring, are not the decision arriving): (time, the client's receipt sequence number, the state it announced).
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clients = [{"received": {t: {} for t in WATCHED}, "closed": None} for _ in sessions]
    sockets = [None] * len(sessions)
    opening = asyncio.Semaphore(20)
    started = time.monotonic()

    async def open_one(index: int) -> None:
        async with opening:
            # Like a browser: the session cookie and the page's origin, no proxy, per-message deflate offered.
            sockets[index] = socket_ = await connect(
                url, additional_headers={"Cookie": f"sessionid={sessions[index]}", "Origin": origin}, proxy=None,
                open_timeout=CLIENTS_TIMEOUT, max_queue=None, compression="deflate" if deflate else None)
            greeting = json.loads(await asyncio.wait_for(socket_.recv(), CLIENTS_TIMEOUT))
            if greeting.get("type") != "feed.status":
                raise RuntimeError(f"unexpected first message {greeting.get('type')!r}")

    async def listen(index: int) -> None:
        received = clients[index]["received"]
        sequence = 0
        try:
            async for raw in sockets[index]:
                now = time.time()
                message = json.loads(raw)
                kind = message.get("type")
                if kind not in WATCHED:
                    continue
                key = _bar_key(message["bar"]["t"] if kind == "bar.closed" else message["bar_timestamp"])
                if key not in received[kind]:
                    sequence += 1
                    received[kind][key] = (now, sequence, message.get("state"))
        except ConnectionClosed as closed:
            clients[index]["closed"] = closed.rcvd.code if closed.rcvd else 1006

    await asyncio.gather(*(open_one(i) for i in range(len(sessions))))
    print(f"ready {len(sessions)} in {time.monotonic() - started:.1f}s", flush=True)
    listeners = [asyncio.create_task(listen(i)) for i in range(len(sessions))]
    lags = []

    async def lag_probe() -> None:
        # How late this process's event loop wakes up: receipt times are late by as much when it is busy.
        while True:
            planned = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            lags.append((time.monotonic() - planned) * 1000)

    probe = asyncio.create_task(lag_probe())
    cpu, wall = time.process_time(), time.monotonic()
    await stop.wait()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    for task in [*listeners, probe]:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    await asyncio.gather(*(s.close() for s in sockets if s is not None), return_exceptions=True)
    lags.sort()
    payload = {"clients": [{**c, "received": {t: list(v.items()) for t, v in c["received"].items()}}
                           for c in clients],
               "process": {"cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "loop_lag_ms": {
                   "p50": round(lags[len(lags) // 2], 1) if lags else None,
                   "p99": round(lags[int(len(lags) * 0.99)], 1) if lags else None,
                   "max": round(lags[-1], 1) if lags else None}}}
    out.write_text(json.dumps(payload))


def _load_watched(path: Path) -> dict:
    watched = json.loads(path.read_text())
    for client in watched["clients"]:
        client["received"] = {t: {float(k): tuple(v) for k, v in pairs} for t, pairs in client["received"].items()}
    return watched


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trading.bench_e2e", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    setup = roles.add_parser("setup")
    setup.add_argument("--days", type=int, required=True)
    setup.add_argument("--seed", type=int, required=True)
    setup.add_argument("--preset", required=True)
    setup.add_argument("--sessions", type=int, required=True)
    setup.add_argument("--out", required=True)
    clients = roles.add_parser("clients")
    clients.add_argument("--url", required=True)
    clients.add_argument("--origin", required=True)
    clients.add_argument("--sessions", required=True)
    clients.add_argument("--out", required=True)
    clients.add_argument("--no-deflate", action="store_true")
    args = parser.parse_args(argv)
    (_setup_main if args.role == "setup" else _clients_main)(args)


if __name__ == "__main__":
    main()
