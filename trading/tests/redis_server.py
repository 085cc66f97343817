"""A private redis-server for outage tests: started on a free port, stopped and started again on the same port by
the test, never the shared Redis."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self, directory: Path):
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 6) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on {self.port} within {START_TIMEOUT:.0f}s")
                time.sleep(0.02)  # a poll interval, bounded by the deadline
        finally:
            client.close()

    def stop(self) -> None:
        """Kill it (an outage does not say goodbye) and wait for it to exit: the port then refuses connections."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def connections_received(self) -> int:
        client = redis.Redis(port=self.port)
        try:
            return client.info("stats")["total_connections_received"]
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path, settings):
    """A running private Redis that is this test's REDIS_URL and channel layer; stopped at the end."""
    server = PrivateRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "minhos_site.channel_layer.RedisChannelLayer",
                                           "CONFIG": {"hosts": [server.url()], "prefix": "outage-test"}}}
    yield server
    server.stop()


@pytest.fixture
def stream_was_up(monkeypatch):
    """The process's stream state starts up, whatever an earlier test left."""
    from datetime import UTC, datetime

    from trading import realtime

    monkeypatch.setattr(realtime, "_state", realtime.StreamState(up=True, since=datetime.now(UTC)))
