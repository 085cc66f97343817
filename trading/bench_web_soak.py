"""`manage.py bench web-soak`: does the web process's memory level off under dashboards?

Deployment mode for real, as `bench e2e` brings it up (a database of its own, an empty Redis database, web, a
trading and an inference worker, beat, the synthetic feed at `pace` seconds a bar), then for `minutes`: `clients`
dashboard websockets (`churn` of them reconnect every minute and ask for what they missed, as a reloaded page does)
and one session polling what the dashboard and the monitoring page read, every `poll` seconds. The web process's
resident memory (RSS, /proc) is sampled every `sample` seconds.

Reports the RSS when every client is connected (`start`), at 10, 30 and 60 minutes when reached, at the end, its
peak, and its slope over the second half of the run (MB per hour, least squares: ~0 when it has levelled off); and,
once every client has closed, the channel-group members left in Redis (a connection that ended without leaving its
groups is sent, and the web process buffers, every push for a day).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from trading import bench_e2e as e2e

# What an open dashboard and monitoring page read (their pages, the overlays an account push re-reads, the JSON the
# monitoring page refreshes) and what a script polling the API would.
POLLED = ("/", "/api/kill-switch/", "/api/recommendations/", "/api/accounts/", "/api/positions/", "/api/orders/",
          "/chart/overlays/?symbol=NQ&timeframe=1m&account=", "/monitoring/data/", "/healthz",
          "/monitoring/alerts/summary/", "/monitoring/")
CHURN_SECONDS = 60.0
GROUPS_LEFT_TIMEOUT = 10.0


def bench_web_soak(
    *,
    minutes: float = 10.0,
    clients: int = 50,
    pace: float = 1.0,
    poll: float = 3.0,
    sample: float = 30.0,
    churn: int = 5,
    redis_db: int = 13,
    flush: bool = False,
    history_days: int = 5,
    seed: int = 42,
    database: str = "minhos_bench_web_soak",
    database_url: str | None = None,
    redis_url: str | None = None,
    keep: bool = False,
    progress: bool | None = None,
) -> dict:
    from django.core.management.base import CommandError

    if not minutes > 0 or clients < 1 or not pace > 0 or not poll > 0 or not sample > 0 or not 0 <= churn <= clients:
        raise CommandError("bench web-soak: --minutes, --pace, the poll and sample periods must be > 0, --clients "
                           ">= 1, and the reconnecting clients between 0 and --clients")
    server = e2e._database_server(database_url)
    redis_url = e2e._redis_url(redis_url, redis_db)
    progress = sys.stderr.isatty() if progress is None else progress
    say = (lambda message: print(f"bench web-soak: {message}", file=sys.stderr, flush=True)) if progress else (
        lambda message: None)

    logs = Path(tempfile.mkdtemp(prefix="minhos-bench-web-soak-"))
    stack = e2e._Stack(logs)
    succeeded = redis_claimed = database_made = False
    previous_sigterm = e2e._stop_cleanly_on_sigterm()
    try:
        e2e._redis_claim(redis_url, flush=flush)
        redis_claimed = True
        e2e._database_create(server, database)
        database_made = True
        prefix = f"bench-web-soak-{secrets.token_hex(4)}"
        env = e2e._child_env(database_url=e2e._url_with_database(server, database), redis_url=redis_url,
                             var_dir=logs, prefix=prefix)
        say(f"migrating {database}, then {history_days} days of history and a fast model...")
        stack.run("migrate", [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, timeout=600)
        sessions_file = logs / "sessions.json"
        stack.run("setup", [sys.executable, "-m", "trading.bench_e2e", "setup", "--days", str(history_days),
                            "--seed", str(seed), "--preset", "fast", "--sessions", str(clients + 1),
                            "--out", str(sessions_file)], env=env, timeout=900)
        sessions = json.loads(sessions_file.read_text())
        port = e2e._free_port()
        # The Procfile's web role.
        web = stack.start("web", [sys.executable, "-m", "uvicorn", "minhos_site.asgi:application", "--host",
                                  "127.0.0.1", "--port", str(port), "--no-access-log", "--ws-per-message-deflate",
                                  "false", "--forwarded-allow-ips", ""], env=env)
        for queues in ("trading,monitoring", "inference"):
            name = queues.split(",")[0]
            stack.start(f"worker-{name}", [e2e._celery(), "-A", "minhos_site", "worker", "-Q", queues, "--loglevel",
                                           "INFO", "--concurrency", "1", "-n", f"{name}-{prefix}@%h"], env=env)
        stack.start("beat", [e2e._celery(), "-A", "minhos_site", "beat", "--loglevel", "INFO",
                             "--schedule", str(logs / "celerybeat-schedule")], env=env)
        base = f"http://127.0.0.1:{port}"
        e2e._wait_ready(base, stack)
        stack.start("feed", [sys.executable, "manage.py", "run_feed", "--symbol", e2e.SYMBOL, "--timeframe",
                             e2e.TIMEFRAME, "--source", "synthetic", "--demo-signal", "--seed", str(seed),
                             "--pace", str(pace)], env=env)
        say(f"{clients} websocket clients ({churn} reconnecting every minute), polling every {poll:g}s, "
            f"for {minutes:g} min; RSS every {sample:g}s")
        soak = asyncio.run(_soak(stack, web.process.pid, base, sessions[:clients], sessions[-1], minutes=minutes,
                                 poll=poll, sample=sample, churn=churn, say=say))
        soak["groups_left_after_close"] = _groups_left(redis_url, prefix)
        result = {"bench": "web-soak", **soak,
                  "setup": {"minutes": minutes, "clients": clients, "reconnecting_clients": churn, "pace_s": pace,
                            "poll_s": poll, "sample_s": sample, "history_days": history_days,
                            "cpus": os.cpu_count(), "load_avg_after": [round(v, 2) for v in os.getloadavg()]}}
        succeeded = True
        return result
    except CommandError:
        raise
    except Exception as exc:
        kept = f"\n(logs kept in {logs})" if stack.processes else ""
        raise CommandError(f"bench web-soak failed: {type(exc).__name__}: {exc}{kept}") from exc
    finally:
        stack.stop_all()
        if redis_claimed:
            with contextlib.suppress(Exception):
                e2e._redis_release(redis_url)
        if database_made and not keep:
            with contextlib.suppress(Exception):
                e2e._database_drop(server, database)
        if (succeeded and not keep) or not stack.processes:
            shutil.rmtree(logs, ignore_errors=True)
        elif progress:
            print(f"bench web-soak: logs in {logs}", file=sys.stderr)
        if previous_sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)


async def _soak(stack, web_pid: int, base: str, sessions: list[str], poller_session: str, *, minutes, poll,
                sample, churn, say) -> dict:
    from websockets.asyncio.client import connect

    url = f"{base.replace('http', 'ws', 1)}/ws/market/{e2e.SYMBOL}/{e2e.TIMEFRAME}/"
    counts = Counter()
    http = Counter()
    stop = asyncio.Event()
    newest = {"t": None}
    last_error = {"text": None}
    connected = asyncio.Event()

    async def client(index: int) -> None:
        reconnecting = index < churn
        while not stop.is_set():
            try:
                async with connect(url, additional_headers={"Cookie": f"sessionid={sessions[index]}",
                                                            "Origin": base}, proxy=None, max_queue=None,
                                   open_timeout=e2e.CLIENTS_TIMEOUT, compression="deflate") as socket_:
                    await asyncio.wait_for(socket_.recv(), e2e.CLIENTS_TIMEOUT)  # feed.status
                    counts["opened"] += 1
                    if counts["opened"] == len(sessions):
                        connected.set()
                    if counts["opened"] > len(sessions) and newest["t"]:  # a reload: ask for what it missed
                        await socket_.send(json.dumps({"type": "resume", "since": newest["t"]}))
                    until = time.monotonic() + CHURN_SECONDS if reconnecting else float("inf")
                    while not stop.is_set() and time.monotonic() < until:
                        try:
                            message = json.loads(await asyncio.wait_for(socket_.recv(), 1.0))
                        except TimeoutError:
                            continue
                        counts["messages"] += 1
                        if message.get("type") == "bar.closed":
                            newest["t"] = message["bar"]["t"]
            except Exception as error:  # a refused or dropped connection: counted, tried again like the page does
                counts["errors"] += 1
                last_error["text"] = f"{type(error).__name__}: {error}"[:300]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)

    def get(path: str) -> int:
        request = urllib.request.Request(base + path, headers={"Cookie": f"sessionid={poller_session}",
                                                               "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError):
            return 0

    async def poller() -> None:
        for index in range(sys.maxsize):
            if stop.is_set():
                return
            path = POLLED[index % len(POLLED)]
            http[await asyncio.to_thread(get, path)] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)

    tasks = [asyncio.create_task(client(i)) for i in range(len(sessions))]
    await asyncio.wait_for(connected.wait(), e2e.CLIENTS_TIMEOUT)
    tasks.append(asyncio.create_task(poller()))
    samples = []
    started = time.monotonic()
    end = started + minutes * 60
    while True:
        elapsed = time.monotonic() - started
        samples.append((round(elapsed, 1), round(_rss_mb(web_pid), 1)))
        for process in stack.processes:
            if process.process.poll() is not None and process.name not in ("migrate", "setup"):
                raise RuntimeError(f"{process.name} exited with code {process.process.returncode}:\n"
                                   f"{process.tail()}")
        say(f"{elapsed / 60:5.1f} min: web RSS {samples[-1][1]} MB; {counts['messages']} messages, "
            f"{counts['opened']} opens, {dict(http)} HTTP")
        if time.monotonic() + 0.5 >= end:
            break
        await asyncio.sleep(min(sample, max(0.0, end - time.monotonic())))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"rss_mb": _rss_figures(samples), "slope_mb_per_h_second_half": _slope(samples[len(samples) // 2:]),
            "samples": samples, "clients": {**counts, "last_error": last_error["text"]},
            "http": {str(status): count for status, count in sorted(http.items())}}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _rss_figures(samples: list[tuple[float, float]]) -> dict:
    """At the start, the first sample at or after 10, 30 and 60 min (when reached), the end and the peak."""
    figures = {"start": samples[0][1]}
    for mark in (10, 30, 60):
        later = [rss for elapsed, rss in samples if elapsed >= mark * 60]
        if later:
            figures[f"{mark}min"] = later[0]
    figures["end"] = samples[-1][1]
    figures["peak"] = max(rss for _, rss in samples)
    return figures


def _slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares MB per hour; None under three samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if not spread:
        return None
    return round(sum((t - mean_t) * (r - mean_r) for t, r in samples) / spread * 3600, 2)


def _groups_left(redis_url: str, prefix: str) -> int:
    """Channels still in a group once every client has closed (0 when every connection left its groups; Redis drops
    a group's key with its last member)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        deadline = time.monotonic() + GROUPS_LEFT_TIMEOUT
        while True:
            left = sum(client.zcard(key) for key in client.scan_iter(f"{prefix}:group:*"))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)  # a poll interval: the web process leaves the groups as each close arrives
    finally:
        client.close()
