"""End to end through a Redis outage: headless Chromium on a live server whose Redis (a private redis-server) is
killed and started again. The Stream badge says "Stream: down", /healthz says Redis is what is down, the page
reconnects by itself once Redis is back and catches up (resume) with the bar stored meanwhile; the server logs the
outage once, without a traceback."""
import os
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from trading.models import Bar
from trading.tests.edges.test_dashboard_browser import PASSWORD, USERNAME, log_in, seed_market
from trading.tests.live import LiveServer, database_url, in_thread, launch_chromium
from trading.tests.redis_server import private_redis  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.deployment,
    pytest.mark.django_db(transaction=True),  # committed rows, visible to the server process
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="the server subprocess needs the shared PostgreSQL test database",
    ),
]


@pytest.fixture
def server(transactional_db, private_redis, tmp_path, request):
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    server = LiveServer(
        env={
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": private_redis.url(),
            "SECRET_KEY": django_settings.SECRET_KEY,
            "MINHOS_VAR_DIR": str(django_settings.VAR_DIR),
            "CHANNELS_PREFIX": prefix,
            "CONN_MAX_AGE": "0",
        },
        log_path=tmp_path / "server.log",
    )
    request.addfinalizer(server.stop)
    server.wait_until_healthy()
    return server


@pytest.fixture
def market(transactional_db, django_user_model):
    django_user_model.objects.create_user(username=USERNAME, password=PASSWORD)
    return seed_market(timezone.now())


@pytest.fixture
def page(server, market):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 860}).new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def test_stream_down_names_redis_then_reconnects_and_catches_up(server, private_redis, market, page):
    nq, last = market
    page_errors = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    log_in(page, server)
    page.wait_for_selector('#status-strip[data-ws-state="open"]')
    page.wait_for_selector('#chart[data-ready="true"]')
    assert page.is_hidden("#stream-detail")

    private_redis.stop()

    page.wait_for_selector('#status-strip[data-ws-state="down"]')
    assert page.text_content("#ws-state") == "Stream: down"
    assert "no live stream" in page.get_attribute("#ws-state", "title")
    page.wait_for_selector('#status-strip[data-health-down="redis"]')
    assert page.text_content("#stream-detail") == "Down on the server: redis."
    assert page.is_visible("#stream-detail")

    # A bar closes during the outage: stored, but no push reaches anyone.
    missed = Bar(instrument=nq, timeframe="1m", timestamp=last.timestamp + timedelta(minutes=1),
                 open=last.close, high=last.close + Decimal("5"), low=last.close - Decimal("1"),
                 close=last.close + Decimal("3.25"), volume=Decimal(777))
    in_thread(missed.save)
    assert page.get_attribute("#status-strip", "data-ws-state") == "down"

    private_redis.start()

    page.wait_for_selector('#status-strip[data-ws-state="open"]', timeout=40_000)
    assert page.is_hidden("#stream-detail")
    assert page.text_content("#ws-state") == "Live"
    expected_time = missed.timestamp.isoformat().replace("+00:00", "Z")
    page.wait_for_function(
        "time => document.getElementById('chart').dataset.lastBarTime === time", arg=expected_time)
    assert page.get_attribute("#status-strip", "data-resumed-bars") == "1"

    log = server.log_text()
    assert log.count("Live stream down") == 1, log
    assert log.count("Live stream back") == 1, log
    assert "Traceback" not in log, log
    assert page_errors == []
