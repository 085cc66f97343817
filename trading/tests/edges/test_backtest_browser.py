"""End to end, in headless Chromium: a finished backtest's page draws its four Plotly figures and shows its figures;
a trade's link opens the trade's recommendation card with every Kelly factor; a look-ahead run is flagged by a
banner at the top of its report and of its trade page. A running run's page shows its progress bar, follows the
progress it polls, and reloads by itself into the report once the run is done.

The runs are made without a model (trading/tests/edges/test_backtest_pages.py `finished_run`: each copied bar gets a
stored prediction through the run's bar hook), on the PostgreSQL test database the server process shares."""
import os
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlparse

import pytest
from django.utils import timezone

from trading import backtest
from trading.models import BacktestRun, Instrument, Recommendation
from trading.tests.decisions import model_version, user_with
from trading.tests.edges.test_backtest_pages import WINDOW_END, WINDOW_START, falling_market, finished_run
from trading.tests.edges.test_dashboard_browser import channel_prefix, live_server_process  # noqa: F401 (fixtures)
from trading.tests.factories import InstrumentFactory
from trading.tests.live import in_thread, launch_chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.deployment,
    pytest.mark.django_db(transaction=True),  # committed rows, visible to the server process
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="the server subprocess needs the shared PostgreSQL test database and Redis as channel layer",
    ),
]

USERNAME, PASSWORD = "viewer", "e2e-Pass-word-42"
CHARTS = ("chart-equity", "chart-drawdown", "chart-calibration", "chart-sizes")


def nq_falling() -> Instrument:
    """NQ (a transactional test before this one may have flushed the row the migration seeds), falling market."""
    nq = Instrument.objects.filter(symbol="NQ").first() or InstrumentFactory(symbol="NQ")
    falling_market(nq)
    return nq


@pytest.fixture
def viewer(transactional_db):
    """Made before the browser starts: Django's ORM refuses to run beside Playwright's event loop."""
    user = user_with(USERNAME)  # reading backtests needs no permission
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def browser(live_server_process):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, errors):
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return page


def log_in(page, server, path):
    page.goto(f"{server.url}{path}")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}{path}")


def money(value) -> str:
    return f"{Decimal(str(value)):,.2f}"


def four_places(value) -> str:
    """As the template's floatformat:4 shows a factor (stored as a number or a string)."""
    return str(Decimal(repr(value) if isinstance(value, float) else str(value)).quantize(Decimal("0.0001"),
                                                                                       rounding=ROUND_HALF_UP))


def table(page, selector) -> dict:
    """A two-column table's rows: header text -> cell text."""
    return page.eval_on_selector_all(f"{selector} tbody tr", "rows => Object.fromEntries(rows.map(r => ["
                                     "r.querySelector('th').textContent.trim(), "
                                     "r.querySelector('td').textContent.trim()]))")


def assert_charts_drawn(page, report) -> None:
    for chart in CHARTS:
        page.wait_for_selector(f'#{chart}[data-ready="true"]')
        assert page.locator(f"#{chart}.js-plotly-plot").count() == 1, chart
        assert page.locator(f"#{chart} svg.main-svg").count() >= 1, chart
    assert page.evaluate("document.getElementById('chart-equity').data[0].y") == report["equity"]["equity"]
    assert page.evaluate("document.getElementById('chart-equity').data[1].y.length") == report["window"]["bars"]
    realised = page.evaluate("document.getElementById('chart-calibration').data[2].y")
    assert realised == [row["realised"] for row in report["calibration"]]
    sizes = page.evaluate("document.getElementById('chart-sizes').data[0]")
    assert dict(zip(sizes["x"], sizes["y"])) == report["sizes"]


def assert_banner_on_top(page, warning: str, content: str) -> None:
    banner = page.locator("#lookahead-banner")
    assert banner.is_visible() and banner.text_content().strip() == warning
    assert banner.bounding_box()["y"] < page.locator(content).bounding_box()["y"]
    # Right before the page's content: above its title and every card.
    assert page.evaluate("document.getElementById('lookahead-banner').nextElementSibling.id") == content.lstrip("#")


@pytest.fixture
def finished(viewer):
    nq = nq_falling()
    plain, lookahead = finished_run(nq), finished_run(nq, lookahead=True)
    assert plain.status == lookahead.status == BacktestRun.Status.DONE and plain.report["trades"] > 0
    first = plain.report["trade_list"][0]
    kelly = Recommendation.objects.get(pk=first["recommendation"]).kelly
    return plain, lookahead, first, kelly


def test_a_finished_run_draws_its_charts_and_figures_and_its_trade_opens_the_kelly_card_lookahead_is_flagged(
        live_server_process, finished, browser):
    server = live_server_process
    plain, lookahead, first, kelly = finished
    report = plain.report
    errors = []
    page = new_page(browser, errors)

    log_in(page, server, f"/backtests/{plain.pk}/")

    assert_charts_drawn(page, report)
    assert page.locator("#lookahead-banner").count() == 0 and page.locator("#run-progress").count() == 0
    figures = table(page, "#money")
    assert figures["Net P&L"] == money(report["net_pnl"]) and figures["Commissions"] == money(report["commissions"])
    assert figures["Ending equity"] == money(report["ending_equity"])
    ratios = table(page, "#ratios")
    assert ratios["Trades"].startswith(f"{report['trades']} closed")
    assert ratios["Hit rate"] == f"{100 * report['hit_rate']:.1f}%" and ratios["Sharpe"] == f"{report['sharpe']:,.2f}"
    assert page.locator("#trades tbody tr[data-recommendation]").count() == len(report["trade_list"])

    # The first trade's link: its recommendation card, with every Kelly factor.
    page.click(f'#trades tr[data-recommendation="{first["recommendation"]}"] a')
    page.wait_for_url(f"{server.url}/backtests/{plain.pk}/trades/{first['recommendation']}/")
    page.wait_for_selector("#rec-kelly")
    factors = page.eval_on_selector_all("#rec-kelly tr[data-factor]", "rows => Object.fromEntries(rows.map(r => "
                                        "[r.dataset.factor, r.querySelector('td').textContent.trim()]))")
    for factor in ("full_kelly", "kelly_fraction", "confidence_factor", "drawdown_factor", "health_factor",
                   "volatility_factor", "adjusted_fraction", "raw_contracts"):
        assert factors[factor] == four_places(kelly[factor]), (factor, factors[factor], kelly[factor])
    assert factors["contracts"] == str(kelly["contracts"]) == str(first["contracts"])
    assert page.locator("#rec-kelly").is_visible() and page.locator("#lookahead-banner").count() == 0
    assert page.locator("#trade-entry").text_content().startswith(f"{float(first['entry_price']):.2f} at ")

    # A look-ahead run: the banner at the top of its report and of its trade's page.
    page.goto(f"{server.url}/backtests/{lookahead.pk}/")
    page.wait_for_selector('#chart-equity[data-ready="true"]')
    warning = lookahead.report["lookahead_warning"]
    assert warning.startswith("LOOK-AHEAD")
    assert_banner_on_top(page, warning, "#backtest")
    page.click("#trades tr[data-recommendation] a >> nth=0")
    page.wait_for_url(f"{server.url}/backtests/{lookahead.pk}/trades/*/")
    page.wait_for_selector("#rec-kelly")
    assert_banner_on_top(page, warning, "#backtest-trade")
    assert not errors, errors


@pytest.fixture
def running(viewer):
    """A run recorded as running, 10 of 100 bars replayed, and the report a finished run of the market made (to
    store on it as if it had just finished)."""
    nq = nq_falling()
    report = finished_run(nq).report
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=WINDOW_START, end=WINDOW_END,
                                   version_id=model_version(nq).pk)
    BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.RUNNING, started_at=timezone.now(),
                                                 bars_done=10, bars_total=100)
    return run, report


def progress_share(page) -> float:
    return page.evaluate("document.getElementById('progress-fill').getBoundingClientRect().width / "
                         "document.getElementById('progress-bar').getBoundingClientRect().width")


def test_a_running_run_shows_its_progress_follows_it_and_reloads_into_the_report_when_done(
        live_server_process, running, browser):
    server = live_server_process
    run, report = running
    errors = []
    page = new_page(browser, errors)

    log_in(page, server, f"/backtests/{run.pk}/")

    assert page.text_content("#progress-text").strip() == "Running: 10 / 100 bars (10.0%)"
    assert page.get_attribute("#progress-bar", "aria-valuenow") == "10"
    assert progress_share(page) == pytest.approx(0.10, abs=0.005)
    assert page.locator("#card-money").count() == 0
    # The page follows the progress it polls (every 2 s), without a reload.
    in_thread(lambda: BacktestRun.objects.filter(pk=run.pk).update(bars_done=55))
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('55 / 100')")
    page.wait_for_function("document.getElementById('progress-bar').getAttribute('aria-valuenow') === '55'")
    page.wait_for_function("() => Math.abs(document.getElementById('progress-fill').getBoundingClientRect().width / "
                           "document.getElementById('progress-bar').getBoundingClientRect().width - 0.55) < 0.01")
    page.evaluate("window.__not_reloaded = true")

    in_thread(lambda: BacktestRun.objects.filter(pk=run.pk).update(
        status=BacktestRun.Status.DONE, bars_done=100, report=report,
        finished_at=timezone.now() + timedelta(seconds=1)))

    # Reloaded by itself: the report, its charts drawn, no progress bar (and the marker set before is gone).
    page.wait_for_selector("#card-money", timeout=15_000)
    assert page.evaluate("window.__not_reloaded === undefined")
    assert_charts_drawn(page, report)
    assert page.locator("#run-progress").count() == 0
    assert table(page, "#money")["Net P&L"] == money(report["net_pnl"])
    assert "Done" in page.text_content("h1")
    assert not errors, errors
