"""End to end, in headless Chromium at phone width: the monitoring page shows the health score, draws its Plotly
figures without scrolling the page sideways, and follows the market's socket: a new snapshot re-renders the score
and the series, an alert opened or resolved anywhere shows in the alerts strip (and the page's list) without a
reload. The dashboard's strip hears alerts over the dashboard's own socket."""
import os
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, AlertRule, MetricSnapshot
from monitoring.tests.snapshots import active_version, make_series, make_snapshot
from trading import realtime
from trading.tests.decisions import user_with
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

USERNAME, PASSWORD = "acker", "e2e-Pass-word-42"
PHONE = {"width": 375, "height": 812}
SNAPSHOTS = 6
ALLOWED_SCHEMES = {"http", "ws", "data", "blob"}
PLOTS = ("chart-health", "chart-rates", "chart-losses", "chart-drift-series", "chart-ops-series", "chart-reliability",
         "chart-drift")


@pytest.fixture
def market(transactional_db):
    """Made before the browser starts: Django's ORM refuses to run beside Playwright's event loop."""
    user = user_with(USERNAME, "monitoring.acknowledge_alert")
    user.set_password(PASSWORD)
    user.save()
    nq = InstrumentFactory(symbol="NQ", name="E-mini Nasdaq-100 Futures")
    version = active_version(nq)
    snapshots = make_series(nq, version, count=SNAPSHOTS, drift_shift=1.5)
    MetricSnapshot.objects.filter(pk=snapshots[-1].pk).update(health_score=81.2)
    AlertRule.objects.get_or_create(code="drift", defaults={"name": "Input drift", "threshold": 0.25})
    return nq, version


@pytest.fixture
def browser(live_server_process):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, errors, requests, viewport):
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: requests.append(req.url))
    return page


def log_in(page, server, path):
    page.goto(f"{server.url}{path}")
    assert urlparse(page.url).path == "/accounts/login/"
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{server.url}{path}")


def open_alert(nq, version, message) -> dict:
    now = timezone.now()
    alert = Alert.objects.create(rule=AlertRule.objects.get(code="drift"), cause="drift:NQ 1m", instrument=nq,
                                 timeframe="1m", version=version, severity="critical", message=message, value=0.4,
                                 threshold=0.25, opened_at=now, last_seen_at=now)
    payload = services.alert_payload(Alert.objects.select_related("rule", "instrument").get(pk=alert.pk))
    assert realtime.broadcast_all("alert.opened", payload)
    return payload


def resolve_alert(alert_id) -> None:
    Alert.objects.filter(pk=alert_id).update(status=Alert.Status.RESOLVED, resolved_at=timezone.now(),
                                             resolution="cleared at the next snapshot")
    alert = Alert.objects.select_related("rule", "instrument").get(pk=alert_id)
    assert realtime.broadcast_all("alert.resolved", services.alert_payload(alert))


def new_snapshot(nq, version, score) -> int:
    snapshot = make_snapshot(nq, version, taken_at=timezone.now() + timedelta(seconds=1), seed=99)
    MetricSnapshot.objects.filter(pk=snapshot.pk).update(health_score=score)
    snapshot.refresh_from_db()
    assert realtime.broadcast("NQ", "1m", "monitoring.snapshot", services.snapshot_brief(snapshot))
    return snapshot.pk


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def overlapping_cards(page) -> list:
    """Pairs of the page's cards whose boxes overlap (a layout that stacks them wrongly)."""
    return page.evaluate("""() => {
        const cards = [...document.querySelectorAll('.mon-head > *, .mon-grid > .card, #alerts')]
            .filter(c => c.offsetParent !== null).map(c => [c.id || c.className, c.getBoundingClientRect()]);
        const pairs = [];
        cards.forEach(([a, r], i) => cards.slice(i + 1).forEach(([b, s]) => {
            if (r.left < s.right - 0.5 && s.left < r.right - 0.5 && r.top < s.bottom - 0.5 && s.top < r.bottom - 0.5) {
                pairs.push([a, b]);
            }
        }));
        return pairs;
    }""")


def test_the_monitoring_page_at_phone_width_draws_its_figures_and_follows_snapshots_and_alerts(
        live_server_process, market, browser):
    server = live_server_process
    nq, version = market
    errors, requests = [], []
    page = new_page(browser, errors, requests, PHONE)

    log_in(page, server, "/monitoring/")

    page.wait_for_selector('#monitoring[data-ws-state="open"]')
    page.wait_for_selector('#monitoring[data-charts-ready="true"]')
    # Once live, the page reads its figures again and renders every section itself: the same rows as the server's.
    page.wait_for_selector('#monitoring[data-refreshed="1"]')
    assert page.locator("#breakdown-rows tr").count() == 7
    assert page.locator("#windows .window").count() == 3
    assert page.locator('#windows .window[data-window="count"] tbody tr').count() == 6
    assert page.locator("#drift-rows tr").count() == 7  # two predicted-probability rows and five inputs
    assert page.is_visible("#health-score")
    assert page.text_content("#health-score") == "81.2"
    assert page.text_content("#health-action") == "Sizing in full"
    for plot in PLOTS:
        assert page.get_attribute(f"#{plot}", "data-ready") == "true", plot
        assert page.locator(f"#{plot} .main-svg").count() >= 1, plot
    assert page.evaluate("document.getElementById('chart-health').data[0].y.length") == SNAPSHOTS
    reliability = page.evaluate("document.getElementById('chart-reliability').data.map(t => t.type)")
    assert reliability == ["scatter", "bar", "scatter"]  # the diagonal, the counts, realised with error bars
    assert page.evaluate("document.getElementById('chart-reliability').data[2].error_y.array.length") > 0
    drift_lines = page.evaluate("document.getElementById('chart-drift').layout.shapes.map(s => s.x0)")
    assert drift_lines == [0.1, 0.25]
    assert no_sideways_scroll(page), "the page scrolls sideways at 375 px"
    assert overlapping_cards(page) == []
    # The header's first row holds the brand, the page links and Log out.
    tops = page.evaluate("""() => ['.topbar .brand', '#nav-monitoring', '#logout-button']
        .map(s => document.querySelector(s).getBoundingClientRect().top)""")
    assert max(tops) - min(tops) < 10, tops
    # Wide tables scroll inside their own box, not the page.
    page.click('#window-tabs .tab[data-window="version"]')
    assert page.is_visible('#windows .window[data-window="version"]')
    assert not page.is_visible('#windows .window[data-window="count"]')
    assert no_sideways_scroll(page)
    page.evaluate("window.__sameDocument = 'monitoring'")

    # An alert opened anywhere: the strip and the page's list, without a reload.
    payload = in_thread(open_alert, nq, version, "NQ 1m: 3 input(s) drifted to PSI >= 0.25 (ret_5 0.41)")
    page.wait_for_selector(f'#alerts-strip[data-total="1"][data-worst="critical"]')
    assert page.text_content("#alerts-newest") == payload["message"]  # it names its market already
    assert page.text_content('#alerts-strip .sev-pill[data-severity="critical"]').startswith("1")
    page.wait_for_selector(f'#alert-list #alert-{payload["id"]} .ack-form')
    assert no_sideways_scroll(page)

    # A new snapshot: the score, its band and the series re-render from the page's JSON.
    snapshot_id = in_thread(new_snapshot, nq, version, 33.3)
    page.wait_for_selector(f'#monitoring[data-snapshot-id="{snapshot_id}"]')
    assert page.text_content("#health-score") == "33.3"
    assert page.get_attribute("#health-card", "data-band") == "blocked"
    assert page.text_content("#health-action") == "Blocked: no new entries"
    page.wait_for_function("n => document.getElementById('chart-health').data[0].y.length === n",
                           arg=SNAPSHOTS + 1)

    # It resolves: the strip empties and says so for a moment.
    in_thread(resolve_alert, payload["id"])
    page.wait_for_selector('#alerts-strip[data-total="0"]')
    page.wait_for_selector("#alerts-toast:not([hidden])")
    assert page.text_content("#alerts-toast").startswith("Resolved NQ 1m: ")
    page.wait_for_selector(f'#resolved-list #alert-{payload["id"]}', state="attached")

    assert page.evaluate("window.__sameDocument") == "monitoring"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert no_sideways_scroll(page)
    assert overlapping_cards(page) == []
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "monitoring-375.png"), full_page=True)
    assert errors == []
    external = [url for url in requests if urlparse(url).scheme not in ALLOWED_SCHEMES
                or (urlparse(url).hostname or "127.0.0.1") != "127.0.0.1"]
    assert external == [], f"the page reached outside the server: {external}"


def test_the_dashboards_strip_hears_alerts_over_the_dashboards_socket(live_server_process, market, browser):
    server = live_server_process
    nq, version = market
    errors, requests = [], []
    page = new_page(browser, errors, requests, {"width": 1440, "height": 860})

    log_in(page, server, "/")
    page.wait_for_selector('#status-strip[data-ws-state="open"]')
    assert page.get_attribute("#alerts-strip", "data-total") == "0"
    assert page.get_attribute("#nav-monitoring", "href") == "/monitoring/?symbol=NQ&timeframe=1m"

    payload = in_thread(open_alert, nq, version, "predicted probabilities drifted")

    page.wait_for_selector('#alerts-strip[data-total="1"]')
    assert page.text_content("#alerts-newest") == "NQ 1m: predicted probabilities drifted"
    in_thread(resolve_alert, payload["id"])
    page.wait_for_selector('#alerts-strip[data-total="0"]')
    assert page.is_visible("#alerts-toast")
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / "dashboard-alerts.png"))

    # The header's link leads to the same market's monitoring page, laid out in two columns without overlaps.
    page.click("#nav-monitoring")
    page.wait_for_url(f"{server.url}/monitoring/?symbol=NQ&timeframe=1m")
    page.wait_for_selector('#monitoring[data-charts-ready="true"]')
    assert overlapping_cards(page) == []
    left = page.evaluate("document.getElementById('card-breakdown').getBoundingClientRect().left")
    right = page.evaluate("document.getElementById('card-reliability').getBoundingClientRect().left")
    assert right > left + 400, "breakdown and calibration side by side on a wide screen"
    assert no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS_DIR / "monitoring-1440.png"), full_page=True)
    assert errors == []


def first_snapshot_of_5m(nq) -> int:
    version = active_version(nq, timeframe="5m")
    snapshot = make_snapshot(nq, version, timeframe="5m", seed=5)
    assert realtime.broadcast("NQ", "5m", "monitoring.snapshot", services.snapshot_brief(snapshot))
    return snapshot.pk


def test_a_market_without_snapshots_fills_in_when_its_first_one_is_taken(live_server_process, market, browser):
    server = live_server_process
    nq, _ = market
    errors, requests = [], []
    page = new_page(browser, errors, requests, PHONE)
    log_in(page, server, "/monitoring/?symbol=NQ&timeframe=5m")
    page.wait_for_selector('#monitoring[data-ws-state="open"]')
    assert page.get_attribute("#monitoring", "data-state") == "empty"
    assert page.is_visible("#mon-empty") and not page.is_visible("#mon-body")
    assert page.text_content("#mon-empty h1") == "No snapshot of NQ 5m yet"

    snapshot_id = in_thread(first_snapshot_of_5m, nq)

    page.wait_for_selector(f'#monitoring[data-state="ready"][data-snapshot-id="{snapshot_id}"]')
    assert not page.is_visible("#mon-empty") and page.is_visible("#mon-body")
    page.wait_for_function("() => document.getElementById('chart-health').dataset.ready === 'true'")
    assert page.evaluate("document.getElementById('chart-health').data[0].y.length") == 1
    assert page.locator("#breakdown-rows tr").count() == 7
    assert page.text_content("#health-score") != "—"
    assert no_sideways_scroll(page) and overlapping_cards(page) == []
    assert errors == []


def decide_a_retraining(nq, version) -> int:
    """A retraining of NQ 1m kept by the rule, announced as the service announces it (pushed to every page)."""
    from mlcore.models import Retraining

    record = Retraining.objects.create(
        instrument=nq, timeframe="1m", trigger="schedule", requested_by="schedule", requested_at=timezone.now(),
        status="kept", champion=version, decision="not_better", decided_by="automatic", decided_at=timezone.now(),
        decision_reason="The challenger has an edge on the long side but does not beat the champion by more than "
                        "sampling noise.")
    services.retraining_outcome_record(retraining_id=record.pk)
    return record.pk


def test_a_retraining_decided_elsewhere_appears_on_the_open_page(live_server_process, market, browser):
    server = live_server_process
    nq, version = market
    errors, requests = [], []
    page = new_page(browser, errors, requests, PHONE)
    log_in(page, server, "/monitoring/?symbol=NQ&timeframe=1m")
    page.wait_for_selector('#monitoring[data-ws-state="open"]')
    assert page.is_visible("#no-retraining")

    retraining_id = in_thread(decide_a_retraining, nq, version)

    page.wait_for_selector(f'#decision-list li[data-retraining="{retraining_id}"][data-status="kept"]')
    assert "does not beat the champion" in page.text_content(f'li[data-retraining="{retraining_id}"]')
    assert not page.is_visible("#no-retraining")
    assert no_sideways_scroll(page)
    assert errors == []
