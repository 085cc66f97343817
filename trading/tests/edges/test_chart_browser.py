"""End to end, in headless Chromium: the chart a trader expects. The model's calls, the account's entries and exits,
the open trade's entry, stop and target lines and the equity panel are drawn; a live call, fill or bar adds to them
without a reload; weekends take no room on the time axis; the header fits a phone."""
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from django.db import transaction

from mlcore import services as ml_services
from trading import realtime, selectors, services
from trading.models import Bar, EquitySnapshot, Fill, Order
from trading.tests import decisions
from trading.tests.edges.test_dashboard_browser import channel_prefix, live_server_process  # noqa: F401 (fixtures)
from trading.tests.factories import InstrumentFactory
from trading.tests.live import ARTIFACTS_DIR, in_thread, launch_chromium

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
MINUTE = timedelta(minutes=1)
# An hour before Friday's close, then the first hour after Sunday's open: a weekend between two bars.
FRIDAY = datetime(2024, 5, 3, 20, 0, tzinfo=UTC)
SUNDAY = datetime(2024, 5, 5, 22, 0, tzinfo=UTC)
PER_SESSION = 60


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def plot(moment: datetime) -> str:
    """How the page writes times for Plotly: UTC wall clock."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def make_bars(nq, start, count, price, rng):
    bars = []
    for i in range(count):
        open_ = price
        close = open_ + rng.choice([-1, 1]) * rng.randint(0, 12) * 0.25
        bars.append(Bar(instrument=nq, timeframe="1m", timestamp=start + i * MINUTE, open=Decimal(str(open_)),
                        high=Decimal(str(max(open_, close) + rng.randint(1, 8) * 0.25)),
                        low=Decimal(str(min(open_, close) - rng.randint(1, 8) * 0.25)),
                        close=Decimal(str(close)), volume=Decimal(rng.randint(100, 2000))))
        price = close
    return Bar.objects.bulk_create(bars)


def filled(account, bar, *, kind="entry", side="buy", parent=None, stop=None, target=None, closed=False,
           price=None) -> Order:
    """An order filled at `bar` (its open unless `price`): what the paper broker writes, without its ledger."""
    order = Order.objects.create(
        account=account, instrument=bar.instrument, timeframe="1m", kind=kind, side=side, quantity=3,
        status=Order.Status.FILLED, idempotency_key=f"chart-e2e-{bar.timestamp:%d%H%M}-{kind}",
        after_bar_timestamp=bar.timestamp - MINUTE, parent=parent, stop_loss=stop, take_profit=target, closed=closed)
    Fill.objects.create(order=order, account=account, instrument=bar.instrument, side=side, quantity=3,
                        price=bar.open if price is None else price, commission=Decimal("7.50"), bar=bar,
                        timestamp=bar.timestamp)
    return order


def snapshot(account, at, equity):
    EquitySnapshot.objects.create(account=account, timestamp=at, equity=Decimal(equity), realized_pnl=Decimal(0),
                                  unrealized_pnl=Decimal(0), peak_equity=Decimal(equity), drawdown=0.0)


@pytest.fixture
def market(transactional_db, django_user_model):
    """NQ over a weekend, two calls, a closed trade (entry, take-profit), an open short with its bracket and the
    account's equity; made before the browser starts (Django's ORM refuses to run beside Playwright's loop)."""
    django_user_model.objects.create_user(username=USERNAME, password=PASSWORD)
    nq = InstrumentFactory(symbol="NQ", name="E-mini Nasdaq-100 Futures")
    rng = random.Random(20240503)
    friday = make_bars(nq, FRIDAY, PER_SESSION, 18_000.0, rng)
    sunday = make_bars(nq, SUNDAY, PER_SESSION, float(friday[-1].close) + 12.5, rng)
    bars = friday + sunday
    services.feed_status_start(instrument=nq, timeframe="1m", source="replay", pace_seconds=60.0)
    services.feed_status_record_bar(instrument=nq, timeframe="1m", bar=bars[-1])
    version = decisions.model_version(nq)
    decisions.prediction(friday[10], version, side="long", p=0.72)
    decisions.prediction(sunday[5], version, side="short", p=0.45)
    account = services.account_default_get()
    won = filled(account, friday[20], stop=friday[20].open - 10, target=friday[20].open + 15, closed=True)
    filled(account, friday[30], kind="take_profit", side="sell", parent=won, price=won.take_profit)
    short = filled(account, sunday[40], side="sell", stop=sunday[40].open + 10, target=sunday[40].open - 15)
    for i, bar in enumerate(bars):
        snapshot(account, bar.timestamp + MINUTE, str(100_000 + 5 * i))
    return {"nq": nq, "bars": bars, "friday": friday, "sunday": sunday, "version": version, "account": account,
            "won": won, "short": short}


@pytest.fixture
def browser(live_server_process, market):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, errors: list, *, width=1440, height=900):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def log_in(page, server):
    page.goto(f"{server.url}/")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}/")
    page.wait_for_selector('#status-strip[data-ws-state="open"]')
    page.wait_for_selector('#chart[data-ready="true"]')


OVERLAY = """([overlay]) => {
    const trace = document.getElementById('chart').data.find(t => t.meta && t.meta.overlay === overlay);
    return trace ? {x: trace.x, y: trace.y, meta: trace.meta, symbol: trace.marker && trace.marker.symbol,
                    opacity: trace.marker && trace.marker.opacity, text: trace.text, yaxis: trace.yaxis} : null;
}"""
CALLS = """() => document.getElementById('chart').data.filter(t => t.meta && t.meta.overlay === 'prediction')
    .map(t => ({side: t.meta.side, x: t.x, y: t.y, bars: t.meta.bars, symbol: t.marker.symbol,
                opacity: t.marker.opacity, size: t.marker.size, text: t.text}))"""
LINES = """() => (document.getElementById('chart').layout.shapes || [])
    .filter(s => s.name && s.name.startsWith('position-')).map(s => [s.name, s.y0, s.y1, s.yref])"""


def overlay(page, name):
    return page.evaluate(OVERLAY, [name])


def test_calls_trades_bracket_lines_and_equity_are_drawn_and_follow_live_pushes(live_server_process, market,
                                                                               browser):  # noqa: F811
    server = live_server_process
    friday, sunday, account = market["friday"], market["sunday"], market["account"]
    errors = []
    page = new_page(browser, errors)
    log_in(page, server)
    assert page.eval_on_selector("#chart", "c => c.data[0].x.length") == 2 * PER_SESSION
    page.evaluate("window.__sameDocument = 'before-the-pushes'")

    # The calls: a long up-triangle under its candle, a short down-triangle over its own; confidence in the hover
    # and in the marker's strength (the weaker call is fainter and smaller).
    calls = {c["side"]: c for c in page.evaluate(CALLS)}
    assert calls["long"]["bars"] == [iso(friday[10].timestamp)] and calls["long"]["x"] == [plot(friday[10].timestamp)]
    assert calls["long"]["symbol"] == "triangle-up" and calls["long"]["y"][0] < float(friday[10].low)
    assert calls["short"]["bars"] == [iso(sunday[5].timestamp)] and calls["short"]["symbol"] == "triangle-down"
    assert calls["short"]["y"][0] > float(sunday[5].high)
    assert "72.0% confidence" in calls["long"]["text"][0] and "45.0% confidence" in calls["short"]["text"][0]
    assert f"v{market['version'].pk}" in calls["long"]["text"][0]
    assert calls["short"]["opacity"][0] < calls["long"]["opacity"][0]
    assert calls["short"]["size"][0] < calls["long"]["size"][0]

    # The trades: entries at their fill price on their candle, exits likewise, the pair joined by a dotted path.
    entries, exits = overlay(page, "entry"), overlay(page, "exit")
    assert entries["x"] == [plot(friday[20].timestamp), plot(sunday[40].timestamp)]
    assert entries["y"] == [float(friday[20].open), float(sunday[40].open)]
    assert entries["symbol"] == "diamond"
    assert exits["x"] == [plot(friday[30].timestamp)] and exits["y"] == [float(market["won"].take_profit)]
    assert exits["meta"]["kinds"] == ["take_profit"]
    assert exits["text"][0].startswith("Take-profit · SELL 3 @ ")
    assert overlay(page, "trade-path")["x"] == [plot(friday[20].timestamp), plot(friday[30].timestamp), None]

    # The open short: entry, stop and target across the price panel.
    short = market["short"]
    assert sorted(page.evaluate(LINES)) == sorted([
        ["position-entry", float(sunday[40].open), float(sunday[40].open), "y"],
        ["position-stop", float(short.stop_loss), float(short.stop_loss), "y"],
        ["position-target", float(short.take_profit), float(short.take_profit), "y"],
    ])

    # The equity panel: one point per candle, on its own axis under the volume.
    equity = overlay(page, "equity")
    assert equity["yaxis"] == "y3" and len(equity["x"]) == 2 * PER_SESSION
    assert equity["y"][0] == 100_000 and equity["y"][-1] == 100_000 + 5 * (2 * PER_SESSION - 1)
    domains = page.evaluate("""() => { const l = document.getElementById('chart')._fullLayout;
        return [l.yaxis.domain, l.yaxis2.domain, l.yaxis3.domain]; }""")
    assert domains[2][1] < domains[1][0] < domains[1][1] < domains[0][0], "equity under volume under price"
    assert page.evaluate("""() => document.getElementById('chart').layout.annotations
        .filter(a => a.name === 'equity-title').map(a => a.text)""") == ["Equity · paper"]

    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "dashboard-chart-overlays.png"))

    # A call for the last bar arrives: a marker is added for it.
    last = sunday[-1]
    stored = in_thread(decisions.prediction, last, market["version"], side="long", p=0.81)
    in_thread(services.market_push, symbol="NQ", timeframe="1m", message_type="prediction.created",
              payload=in_thread(ml_services.prediction_payload, stored))
    page.wait_for_function(
        """([time]) => document.getElementById('chart').data.some(t => t.meta && t.meta.overlay === 'prediction'
            && t.meta.side === 'long' && t.meta.bars.includes(time))""", arg=[iso(last.timestamp)])
    calls = {c["side"]: c for c in page.evaluate(CALLS)}
    assert calls["long"]["bars"] == [iso(friday[10].timestamp), iso(last.timestamp)]
    assert calls["long"]["y"][1] < float(last.low) and "81.0% confidence" in calls["long"]["text"][1]

    # The short is stopped out on the last bar: the broker's account push makes the page read its trades again.
    def stop_out():
        with transaction.atomic():  # as the broker settles a bar: all of it or nothing
            filled(account, last, kind="stop_loss", side="buy", parent=short, price=short.stop_loss)
            Order.objects.filter(pk=short.pk).update(closed=True)
            snapshot(account, last.timestamp + 2 * MINUTE, "99000")  # a close the chart does not show yet
            EquitySnapshot.objects.filter(account=account, timestamp=last.timestamp + MINUTE).update(
                equity=Decimal("99100"))
        payload = {"account": selectors.account_summary(account=account),
                   "positions": [selectors.position_payload(p) for p in selectors.position_list(account=account)]}
        realtime.broadcast("NQ", "1m", "account.updated", payload)

    in_thread(stop_out)
    # The push makes the page read its overlays again (the one read so far was the page's own).
    page.wait_for_function("""() => { const chart = document.getElementById('chart');
        return chart.dataset.overlaysFetched === '1' && chart.dataset.brackets === '0'
            && chart.data.some(t => t.meta && t.meta.overlay === 'exit' && t.meta.kinds.includes('stop_loss')); }""")
    exits = overlay(page, "exit")
    assert exits["meta"]["kinds"] == ["take_profit", "stop_loss"]
    assert exits["x"][1] == plot(last.timestamp) and exits["y"][1] == float(short.stop_loss)
    assert overlay(page, "trade-path")["x"][3:] == [plot(sunday[40].timestamp), plot(last.timestamp), None]
    assert page.evaluate(LINES) == [], "a closed trade has no lines"
    assert overlay(page, "equity")["y"][-1] == 99_100

    # Same document throughout: no navigation, no reload.
    assert page.evaluate("window.__sameDocument") == "before-the-pushes"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert errors == []


def test_closed_hours_take_no_room_on_the_time_axis_and_a_live_bar_after_a_gap_adds_a_break(
        live_server_process, market, browser):  # noqa: F811
    server = live_server_process
    friday, sunday = market["friday"], market["sunday"]
    errors = []
    page = new_page(browser, errors)
    log_in(page, server)

    weekend = [plot(friday[-1].timestamp + MINUTE), plot(sunday[0].timestamp)]
    assert page.evaluate("() => document.getElementById('chart').layout.xaxis.rangebreaks") == [
        {"bounds": weekend}]
    # Friday's last candle and Sunday's first sit one bar apart on screen, as any two neighbours do.
    gaps = page.evaluate("""([fri, sun, a, b]) => { const x = document.getElementById('chart')._fullLayout.xaxis;
        return [x.d2p(sun) - x.d2p(fri), x.d2p(b) - x.d2p(a)]; }""",
                         [plot(friday[-1].timestamp), plot(sunday[0].timestamp), plot(sunday[0].timestamp),
                          plot(sunday[1].timestamp)])
    assert gaps[1] > 0 and gaps[0] == pytest.approx(gaps[1], abs=0.5)

    # The feed comes back half an hour later: the new gap gets its own break, the weekend keeps its one.
    later = sunday[-1].timestamp + 31 * MINUTE
    bar = {"t": iso(later), "o": 18_000.0, "h": 18_004.0, "l": 17_998.0, "c": 18_002.0, "v": 900.0}
    in_thread(realtime.broadcast, "NQ", "1m", "bar.closed", {"bar": bar})
    page.wait_for_function("([n]) => document.getElementById('chart').data[0].x.length === n",
                           arg=[2 * PER_SESSION + 1])
    assert page.evaluate("() => document.getElementById('chart').layout.xaxis.rangebreaks") == [
        {"bounds": weekend}, {"bounds": [plot(sunday[-1].timestamp + MINUTE), plot(later)]}]
    gaps = page.evaluate("""([a, b]) => { const x = document.getElementById('chart')._fullLayout.xaxis;
        return x.d2p(b) - x.d2p(a); }""", [plot(sunday[-1].timestamp), plot(later)])
    assert gaps == pytest.approx(page.evaluate("""([a, b]) => { const x = document.getElementById('chart')
        ._fullLayout.xaxis; return x.d2p(b) - x.d2p(a); }""", [plot(sunday[0].timestamp), plot(sunday[1].timestamp)]),
        abs=0.5)
    assert errors == []


def boxes(page, selectors_: dict) -> dict:
    return page.evaluate("""(selectors) => Object.fromEntries(Object.entries(selectors).map(([name, sel]) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return [name, {left: r.left, right: r.right, top: r.top, bottom: r.bottom}];
    }))""", selectors_)


def overlaps(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


@pytest.mark.parametrize("width", [390, 1440])
def test_the_header_fits_a_phone_the_picker_overlaps_no_label(live_server_process, market, browser,
                                                              width):  # noqa: F811
    server = live_server_process
    errors = []
    page = new_page(browser, errors, width=width, height=844)
    log_in(page, server)

    parts = boxes(page, {
        "brand": ".topbar .brand",
        "instrument-label": "#market-picker .picker-field:nth-of-type(1) > span",
        "instrument": "#symbol-select",
        "timeframe-label": "#market-picker .picker-field:nth-of-type(2) > span",
        "timeframe": "#timeframe-select",
        "user": "#user-name",
        "logout": "#logout-button",
    })
    names = list(parts)
    touching = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if overlaps(parts[a], parts[b])]
    assert touching == [], f"header parts overlap at {width}px: {parts}"
    assert all(0 <= box["left"] and box["right"] <= width for box in parts.values()), parts
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "nothing sticks out sideways"
    # Each label sits beside or above its own control, and the header still ends above the page.
    header = boxes(page, {"topbar": ".topbar", "strip": "#status-strip"})
    assert header["topbar"]["bottom"] <= header["strip"]["top"] + 0.5
    assert all(parts[name]["bottom"] <= header["topbar"]["bottom"] + 0.5 for name in names)
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / f"dashboard-header-{width}.png"))
    assert errors == []
