"""The README's run command for real: `manage.py start` in embedded mode (SQLite under var/, in-memory channel
layer, eager Celery), one process serving the dashboard, running the feed and the periodic jobs; and the whole
decision loop a demo user sees on the planted demo market: a confident prediction, a pending recommendation,
Approve, the fill on the next bar, the position, and fills that reconcile with it."""
import asyncio
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets

from trading.domain.synthetic import DEMO_HISTORY_DAYS
from trading.tests.live import LiveServer

DEPLOYMENT_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CELERY_TASK_ALWAYS_EAGER")
WAIT_SECONDS = 180
# The demo's planted history: what `make run` trains its first --fast model on (start's default, spelled out).
HISTORY_DAYS = str(DEMO_HISTORY_DAYS)


def start(var_dir, port=None):
    server = LiveServer(
        command=[sys.executable, "manage.py", "start", "--port", "{port}", "--pace", "0.2",
                 "--history-days", HISTORY_DAYS],
        env={"MINHOS_VAR_DIR": str(var_dir)},
        remove_env=DEPLOYMENT_VARIABLES,
        log_path=var_dir / f"start-{port or 'first'}.log",
        port=port,
    )
    try:
        server.wait_until_healthy(timeout=WAIT_SECONDS)
    except Exception:
        server.stop()
        raise
    return server


def log_in(base_url, username, password):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{base_url}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(f"{base_url}/accounts/login/", data=data.encode(), headers={"Referer": base_url})
    page = opener.open(request)
    return page.geturl(), page.read().decode(), {c.name: c.value for c in jar}


def _body(message):
    """A websocket message's fields (the consumer spreads the payload at the top level next to "type")."""
    return message.get("payload", message)


def approve(base_url, cookies, recommendation_id):
    """POST /api/recommendations/<id>/approve/ as the logged-in user (session cookie + CSRF header)."""
    request = urllib.request.Request(
        f"{base_url}/api/recommendations/{recommendation_id}/approve/", data=b"", method="POST",
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
                 "X-CSRFToken": cookies["csrftoken"], "Referer": f"{base_url}/"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def decision_loop(url, cookies, base_url):
    """Watch the market's websocket through the whole loop: the first bar and prediction, then a pending
    recommendation (approved over the REST API), its execution on a later bar, and the account update after it.

    An approval can fail to end in a fill for honest reasons, and the loop then approves the next pending one:
    a 409 (stale by the time we asked), or an entry not taken because its next bar came after a gap (the
    recommendation is then expired). The position may already be flat again when the account is pushed: the
    bracket runs on the entry bar too, so the proof of the fill is the day's trade count and its commission."""
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    seen, refused, approved_id = {}, [], None
    async with websockets.connect(url, additional_headers={"Cookie": header, "Origin": base_url}) as ws:
        while True:
            message = json.loads(await ws.recv())
            kind, body = message["type"], _body(message)
            seen.setdefault(kind, message)
            if kind == "recommendation.updated" and approved_id is None and body["state"] == "pending":
                status, answer = await asyncio.to_thread(approve, base_url, cookies, body["id"])
                if status == 200:
                    approved_id, seen["approved"], seen["pending"] = body["id"], answer, body
                else:
                    refused.append((status, answer))
            elif kind == "recommendation.updated" and body["id"] == approved_id:
                if body["state"] == "executed":
                    seen["executed"] = body
                elif body["state"] == "expired":
                    refused.append(("entry not taken", body.get("reasons")))
                    approved_id = None
            elif kind == "account.updated" and "executed" in seen and body["account"]["trades_today"] >= 1:
                seen["account"] = body
                break
    return seen, refused


def test_start_brings_up_dashboard_feed_and_demo_login_in_embedded_mode(tmp_path):
    server = start(tmp_path)
    try:
        log = server.log_text()
        credentials = re.search(r"username (\S+)\s+password (\S+)", log)
        assert credentials, f"no demo credentials printed:\n{log}"
        username, password = credentials.groups()
        assert "embedded" in log

        anonymous = urllib.request.urlopen(f"{server.url}/")
        assert "/accounts/login/" in anonymous.geturl()

        landed, page, cookies = log_in(server.url, username, password)
        assert urllib.parse.urlsplit(landed).path == "/"
        assert "NQ" in page and "dashboard-initial" in page

        seen, refused = asyncio.run(asyncio.wait_for(
            decision_loop(f"ws://127.0.0.1:{server.port}/ws/market/NQ/1m/", cookies, server.url), WAIT_SECONDS))
        bar, prediction = _body(seen["bar.closed"])["bar"], _body(seen["prediction.created"])
        assert bar["h"] >= max(bar["o"], bar["c"]) >= min(bar["o"], bar["c"]) >= bar["l"] > 0
        # The first start trained a --fast version, and each new bar is predicted by it.
        assert "Model version 1 is active" in server.log_text()
        assert prediction["version"] == 1
        assert prediction["side"] in ("long", "short")
        assert prediction["confidence"] == max(prediction["p_long"], prediction["p_short"])
        # The demo market says plainly that it is planted, and its pattern gives confident recommendations:
        # one came up pending, was approved, and filled on a later bar into a position.
        assert "PLANTED pattern (continuing the stored series exactly)" in server.log_text()
        pending = seen["pending"]
        assert pending["contracts"] >= 1, pending
        assert seen["approved"]["state"] == "approved", (seen["approved"], refused)
        assert seen["executed"]["id"] == seen["approved"]["id"]
        account = seen["account"]["account"]
        open_positions = [p for p in seen["account"]["positions"] if float(p["quantity"]) != 0]
        # Filled: an open position, or one already closed by its bracket, whose commissions moved realised P&L.
        assert open_positions or float(account["realized_pnl"]) != 0, seen["account"]
    finally:
        exit_code = server.stop(signal.SIGINT)
    assert exit_code == 0, server.log_tail()

    # What the broker did adds up: the positions recomputed from the fills match the stored ones.
    reconciled = subprocess.run(
        [sys.executable, "manage.py", "reconcile", "--json"],
        env={**{k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARIABLES}, "MINHOS_VAR_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=WAIT_SECONDS,
    )
    assert reconciled.returncode == 0, reconciled.stderr
    report = json.loads(reconciled.stdout)
    assert report["differences"] == []
    assert report["fills_replayed"] >= 1

    database = sqlite3.connect(tmp_path / "minhos.sqlite3")
    bars, running = database.execute(
        "SELECT (SELECT COUNT(*) FROM trading_bar), (SELECT running FROM trading_feedstatus)").fetchone()
    assert bars > 2000  # the generated history plus what the feed added
    assert running == 0  # Ctrl-C stopped the feed cleanly

    again = start(tmp_path, port=server.port)
    try:
        second_log = again.log_text()
    finally:
        again.stop(signal.SIGINT)
    assert "Log in as demo" in second_log
    assert password not in second_log  # the credentials are printed once only
    assert "generating" not in second_log  # history is generated on the first start only
    assert "training a --fast version" not in second_log  # and the model is trained once


def test_start_refuses_a_port_in_use_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "start", "--port", str(port)],
            env={**{k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARIABLES},
                 "MINHOS_VAR_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_start_plants_the_demo_pattern_unless_told_not_to_and_says_so_in_its_help():
    from trading.management.commands.start import Command

    parser = Command().create_parser("manage.py", "start")
    assert parser.parse_args([]).demo_signal is True
    assert parser.parse_args(["--no-demo-signal"]).demo_signal is False
    assert "planted" in " ".join(parser.format_help().split())


@pytest.mark.parametrize(("regime", "said"), [("normal", None), ("volatility-shock", "Market regime: volatility shock (4x")])
def test_start_takes_the_feeds_regime_and_says_when_it_is_not_normal(regime, said):
    from io import StringIO
    from types import SimpleNamespace

    from trading.domain.synthetic import DEMO_SIGNAL, RegimeShift, SyntheticParams
    from trading.management.commands.start import Command

    assert Command().create_parser("manage.py", "start").parse_args(["--regime", regime]).regime == regime
    out = StringIO()
    source = SimpleNamespace(params=SyntheticParams(**DEMO_SIGNAL), shift=RegimeShift(kind=regime),
                             continues_exactly=True)
    Command(stdout=out)._describe_market({"demo_signal": True}, source)
    if said:
        assert said in out.getvalue()
    else:
        assert "regime" not in out.getvalue().lower()


def _asgi_client_seen(config, headers):
    """The client address the application behind `config`'s server stack is handed for one HTTP request."""
    seen = {}

    async def application(scope, receive, send):
        seen["client"] = scope["client"][0]

    config.app = application  # the server's middleware stack as configured, around a probe instead of Django
    config.load()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/", "raw_path": b"/", "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    asyncio.run(config.loaded_app(scope, None, None))
    return seen["client"]


@pytest.mark.parametrize(("trusted", "recorded"), [([], "127.0.0.1"), (["127.0.0.1"], "6.6.6.6")])
def test_start_believes_x_forwarded_for_only_from_the_configured_proxies(settings, trusted, recorded):
    from trading.management.commands.start import server_config

    settings.MINHOS_TRUSTED_PROXIES = trusted

    seen = _asgi_client_seen(server_config(host="127.0.0.1", port=8000), [(b"x-forwarded-for", b"6.6.6.6")])

    assert seen == recorded
