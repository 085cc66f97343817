"""Helpers for end-to-end tests: a real ASGI server on the test database, and Debian's headless Chromium."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
# `playwright install` cannot download browsers here; the distribution's Chromium is driven instead.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 60.0
ARTIFACTS_DIR = Path(settings.BASE_DIR) / "test-artifacts"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the database this test process uses (the test database, once pytest-django made it)."""
    if settings_dict["ENGINE"] != "django.db.backends.postgresql":
        raise ValueError("the server subprocess can only share a PostgreSQL test database")
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"


class LiveServer:
    """A server in a subprocess (default: `uvicorn minhos_site.asgi:application` on `port`), in its own
    process group so everything it starts goes down with it; `stop()` must run (use it in a finalizer).
    `command` may contain "{port}", filled with the chosen port."""

    def __init__(self, *, env: dict[str, str], log_path: Path, port: int | None = None,
                 command: list[str] | None = None, remove_env: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.env = env
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # a file, not a pipe: a chatty server must never block on a full pipe
        command = command or [sys.executable, "-m", "uvicorn", "minhos_site.asgi:application", "--host",
                              "127.0.0.1", "--port", "{port}", "--no-access-log", "--lifespan", "off"]
        base_env = {k: v for k, v in os.environ.items() if k not in remove_env}
        self.process = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in command],
            cwd=settings.BASE_DIR,
            env={**base_env, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_healthy(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        """Poll /healthz until it answers 200; fail early with the server's log if the process dies."""
        attempts = max(1, int(timeout / 0.2))
        for _ in range(attempts):
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            # Doubles as the poll interval and as the check that the server is still alive.
            try:
                code = self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"the server exited with code {code} before answering:\n{self.log_tail()}")
        raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the leader (a process manager forwards it to its children), wait, return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Stragglers (e.g. Celery's pool children) must not outlive the test and hold its database open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def in_thread(function, /, *args, **kwargs):
    """Call Django code while Playwright's sync API is active: its event loop owns this thread, so the ORM
    and async_to_sync refuse to run here. The worker's database connection is closed before returning."""
    from django.db import connections

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def wait_for_other_database_sessions_to_end(timeout: float = 20.0) -> None:
    """After a server subprocess is killed, PostgreSQL ends its sessions a moment later; the test database
    cannot be dropped until it has. Polls pg_stat_activity (bounded) so teardown does not race it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    for _ in range(int(timeout / 0.1)):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0:
                return
            cursor.execute("SELECT pg_sleep(0.1)")
