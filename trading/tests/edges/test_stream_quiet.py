"""A dashboard on a quiet market (nothing pushed for longer than the channel layer's blocking read) stays connected
and the live stream stays up, on the real web process (uvicorn, the deployment settings) and a private Redis.

channels_redis waits for a websocket's next message with a BZPOPMIN blocking 5 s; redis-py 8 reads each reply within
its default socket timeout, also 5 s. With nothing to deliver the reply came as the timeout fired: the read failed,
the socket was closed with 4503 and the stream reported down, every few seconds on a quiet market."""
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from trading.tests.factories import InstrumentFactory
from trading.tests.processes import process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

# channels_redis' brpop_timeout: two blocking reads with nothing to deliver, and some.
QUIET_SECONDS = 12.0


def test_a_dashboard_stays_connected_through_a_quiet_spell(process_stack):
    from websockets.sync.client import connect

    InstrumentFactory(symbol="NQ")
    user = get_user_model().objects.create_user(username="watcher", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    web = process_stack.web()

    with connect(f"ws://127.0.0.1:{web.port}/ws/market/NQ/1m/", proxy=None, open_timeout=20,
                 additional_headers={"Cookie": cookie, "Origin": web.url}) as socket_:
        assert '"feed.status"' in socket_.recv(timeout=20)
        started = time.monotonic()
        # Nothing is pushed (no feed, no beat): the only way out of this wait before it ends is a close.
        with pytest.raises(TimeoutError):
            socket_.recv(timeout=QUIET_SECONDS)
        assert time.monotonic() - started >= QUIET_SECONDS - 0.5

    assert "Live stream down" not in process_stack.logs("web")
