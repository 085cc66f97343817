"""The deployment mode for real: the Procfile's web, worker, beat and feed as separate processes under honcho,
talking through PostgreSQL and Redis, with a websocket client watching what reaches the browser."""
import asyncio
import json
import urllib.request
from datetime import timedelta

import pytest
import websockets
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from trading.domain.bars import BarData
from trading.models import AuditEvent, Bar, FeedStatus
from trading.services import bar_store_closed
from trading.tasks import feed_status_broadcast
from trading.tests.decisions import user_with
from trading.tests.factories import InstrumentFactory
from trading.tests.live import LiveServer, database_url, wait_for_other_database_sessions_to_end

pytestmark = [pytest.mark.deployment, pytest.mark.django_db(transaction=True)]
WAIT_SECONDS = 90


@pytest.fixture
def procfile_stack(channel_prefix, tmp_path, request):
    if not (django_settings.REDIS_URL and connection.vendor == "postgresql"):
        pytest.fail("the deployment test needs DATABASE_URL (PostgreSQL) and REDIS_URL; run it through make test")
    nq = InstrumentFactory(symbol="NQ")
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    bar_store_closed(instrument=nq, timeframe="1m", bar=BarData(start, 18000, 18001, 17999, 18000.5, 10))
    stack = LiveServer(
        command=[str(django_settings.BASE_DIR / ".venv/bin/honcho"), "start", "-f", "Procfile", "-p", "{port}"],
        env={
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": django_settings.REDIS_URL,
            "SECRET_KEY": django_settings.SECRET_KEY,
            "MINHOS_VAR_DIR": str(tmp_path),
            "CHANNELS_PREFIX": channel_prefix,
            "CONN_MAX_AGE": "0",
            "FEED_PACE": "0.5",
            "CELERY_CONCURRENCY": "1",
        },
        log_path=tmp_path / "honcho.log",
    )
    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(stack.stop)  # finalizers run last-in first-out: stop first, then wait
    stack.wait_until_healthy()
    return nq, stack


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
    # A task sent from here is executed by the worker process, not inline.
    assert feed_status_broadcast.delay().get(timeout=WAIT_SECONDS) >= 1
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").running is True

    stack.stop()
    log = stack.log_text()
    for process in ("web.1", "worker.1", "beat.1", "feed.1"):
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
