"""End to end: log in with headless Chromium and watch a newly stored bar reach the chart, and a new prediction the
prediction panel, without a reload."""
import os
import random
import uuid
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from mlcore import services as ml_services
from trading import realtime, selectors, services
from trading.domain.bars import BarData
from trading.models import Bar
from trading.tests.edges.test_dashboard_page import LONG_EDGE_ONLY, model_version, prediction
from trading.tests.factories import InstrumentFactory
from trading.tests.live import ARTIFACTS_DIR, LiveServer, database_url, in_thread, launch_chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.deployment,
    pytest.mark.django_db(transaction=True),  # committed rows, visible to the server process
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="the server subprocess needs the shared PostgreSQL test database and Redis as channel layer",
    ),
]

USERNAME, PASSWORD = "trader", "e2e-Pass-word-42"
HISTORY = 90
# Everything the page needs is served by us: Plotly.js included, no CDN, no web fonts.
ALLOWED_SCHEMES = {"http", "ws", "data", "blob"}


@pytest.fixture
def channel_prefix(settings) -> str:
    """A channel layer of our own, shared with the server process: parallel workers use the same Redis."""
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    layer = dict(django_settings.CHANNEL_LAYERS["default"])
    layer["CONFIG"] = {**layer.get("CONFIG", {}), "prefix": prefix}
    settings.CHANNEL_LAYERS = {"default": layer}
    return prefix


@pytest.fixture
def live_server_process(transactional_db, channel_prefix, tmp_path, request):
    server = LiveServer(
        env={
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": django_settings.REDIS_URL,
            "SECRET_KEY": django_settings.SECRET_KEY,
            "MINHOS_VAR_DIR": str(django_settings.VAR_DIR),
            "CHANNELS_PREFIX": channel_prefix,
            "CONN_MAX_AGE": "0",  # no connection kept between requests: nothing lingers after the test
        },
        log_path=tmp_path / "server.log",
    )
    request.addfinalizer(server.stop)
    server.wait_until_healthy()
    return server


@pytest.fixture
def market(transactional_db, django_user_model):
    """Made before the browser starts: Django's ORM refuses to run beside Playwright's event loop."""
    django_user_model.objects.create_user(username=USERNAME, password=PASSWORD)
    return seed_market(timezone.now())


@pytest.fixture
def page(live_server_process, market):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 860})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def seed_market(now):
    """NQ with a running feed and HISTORY one-minute bars (a seeded random walk on the tick grid) up to now."""
    nq = InstrumentFactory(symbol="NQ", name="E-mini Nasdaq-100 Futures")  # the seeded row unless flushed
    rng = random.Random(20240506)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=HISTORY)
    price, bars = 21_000.0, []
    for i in range(HISTORY):
        open_ = price
        close = max(1.0, open_ + rng.choice([-1, 1]) * rng.randint(0, 24) * 0.25)
        high = max(open_, close) + rng.randint(0, 10) * 0.25
        low = min(open_, close) - rng.randint(0, 10) * 0.25
        bars.append(Bar(
            instrument=nq, timeframe="1m", timestamp=start + timedelta(minutes=i),
            open=Decimal(str(open_)), high=Decimal(str(high)), low=Decimal(str(low)), close=Decimal(str(close)),
            volume=Decimal(rng.randint(150, 2400)),
        ))
        price = close
    Bar.objects.bulk_create(bars)
    services.feed_status_start(instrument=nq, timeframe="1m", source="synthetic", pace_seconds=1.0)
    services.feed_status_record_bar(instrument=nq, timeframe="1m", bar=bars[-1])
    return nq, bars[-1]


@pytest.fixture
def active_model(market):
    """An active version with no edge, and its prediction for the bar before the last (the panel's first state)."""
    nq, last = market
    version = model_version(nq, has_edge=False)
    earlier = Bar.objects.filter(instrument=nq, timeframe="1m", timestamp__lt=last.timestamp).latest("timestamp")
    first = prediction(version, earlier, side="short", p_long=0.28, p_short=0.47, agreement=0.6, latency_ms=9.1)
    return version, first


def log_in(page, server):
    """Behind login: the dashboard sends us to the form, the form brings us back."""
    page.goto(f"{server.url}/")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def test_logged_in_trader_sees_a_new_bar_arrive_without_a_reload(live_server_process, market, page):
    server = live_server_process
    nq, last = market
    requests, page_errors = [], []
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    log_in(page, server)

    page.wait_for_selector('#status-strip[data-ws-state="open"]')
    page.wait_for_selector('#chart[data-ready="true"]')
    assert page.eval_on_selector("#chart", "c => c.data[0].x.length") == HISTORY
    assert page.get_attribute("#chart", "data-bar-count") == str(HISTORY)
    assert page.get_attribute("#status-strip", "data-feed-state") == "running"
    assert page.text_content("#user-name") == USERNAME
    page.evaluate("window.__sameDocument = 'before-the-bar'")

    # The feed stores the next bar in this process; the push crosses Redis to the server, then the socket.
    new_bar = BarData(
        timestamp=last.timestamp + timedelta(minutes=1), open=float(last.close), high=float(last.close) + 9.5,
        low=float(last.close) - 1.25, close=float(last.close) + 7.75, volume=3210,
    )
    stored = in_thread(services.bar_store_closed, instrument=nq, timeframe="1m", bar=new_bar)
    assert stored is not None
    # What the feed and the periodic status job do next: heartbeat, then tell the dashboards.
    in_thread(services.feed_status_record_bar, instrument=nq, timeframe="1m", bar=stored)
    status = in_thread(selectors.feed_status_payload, symbol="NQ", timeframe="1m")
    in_thread(realtime.broadcast, "NQ", "1m", "feed.status", status)

    expected_time = new_bar.timestamp.isoformat().replace("+00:00", "Z")
    page.wait_for_function(
        """([count, time, close, volume]) => {
            const chart = document.getElementById('chart');
            const candles = chart.data[0], volumes = chart.data[1];
            const n = candles.x.length;
            return n === count && chart.dataset.barCount === String(count) && chart.dataset.lastBarTime === time
                && candles.close[n - 1] === close && volumes.y[n - 1] === volume;
        }""",
        arg=[HISTORY + 1, expected_time, new_bar.close, new_bar.volume],
    )
    # The strip follows: last price and a fresh "last bar" age from the pushed status.
    assert page.text_content("#last-price") == f"{new_bar.close:,.2f}"
    page.wait_for_function("() => Number(document.getElementById('status-strip').dataset.lastBarAge) < 30")

    # A repeated timestamp updates that candle in place instead of adding one.
    corrected = {"t": expected_time, "o": new_bar.open, "h": new_bar.high, "l": new_bar.low,
                 "c": new_bar.close - 2.5, "v": 3300.0}
    in_thread(realtime.broadcast, "NQ", "1m", "bar.closed", {"bar": corrected})
    page.wait_for_function(
        """([count, close]) => {
            const candles = document.getElementById('chart').data[0];
            return candles.x.length === count && candles.close[count - 1] === close;
        }""",
        arg=[HISTORY + 1, corrected["c"]],
    )

    # Same document throughout: no navigation, no reload.
    assert page.evaluate("window.__sameDocument") == "before-the-bar"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert page.evaluate("performance.getEntriesByType('navigation')[0].type") == "navigate"

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "dashboard.png"))

    assert page_errors == []
    external = [url for url in requests if urlparse(url).scheme not in ALLOWED_SCHEMES
                or (urlparse(url).hostname or "127.0.0.1") != "127.0.0.1"]
    assert external == [], f"the page reached outside the server: {external}"
    assert any(url.endswith("/static/vendor/plotly/plotly.min.js") for url in requests)


def test_a_new_prediction_reaches_the_panel_without_a_reload(live_server_process, market, active_model, page):
    server = live_server_process
    nq, last = market
    version, first = active_model
    page_errors = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    log_in(page, server)
    page.wait_for_selector('#status-strip[data-ws-state="open"]')
    page.wait_for_selector('#chart[data-ready="true"]')
    # Server-rendered: the stored prediction of the bar before the last, from a model without an edge.
    first_time = first.bar.timestamp.isoformat().replace("+00:00", "Z")
    page.wait_for_selector(f'#prediction[data-state="ready"][data-version="{version.pk}"][data-side="short"]'
                           f'[data-bar-time="{first_time}"]')
    assert page.text_content("#pred-side") == "SHORT"
    assert page.text_content("#pred-confidence") == "47.0%"
    assert page.text_content("#pred-agreement") == "3/5 members agree"
    assert page.get_attribute("#pred-edge", "data-edge") == "none"
    assert page.is_visible("#pred-edge-tag") and page.text_content("#pred-edge-tag") == "No edge over baselines"
    assert page.get_attribute("#pred-model-link", "href") == f"/admin/mlcore/modelversion/{version.pk}/change/"
    page.evaluate("window.__sameDocument = 'before-the-prediction'")

    # The worker stores the last bar's prediction in this process and pushes it; Redis carries it to the server.
    stored = in_thread(prediction, version, last, side="long", p_long=0.6243, p_short=0.3107, agreement=0.8,
                       latency_ms=12.34)
    in_thread(services.market_push, symbol="NQ", timeframe="1m", message_type="prediction.created",
              payload=in_thread(ml_services.prediction_payload, stored))

    last_time = last.timestamp.isoformat().replace("+00:00", "Z")
    page.wait_for_selector(f'#prediction[data-version="{version.pk}"][data-bar-time="{last_time}"]'
                           f'[data-side="long"][data-confidence="0.6243"]')
    assert page.text_content("#pred-side") == "LONG"
    assert page.text_content("#pred-confidence") == "62.4%"
    assert page.text_content("#pred-p-long") == "62.4%" and page.text_content("#pred-p-short") == "31.1%"
    assert page.text_content("#pred-agreement") == "4/5 members agree"
    assert page.text_content("#pred-latency") == "12.3 ms"
    assert page.get_attribute("#prediction", "data-stale") == "false"
    assert page.text_content("#pred-edge-tag") == "No edge over baselines", "still the same model: still no edge"

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "dashboard-prediction.png"))

    # A newer version is promoted and predicts: the panel reads its verdict (an edge, on the long side only).
    def promote_and_predict():
        type(version).objects.filter(pk=version.pk).update(status="retired", retired_at=timezone.now())
        newer = model_version(nq, has_edge=True, statement=LONG_EDGE_ONLY,
                              edge_by_side={"long": True, "short": False})
        return newer, ml_services.prediction_payload(prediction(newer, last, side="long", p_long=0.58, p_short=0.4))

    newer, payload = in_thread(promote_and_predict)
    in_thread(services.market_push, symbol="NQ", timeframe="1m", message_type="prediction.created", payload=payload)
    page.wait_for_selector(f'#prediction[data-version="{newer.pk}"][data-model="{newer.pk}"]')
    page.wait_for_selector('#pred-edge[data-edge="edge"]')
    assert page.text_content("#pred-edge-tag") == "Edge over baselines"
    assert page.is_hidden("#pred-other-version")

    assert page.evaluate("window.__sameDocument") == "before-the-prediction"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert page_errors == []
