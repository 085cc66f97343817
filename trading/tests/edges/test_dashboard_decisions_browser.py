"""End to end: a recommendation reaches the dashboard live, a person with the permission approves it (one request,
buttons disabled while it is in flight), the next bar fills it and the position and P&L appear, all without a
reload; a refusal shows the server's reason; a read-only user never gets the buttons."""
import os
from urllib.parse import urlparse

import pytest

from trading import services
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

APPROVER, READER, PASSWORD = "approver", "reader", "e2e-Pass-word-42"
HISTORY = 30  # one-minute bars from a Tuesday 09:30 New York time: inside the session the risk manager checks
# p = 0.7 at a 1.5 payoff, a quarter Kelly, $100,000 and a 10-point stop on NQ ($20 a point): 39 contracts, capped at 5.
KELLY_SHOWN = {
    "full_kelly": "0.5000", "kelly_fraction": "0.2500", "confidence_factor": "0.6250", "drawdown_factor": "1.0000",
    "health_factor": "1.0000", "volatility_factor": "1.0000", "adjusted_fraction": "0.0781",
    "risk_per_contract": "200.00", "raw_contracts": "39.0625", "contracts": "5", "capped": "reached (5 max)",
}


@pytest.fixture
def market(transactional_db, django_user_model):
    """NQ with HISTORY bars, a feed that has just received the last one, the paper account and a model version;
    made before the browser starts (Django's ORM refuses to run beside Playwright's event loop)."""
    approver = decisions.user_with(APPROVER, "trading.approve_recommendation")
    approver.set_password(PASSWORD)
    approver.save()
    django_user_model.objects.create_user(username=READER, password=PASSWORD)
    nq = InstrumentFactory(symbol="NQ", name="E-mini Nasdaq-100 Futures")
    bars = decisions.flat_bars(nq, HISTORY)
    services.feed_status_start(instrument=nq, timeframe="1m", source="replay", pace_seconds=60.0)
    services.feed_status_record_bar(instrument=nq, timeframe="1m", bar=bars[-1])  # received now: data is fresh
    services.account_default_get()
    return nq, bars, decisions.model_version(nq)


@pytest.fixture
def browser(live_server_process, market):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, errors: list):
    page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def log_in(page, server, username):
    page.goto(f"{server.url}/")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}/")
    page.wait_for_selector('#status-strip[data-ws-state="open"]')


def recommend(bar, version, *, p=0.7):
    """What the prediction task does after storing a prediction: size it; the service pushes it on commit."""
    stored = decisions.prediction(bar, version, p=p)
    [recommendation] = services.recommendations_create_for_prediction(prediction_id=stored.pk)
    return recommendation


def factors_shown(page) -> dict:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#rec-kelly tr[data-factor]')]
        .filter(row => !row.hidden).map(row => [row.dataset.factor, row.querySelector('td').textContent.trim()]))""")


def test_an_approver_approves_a_live_recommendation_and_sees_the_position_and_pnl_arrive(
        live_server_process, market, browser):  # noqa: F811
    server = live_server_process
    nq, bars, version = market
    errors, decision_requests = [], []
    page = new_page(browser, errors)
    page.on("request", lambda r: decision_requests.append((r.method, urlparse(r.url).path))
            if "/api/recommendations/" in r.url else None)

    log_in(page, server, APPROVER)
    # Nothing to decide yet; the account is flat.
    page.wait_for_selector('#recommendation[data-state="none"][data-id=""][data-can-decide="true"]')
    assert page.is_visible("#rec-empty") and page.is_hidden("#approve") and page.is_hidden("#reject")
    assert page.text_content("#account-equity") == "100,000.00"
    assert page.get_attribute("#positions", "data-count") == "0" and page.is_visible("#positions-empty")
    assert page.text_content("#account-auto-trading") == "Off"
    page.evaluate("window.__sameDocument = 'before-the-recommendation'")

    # The last bar's prediction is sized and risk-checked in this process; the push crosses Redis to the server.
    recommendation = in_thread(recommend, bars[-1], version)
    assert recommendation.state == "pending"
    page.wait_for_selector(f'#recommendation[data-id="{recommendation.pk}"][data-state="pending"]')
    assert page.text_content("#rec-state") == "Pending approval"
    assert page.text_content("#rec-side") == "LONG" and page.text_content("#rec-contracts") == "5"
    assert factors_shown(page) == KELLY_SHOWN
    checks = page.eval_on_selector_all(
        "#rec-checks li", "items => items.map(li => [li.dataset.check, li.dataset.passed, li.textContent])")
    assert [(name, passed == "true") for name, passed, _ in checks] == [
        (check["name"], check["passed"]) for check in recommendation.risk["checks"]]
    assert all(check["message"] in text for check, (_, _, text) in zip(recommendation.risk["checks"], checks))
    assert page.text_content("#rec-risk-decision") == "APPROVE"
    assert page.is_visible("#approve") and page.is_enabled("#approve") and page.is_enabled("#reject")

    # Approve: both buttons are disabled the moment it is clicked, so a second click sends nothing.
    with page.expect_response(lambda r: r.request.method == "POST" and "/approve/" in r.url) as answer:
        in_flight = page.evaluate("""() => {
            const approve = document.getElementById('approve'), reject = document.getElementById('reject');
            approve.click();
            const seen = {approve: approve.disabled, reject: reject.disabled,
                          busy: document.getElementById('recommendation').dataset.busy};
            approve.click();
            reject.click();
            return seen;
        }""")
    assert in_flight == {"approve": True, "reject": True, "busy": "true"}
    assert answer.value.status == 200
    page.wait_for_selector(f'#recommendation[data-id="{recommendation.pk}"][data-state="approved"][data-busy="false"]')
    assert page.text_content("#rec-state") == "Approved"
    assert page.is_hidden("#rec-actions") and page.is_hidden("#rec-message")
    assert decision_requests == [("POST", f"/api/recommendations/{recommendation.pk}/approve/")]

    # A newer recommendation that needs no decision (blocked: p under the threshold) arrives before the fill: the
    # approved one stays in view, since its approver is waiting for the fill.
    newer = in_thread(lambda: recommend(bars[-1], decisions.model_version(nq), p=0.55))
    assert newer.state == "blocked" and newer.pk > recommendation.pk
    page.wait_for_selector(f'#recommendation[data-last-push-id="{newer.pk}"]')
    assert page.get_attribute("#recommendation", "data-id") == str(recommendation.pk)
    assert page.get_attribute("#recommendation", "data-state") == "approved"

    # The next bar: the broker fills the entry at its open (+1 tick) and marks it at its close, then pushes.
    def next_bar():
        bar = decisions.bar_at(nq, HISTORY, open_="18001.00", high="18006", low="17999", close="18004.50")
        return services.bar_settle(bar_id=bar.pk)

    fills = in_thread(next_bar)
    assert len(fills) == 1
    page.wait_for_selector('#positions[data-count="1"] tr[data-symbol="NQ"][data-quantity="5"]')
    # 3.25 points x 5 contracts x $20 = 325.00 open; 5 x $2.50 commission realised.
    page.wait_for_function("() => document.getElementById('account-equity').textContent === '100,312.50'")
    assert page.text_content("#account-unrealized") == "325.00"
    assert page.text_content("#account-realized") == "-12.50"
    assert page.text_content("#account-daily") == "312.50"
    assert page.text_content("#account-trades") == "1"
    cells = page.eval_on_selector_all('#positions tr[data-symbol="NQ"] > *', "cells => cells.map(c => c.textContent)")
    assert cells == ["NQ", "+5", "18,001.25", "18,004.50", "325.00", "0.00"]
    assert page.is_hidden("#positions-empty")
    page.wait_for_selector(f'#recommendation[data-id="{recommendation.pk}"][data-state="executed"]')
    assert page.text_content("#rec-state") == "Executed"

    # One document throughout: no navigation, no reload.
    assert page.evaluate("window.__sameDocument") == "before-the-recommendation"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "dashboard-decision.png"))
    assert errors == []


def test_a_refused_approval_shows_the_servers_reason_and_the_next_one_can_be_rejected(
        live_server_process, market, browser):  # noqa: F811
    server = live_server_process
    nq, bars, version = market
    errors = []
    stale = in_thread(recommend, bars[-1], version)
    # Three bars later its time to live (two bars) has passed; nothing has told the page yet.
    later = in_thread(lambda: [decisions.bar_at(nq, HISTORY + i) for i in range(3)])
    page = new_page(browser, errors)

    log_in(page, server, APPROVER)
    page.wait_for_selector(f'#recommendation[data-id="{stale.pk}"][data-state="pending"]')
    with page.expect_response(lambda r: "/approve/" in r.url) as answer:
        page.click("#approve")
    assert answer.value.status == 409
    page.wait_for_selector("#rec-message:not([hidden])")
    message = page.text_content("#rec-message")
    assert message.startswith(f"Recommendation #{stale.pk} is stale") and message == answer.value.json()["detail"]
    page.wait_for_selector(f'#recommendation[data-id="{stale.pk}"][data-state="expired"]')
    assert page.is_hidden("#rec-actions")

    # A fresh one arrives: it takes the panel, the old message goes, and Reject works.
    fresh = in_thread(recommend, later[-1], version, p=0.68)
    page.wait_for_selector(f'#recommendation[data-id="{fresh.pk}"][data-state="pending"]')
    assert page.is_hidden("#rec-message") and page.is_enabled("#reject")
    with page.expect_response(lambda r: "/reject/" in r.url) as answer:
        page.click("#reject")
    assert answer.value.status == 200
    page.wait_for_selector(f'#recommendation[data-id="{fresh.pk}"][data-state="rejected"]')
    assert page.is_hidden("#rec-actions") and page.is_hidden("#rec-message")
    assert errors == []


def test_a_read_only_user_watches_recommendations_without_buttons(live_server_process, market, browser):  # noqa: F811
    server = live_server_process
    nq, bars, version = market
    errors = []
    page = new_page(browser, errors)

    log_in(page, server, READER)
    page.wait_for_selector('#recommendation[data-state="none"][data-can-decide="false"]')

    recommendation = in_thread(recommend, bars[-1], version)
    page.wait_for_selector(f'#recommendation[data-id="{recommendation.pk}"][data-state="pending"]')
    assert factors_shown(page) == KELLY_SHOWN
    assert page.query_selector("#approve") is None and page.query_selector("#reject") is None
    assert page.query_selector("#rec-actions") is None
    assert page.is_visible("#rec-read-only")
    assert errors == []


def test_a_failed_settlement_shows_live_on_the_account_strip_and_clears_when_a_bar_settles(
        live_server_process, market, browser, monkeypatch):  # noqa: F811
    from trading.services import execution

    server = live_server_process
    nq, bars, version = market
    errors = []
    page = new_page(browser, errors)
    log_in(page, server, READER)
    page.wait_for_selector('#account[data-settlement="ok"]')
    assert page.is_hidden("#account-settlement-fault")

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    def settle(i, fail):
        services.trading_config_get(account=services.account_default_get(), instrument=nq)  # the broker's account
        bar = decisions.bar_at(nq, i)
        with monkeypatch.context() as patch:
            if fail:
                patch.setattr(execution, "_settle_events_store", broken)
            try:
                services.bar_settle(bar_id=bar.pk)
            except execution.SettlementFailed as exc:
                return str(exc)
        return None

    assert "database went away" in in_thread(settle, HISTORY, True)
    page.wait_for_selector('#account[data-settlement="failed"]')
    assert page.text_content("#account-settlement") == "Failed"
    assert "database went away" in page.text_content("#account-settlement-fault")
    assert page.is_visible("#account-settlement-fault")

    assert in_thread(settle, HISTORY + 1, False) is None
    page.wait_for_selector('#account[data-settlement="ok"]')
    assert page.is_hidden("#account-settlement-fault")
    assert errors == []
