"""The README's run command for real: `manage.py start` in embedded mode (SQLite under var/, in-memory channel
layer, eager Celery), one process serving the dashboard, running the feed and the periodic jobs."""
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
import urllib.parse
import urllib.request

import websockets

from trading.tests.live import LiveServer

DEPLOYMENT_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CELERY_TASK_ALWAYS_EAGER")
WAIT_SECONDS = 180


def start(var_dir, port=None):
    server = LiveServer(
        command=[sys.executable, "manage.py", "start", "--port", "{port}", "--pace", "0.2", "--history-days", "1"],
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


async def first_bar_and_prediction(url, cookies, origin):
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    seen = {}
    async with websockets.connect(url, additional_headers={"Cookie": header, "Origin": origin}) as ws:
        while not {"bar.closed", "prediction.created"} <= seen.keys():
            message = json.loads(await ws.recv())
            seen.setdefault(message["type"], message)
    return seen["bar.closed"]["bar"], seen["prediction.created"]


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

        bar, prediction = asyncio.run(asyncio.wait_for(
            first_bar_and_prediction(f"ws://127.0.0.1:{server.port}/ws/market/NQ/1m/", cookies, server.url),
            WAIT_SECONDS))
        assert bar["h"] >= max(bar["o"], bar["c"]) >= min(bar["o"], bar["c"]) >= bar["l"] > 0
        # The first start trained a --fast version, and each new bar is predicted by it.
        assert "Model version 1 is active" in server.log_text()
        assert prediction["version"] == 1
        assert prediction["side"] in ("long", "short")
        assert prediction["confidence"] == max(prediction["p_long"], prediction["p_short"])
    finally:
        exit_code = server.stop(signal.SIGINT)
    assert exit_code == 0, server.log_tail()

    database = sqlite3.connect(tmp_path / "minhos.sqlite3")
    bars, running = database.execute(
        "SELECT (SELECT COUNT(*) FROM trading_bar), (SELECT running FROM trading_feedstatus)").fetchone()
    assert bars > 1000  # one day of generated history plus what the feed added
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
