"""The deployment mode for real: the Procfile's web, a worker per queue, beat and the feed as separate processes under
honcho (and under supervisord, which restarts a role that dies), talking through PostgreSQL and Redis, with a
websocket client watching what reaches the browser."""
import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import websockets
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from trading.domain.bars import BarData
from trading.models import AuditEvent, Bar, BarWorkflow, FeedStatus, WorkerHeartbeat
from trading.services import bar_store_closed
from trading.tests.decisions import user_with
from trading.tests.factories import InstrumentFactory
from trading.tests.live import LiveServer, database_url, free_port, wait_for_other_database_sessions_to_end
from trading.tests.redis_server import PrivateRedis

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]
QUEUES = ("trading", "inference", "training")
WAIT_SECONDS = 90


@pytest.fixture
def procfile_stack(channel_prefix, tmp_path, request):
    if not (django_settings.REDIS_URL and connection.vendor == "postgresql"):
        pytest.fail("the deployment test needs DATABASE_URL (PostgreSQL) and REDIS_URL; run it through make test")
    # A Redis of the stack's own: its queues have the production names, which no parallel test may share.
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    request.addfinalizer(redis_server.stop)
    nq = InstrumentFactory(symbol="NQ")
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    with eager_tasks():  # the history's last bar is settled here, before the stack runs
        bar_store_closed(instrument=nq, timeframe="1m", bar=BarData(start, 18000, 18001, 17999, 18000.5, 10))
    stack = LiveServer(
        command=[str(django_settings.BASE_DIR / ".venv/bin/honcho"), "start", "-f", "Procfile", "-p", "{port}"],
        env={
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": redis_server.url(),
            "SECRET_KEY": django_settings.SECRET_KEY,
            "MINHOS_VAR_DIR": str(tmp_path),
            "CHANNELS_PREFIX": channel_prefix,
            "CONN_MAX_AGE": "0",
            "FEED_PACE": "0.5",
            "FEED_DEMO_SIGNAL": "1",
            "TRADING_CONCURRENCY": "1",
            "INFERENCE_CONCURRENCY": "1",
            "TRAINING_CONCURRENCY": "1",
        },
        log_path=tmp_path / "honcho.log",
    )
    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(stack.stop)  # finalizers run last-in first-out: stop first, then wait
    stack.wait_until_healthy()
    return nq, stack


@contextlib.contextmanager
def eager_tasks():
    from minhos_site.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def wait_for(condition, stack, what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}:\n{stack.log_tail()}")
        time.sleep(0.2)


async def _watch(url, cookie, origin):
    """Collect messages until a fed bar and a periodic (beat -> worker) status both arrived."""
    seen = {"bar.closed": [], "feed.status": []}
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        while not (seen["bar.closed"] and len(seen["feed.status"]) >= 2):
            message = json.loads(await ws.recv())
            seen[message["type"]].append(message)
    return seen


def test_procfile_runs_web_worker_beat_and_feed_as_separate_processes(procfile_stack, django_user_model):
    nq, stack = procfile_stack
    user = django_user_model.objects.create_user(username="ops", password="deploy-Pass-1")
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    ws_url = f"ws://127.0.0.1:{stack.port}/ws/market/NQ/1m/"

    seen = asyncio.run(asyncio.wait_for(_watch(ws_url, cookie, stack.url), timeout=WAIT_SECONDS))

    # The feed process stored the bar in PostgreSQL and its announcement crossed Redis to the web process.
    pushed = seen["bar.closed"][0]["bar"]
    stored = Bar.objects.get(instrument=nq, timeframe="1m", timestamp=pushed["t"].replace("Z", "+00:00"))
    assert float(stored.close) == pushed["c"]
    # The first status is the consumer's greeting; later ones came from beat's schedule through a worker.
    assert seen["feed.status"][-1]["running"] is True
    assert seen["feed.status"][-1]["source"] == "synthetic"
    # Each queue has its worker: beat's heartbeat task for it was taken (by a process of this stack: the queues of
    # this test's private Redis database).
    wait_for(lambda: set(WorkerHeartbeat.objects.values_list("queue", flat=True)) >= set(QUEUES), stack,
             "a heartbeat from every queue's worker")
    # The fed bars went through their workflow in the worker processes: settled (trading queue), then decided
    # (inference queue; no model here, so nothing to predict), in bar order.
    wait_for(lambda: BarWorkflow.objects.filter(bar__timestamp__gte=pushed["t"].replace("Z", "+00:00"),
                                                stage="done").exists(), stack, "the fed bar's workflow done")
    done = list(BarWorkflow.objects.filter(stage="done").order_by("timestamp"))
    assert all(w.settled_at <= w.decide_started_at <= w.decided_at for w in done)
    assert [w.settled_at for w in done] == sorted(w.settled_at for w in done)
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").running is True

    stack.stop()
    log = stack.log_text()
    for process in ("web.1", "worker_trading.1", "worker_inference.1", "worker_training.1", "beat.1", "feed.1"):
        assert f"{process} started" in log, f"{process} did not start:\n{log[-3000:]}"
    # SIGTERM, forwarded by honcho, stops the feed cleanly: it marks itself stopped on the way out.
    assert "feed stopped after" in log
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").running is False


@pytest.mark.parametrize(("trusted", "recorded"), [("", "127.0.0.1"), ("127.0.0.1", "6.6.6.6")])
def test_procfile_web_believes_x_forwarded_for_only_from_the_configured_proxies(tmp_path, request, trusted,
                                                                                  recorded):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user_with("operator", "trading.engage_kill_switch"))
    web = LiveServer(
        command=[str(django_settings.BASE_DIR / ".venv/bin/honcho"), "start", "-f", "Procfile", "-p", "{port}", "web"],
        env={"DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": django_settings.REDIS_URL,
             "SECRET_KEY": django_settings.SECRET_KEY, "MINHOS_VAR_DIR": str(tmp_path), "CONN_MAX_AGE": "0",
             "MINHOS_TRUSTED_PROXIES": trusted},
        log_path=tmp_path / "web.log",
    )
    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(web.stop)
    web.wait_until_healthy()

    forged = urllib.request.Request(
        f"{web.url}/api/kill-switch/", data=json.dumps({"engaged": True, "reason": "drill"}).encode(),
        headers={"Authorization": f"Token {token.key}", "Content-Type": "application/json",
                 "X-Forwarded-For": "6.6.6.6"})
    with urllib.request.urlopen(forged, timeout=WAIT_SECONDS) as response:
        assert response.status == 200

    assert AuditEvent.objects.get(action=AuditEvent.Action.KILL_SWITCH).client_address == recorded


def _descendants(pid: int) -> dict[int, str]:
    """Every process under `pid` (from /proc), with its command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
            todo.append(child)
    return found


def _pids(supervisor: LiveServer, needle: str) -> set[int]:
    return {pid for pid, command in _descendants(supervisor.process.pid).items() if needle in command}


def test_under_supervisord_a_killed_worker_is_restarted_and_the_other_roles_keep_running(tmp_path, request):
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    request.addfinalizer(redis_server.stop)
    port = free_port()
    supervisor = LiveServer(
        command=[str(django_settings.BASE_DIR / "scripts/supervise.sh")], port=port,
        env={"DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": redis_server.url(),
             "SECRET_KEY": django_settings.SECRET_KEY, "MINHOS_VAR_DIR": str(tmp_path), "PORT": str(port),
             "MINHOS_LOG_DIR": str(tmp_path / "log"), "MINHOS_ROLES": "web,worker_trading,beat",
             "TRADING_CONCURRENCY": "1"},
        log_path=tmp_path / "supervisord.out",
    )
    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(supervisor.stop)
    supervisor.wait_until_healthy()
    wait_for(lambda: WorkerHeartbeat.objects.filter(queue="trading").exists(), supervisor,
             "the trading worker's first heartbeat")
    web, beat = _pids(supervisor, "uvicorn minhos_site.asgi"), _pids(supervisor, "celery -A minhos_site beat")
    worker = _pids(supervisor, "worker -Q trading")
    assert web and beat and worker
    assert not _pids(supervisor, "worker -Q inference")  # roles not asked for on this machine do not run

    killed_at = timezone.now()
    for pid in worker:
        os.kill(pid, signal.SIGKILL)

    wait_for(lambda: (_pids(supervisor, "worker -Q trading") - worker)
             and WorkerHeartbeat.objects.filter(queue="trading", seen_at__gt=killed_at).exists(), supervisor,
             "a new trading worker serving its queue")
    assert _pids(supervisor, "uvicorn minhos_site.asgi") == web  # the others never stopped
    assert _pids(supervisor, "celery -A minhos_site beat") == beat
    with urllib.request.urlopen(f"{supervisor.url}/healthz", timeout=WAIT_SECONDS) as response:
        assert json.loads(response.read())["components"]["workers"]["status"] != "down"
