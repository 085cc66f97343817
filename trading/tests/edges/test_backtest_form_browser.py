"""End to end, in headless Chromium: the backtest start form shows the stored bar range of the chosen market and
limits its from/to inputs to it; choosing another market or timeframe updates the range, the limits and a window
that fell outside it, from the page's JSON endpoint, without a reload."""
import os
from datetime import UTC, datetime

import pytest

from trading.models import Instrument
from trading.tests.decisions import user_with
from trading.tests.edges.test_backtest_browser import PASSWORD, USERNAME, browser, log_in, new_page  # noqa: F401
from trading.tests.edges.test_backtest_form_and_ratios import hourly_bars, minute_bars
from trading.tests.edges.test_dashboard_browser import channel_prefix, live_server_process  # noqa: F401 (fixtures)
from trading.tests.factories import InstrumentFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.deployment,
    pytest.mark.django_db(transaction=True),  # committed rows, visible to the server process
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="the server subprocess needs the shared PostgreSQL test database and Redis as channel layer",
    ),
]


@pytest.fixture
def runner(transactional_db):
    """Made before the browser starts: Django's ORM refuses to run beside Playwright's event loop."""
    user = user_with(USERNAME, "trading.run_backtest")
    user.set_password(PASSWORD)
    user.save()
    Instrument.objects.filter(active=True).exclude(symbol__in=("ES", "NQ")).update(active=False)
    es = InstrumentFactory(symbol="ES")  # first in the list: the form's initial market
    minute_bars(es, datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 9 * 1440)
    nq = Instrument.objects.filter(symbol="NQ").first() or InstrumentFactory(symbol="NQ")
    minute_bars(nq, datetime(2024, 3, 5, 13, 0, tzinfo=UTC), 90)
    hourly_bars(nq)  # 2024-01-02 17:00 .. 2024-01-04 21:00
    return user


def form_state(page) -> dict:
    return page.evaluate("""() => {
        const note = document.getElementById('bt-range');
        const [from, to] = ['bt-from', 'bt-to'].map((id) => document.getElementById(id));
        return {text: note.textContent.trim(), state: note.dataset.state, from: [from.value, from.min, from.max],
                to: [to.value, to.min, to.max]};
    }""")


def test_choosing_another_market_or_timeframe_updates_the_range_and_the_inputs_limits(
        live_server_process, runner, browser):
    server = live_server_process
    errors = []
    page = new_page(browser, errors)

    log_in(page, server, "/backtests/")

    page.wait_for_selector('#bt-range[data-state="ready"]')
    assert form_state(page) == {
        "text": "Stored ES 1m bars: 2024-01-02 14:30 → 2024-01-11 14:29 UTC, 12,960 bars.", "state": "ready",
        "from": ["2024-01-04T14:29", "2024-01-02T14:30", "2024-01-11T14:29"],
        "to": ["2024-01-11T14:29", "2024-01-02T14:30", "2024-01-11T14:29"]}

    page.select_option("#bt-symbol", "NQ")

    page.wait_for_selector('#bt-range[data-symbol="NQ"][data-timeframe="1m"][data-state="ready"]')
    # ES's window lies outside NQ's range: both inputs take NQ's default window (all of its 90 minutes).
    assert form_state(page) == {
        "text": "Stored NQ 1m bars: 2024-03-05 13:00 → 2024-03-05 14:29 UTC, 90 bars.", "state": "ready",
        "from": ["2024-03-05T13:00", "2024-03-05T13:00", "2024-03-05T14:29"],
        "to": ["2024-03-05T14:29", "2024-03-05T13:00", "2024-03-05T14:29"]}

    page.fill("#bt-from", "2024-03-05T13:30")  # a window typed inside the next range is kept
    page.fill("#bt-to", "2024-01-03T12:00")
    page.select_option("#bt-timeframe", "1h")

    page.wait_for_selector('#bt-range[data-symbol="NQ"][data-timeframe="1h"][data-state="ready"]')
    state = form_state(page)
    assert state["text"] == "Stored NQ 1h bars: 2024-01-02 17:00 → 2024-01-04 21:00 UTC, 52 bars."
    assert state["from"] == ["2024-01-02T17:00", "2024-01-02T17:00", "2024-01-04T21:00"]  # March: outside
    assert state["to"] == ["2024-01-03T12:00", "2024-01-02T17:00", "2024-01-04T21:00"]  # inside: kept

    page.select_option("#bt-timeframe", "1d")  # no daily bar: the limits go, the note says so

    page.wait_for_selector('#bt-range[data-timeframe="1d"][data-state="ready"]')
    state = form_state(page)
    assert state["text"] == "No stored 1d bar of NQ: there is nothing to replay."
    assert state["from"][1:] == ["", ""] and state["to"][1:] == ["", ""]
    assert not errors, errors
