"""The monitoring page and its JSON: behind login; the score, what sizing does with it (the account's floors), the
breakdown and the formula's weights; the metric tables say when there is no verdict; a clear empty state; the
alerts with Acknowledge for those allowed (403 and nothing changed for others); "Take snapshot now" and its errors
as messages; the alerts strip on every logged-in page."""
import html
import json
import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.test import Client
from django.utils import timezone

from monitoring.domain import health as health_core
from monitoring.models import Alert, AlertRule, MetricSnapshot
from monitoring.tests.snapshots import active_version, make_series, make_snapshot
from trading.models import Account, TradingConfig
from trading.tests.decisions import user_with
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ACK = "monitoring.acknowledge_alert"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(html_text: str, element_id: str) -> str:
    """The text inside the element with this id (tags stripped, whitespace collapsed)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', html_text, re.S)
    assert match, f"no element #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(2))).split())


def section(html_text: str, element_id: str) -> str:
    match = re.search(rf'<section[^>]*\bid="{element_id}".*?</section>', html_text, re.S)
    assert match, f"no section #{element_id}"
    return match.group(0)


def initial(response) -> dict:
    match = re.search(r'<script id="monitoring-initial" type="application/json">(.*?)</script>',
                      response.content.decode(), re.S)
    assert match
    return json.loads(match.group(1))


def rule(code: str) -> AlertRule:
    found = AlertRule.objects.filter(code=code).first()
    return found or AlertRule.objects.create(code=code, name=code.replace("_", " ").title(), severity="warning",
                                             threshold=0.25)


def alert(nq, *, code="drift", severity="warning", status=Alert.Status.OPEN, message="NQ 1m: 2 input(s) drifted",
          minutes_ago=5) -> Alert:
    now = timezone.now()
    return Alert.objects.create(rule=rule(code), cause=f"{code}:NQ 1m:{message}", instrument=nq, timeframe="1m",
                                severity=severity, status=status, message=message, value=0.31, threshold=0.25,
                                opened_at=now - timedelta(minutes=minutes_ago), last_seen_at=now, times_seen=3)


@pytest.fixture
def viewer_client(viewer):
    return client_for(viewer)


@pytest.fixture
def acker(db):
    return user_with("acker", ACK)


@pytest.fixture
def monitored(nq):
    version = active_version(nq)
    snapshots = make_series(nq, version, count=4)
    return version, snapshots


# ---- access -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/monitoring/", "/monitoring/data/?symbol=NQ&timeframe=1m",
                                  "/monitoring/alerts/summary/"])
def test_every_read_needs_a_login(nq, path):
    response = Client().get(path)

    assert response.status_code == 302
    assert urlparse(response["Location"]).path == "/accounts/login/"


def test_an_unknown_market_is_a_404(viewer_client, nq):
    assert viewer_client.get("/monitoring/?symbol=NOPE").status_code == 404
    assert viewer_client.get("/monitoring/?symbol=NQ&timeframe=7m").status_code == 404
    assert viewer_client.get("/monitoring/data/?symbol=NOPE&timeframe=1m").status_code == 404


# ---- at a glance --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("score, band, action", [
    (86.4, "full", "Sizing in full"),
    (55.0, "scaled", "Sizes scaled ×0.50"),  # (0.55 - 0.40) / (0.70 - 0.40)
    (40.0, "blocked", "Blocked: no new entries"),  # at the floor is blocked, as the risk check reads it
])
def test_the_score_is_shown_big_coloured_by_the_floors_with_what_sizing_does(viewer_client, monitored, score, band,
                                                                           action):
    _, snapshots = monitored
    MetricSnapshot.objects.filter(pk=snapshots[-1].pk).update(health_score=score)

    page = viewer_client.get("/monitoring/").content.decode()

    assert text_of(page, "health-score") == f"{score:.1f}"
    assert re.search(rf'<div class="health-card band-{band}" id="health-card" data-band="{band}"', page)
    assert text_of(page, "health-action") == action
    assert "floor" in text_of(page, "health-explain")


def test_the_floors_come_from_the_paper_accounts_configuration(viewer_client, monitored, nq):
    _, snapshots = monitored
    MetricSnapshot.objects.filter(pk=snapshots[-1].pk).update(health_score=65.0)
    account = Account.objects.get_or_create(name="paper")[0]
    TradingConfig.objects.update_or_create(account=account, instrument=nq,
                                           defaults={"health_full_size_floor": 0.80, "health_floor": 0.50})

    page = viewer_client.get("/monitoring/?symbol=NQ&timeframe=1m").content.decode()

    assert text_of(page, "health-action") == "Sizes scaled ×0.50"  # (0.65 - 0.50) / (0.80 - 0.50)
    assert text_of(page, "floors") == "full size from 80, blocked at 50 or under"


def test_the_breakdown_lists_every_component_with_its_weight_points_and_status(viewer_client, monitored):
    _, snapshots = monitored
    latest = snapshots[-1]

    page = viewer_client.get("/monitoring/").content.decode()

    breakdown = section(page, "card-breakdown")
    rows = re.findall(r'<tr data-component="(\w+)" data-status="(\w+)">(.*?)</tr>', breakdown.split('id="formula"')[0],
                      re.S)
    assert [(name, status) for name, status, _ in rows] == [(c["name"], c["status"]) for c in latest.health_components]
    for (_, _, cells), component in zip(rows, latest.health_components):
        detail = re.search(r'<span class="detail">(.*?)</span>', cells, re.S).group(1)
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", cells, re.S)]
        assert cells[1] == f"{component['weight']:,.0f}"
        assert cells[3] == f"{component['contribution']:.1f}"
        assert html.unescape(detail) == component["detail"]
    total = sum(c["contribution"] for c in latest.health_components)
    assert text_of(page, "breakdown-total") == f"{total:.1f}"


def test_the_formula_shows_the_weights_caps_and_floors_from_the_health_module(viewer_client, monitored):
    page = viewer_client.get("/monitoring/").content.decode()

    formula = re.search(r'<table class="mon-table" id="formula-weights">.*?</table>', page, re.S).group(0)
    weights = dict(re.findall(r'<tr data-component="(\w+)"><th scope="row">\w+</th><td class="n">(\d+)</td>',
                              formula))
    assert {name: int(w) for name, w in weights.items()} == health_core.WEIGHTS
    assert text_of(page, "formula-no-edge-cap") == f"{health_core.NO_EDGE_CAP:.0f}"
    assert text_of(page, "formula-failing-cap") == f"{health_core.FAILING_CAP:.0f}"
    assert f"earns {health_core.UNKNOWN_CREDIT:.0%} of its weight" in " ".join(page.split())


def test_a_capped_score_says_which_cap_applied(viewer_client, nq):
    version = active_version(nq, has_edge=False)
    make_snapshot(nq, version, has_edge=False)

    page = viewer_client.get("/monitoring/").content.decode()

    assert f"Capped at {health_core.NO_EDGE_CAP:.0f}: no validated out-of-sample edge" in text_of(page, "caps")
    assert text_of(page, "health-action") == "Blocked: no new entries"


def test_a_window_under_the_minimum_count_says_there_is_no_verdict(viewer_client, nq):
    version = active_version(nq)
    make_snapshot(nq, version, outcomes=20)

    page = viewer_client.get("/monitoring/").content.decode()

    windows = section(page, "card-windows")
    assert "No verdict under 50 outcomes: 20 so far." in windows
    verdicts = re.findall(r'<span class="verdict tone-\w+"[^>]*>([^<]*)</span>', windows)
    assert verdicts and set(verdicts) == {"no verdict"}


def test_a_sufficient_window_gives_values_intervals_training_figures_and_verdicts(viewer_client, monitored):
    page = viewer_client.get("/monitoring/").content.decode()

    count_window = re.search(r'<div class="window" data-window="count" data-sufficient="true">.*?</ul>',
                             section(page, "card-windows"), re.S).group(0)
    long_accuracy = re.search(r'<tr data-metric="accuracy">.*?<td class="cell" data-side="long">(.*?)</td>',
                              count_window, re.S).group(1)
    assert "exp 62.0%" in long_accuracy  # training's figure for the side
    assert re.search(r'<span class="cell-ci num muted" title="95% interval">\d+\.\d–\d+\.\d%</span>', long_accuracy)
    assert re.search(r'<span class="verdict tone-(ok|good|bad)"', long_accuracy)


def test_reliability_hit_rates_drift_and_operations_are_in_the_initial_figures(viewer_client, monitored):
    _, snapshots = monitored
    latest = snapshots[-1]
    data = initial(viewer_client.get("/monitoring/"))

    snapshot = data["view"]["snapshot"]
    buckets = snapshot["reliability"]["buckets"]
    assert len(buckets) == 10 and sum(b["count"] for b in buckets) == latest.metrics["windows"]["count"]["chosen"]["n"]
    assert all(b["rate_low"] <= b["realised_rate"] <= b["rate_high"] for b in buckets if b["count"])
    assert snapshot["hit"]["pending_n"] == 7 and snapshot["hit"]["pending_expected"] is not None
    names = [f["name"] for f in snapshot["drift"]["features"]]
    assert sorted(names) == sorted(latest.drift["features"])
    assert snapshot["drift"]["moderate"] == 0.1 and snapshot["drift"]["significant"] == 0.25
    assert snapshot["operations"]["latency"]["p99"] == pytest.approx(latest.operations["latency"]["p99"])
    assert data["view"]["series"]["health"] == [s.health_score for s in snapshots]


def test_a_market_without_snapshots_or_model_says_how_to_get_one(viewer_client, nq):
    response = viewer_client.get("/monitoring/?symbol=NQ&timeframe=5m")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-state="empty"' in page
    assert text_of(page, "mon-empty").startswith("No snapshot of NQ 5m yet")
    assert "python manage.py train --symbol NQ --timeframe 5m --fast" in page
    assert text_of(page, "health-score") == "—"


def test_a_monitored_market_without_a_snapshot_yet_says_one_is_due(viewer_client, nq):
    version = active_version(nq)

    page = viewer_client.get("/monitoring/").content.decode()

    assert f"v{version.pk} is active; beat takes a snapshot of every market every 60 s" in text_of(page, "mon-empty")


def test_no_active_instrument_at_all_is_said(viewer_client, nq):
    nq.active = False
    nq.save()

    page = viewer_client.get("/monitoring/").content.decode()

    assert "No active instrument" in page


# ---- the JSON of live refreshes ----------------------------------------------------------------------------------

def test_the_data_endpoint_returns_the_latest_snapshot_the_series_and_the_alerts(viewer_client, monitored, nq):
    _, snapshots = monitored
    opened = alert(nq)

    body = viewer_client.get("/monitoring/data/?symbol=NQ&timeframe=1m").json()

    assert (body["symbol"], body["timeframe"], body["range"]) == ("NQ", "1m", "24h")
    view = body["view"]
    assert view["snapshot"]["id"] == snapshots[-1].pk
    assert view["snapshot"]["health"]["score"] == snapshots[-1].health_score
    assert [c["name"] for c in view["snapshot"]["components"]] == list(health_core.WEIGHTS)
    assert view["series"]["id"] == [s.pk for s in snapshots]
    assert set(view["series"]) >= {"t", "health", "accuracy", "log_loss", "brier", "ece", "roc_auc", "hit_realised",
                                   "hit_expected", "max_psi", "latency_p99"}
    assert all(len(column) == len(snapshots) for column in view["series"].values())
    assert view["formula"]["components"][0] == {"name": "edge", "weight": health_core.WEIGHTS["edge"],
                                                "criterion": view["formula"]["components"][0]["criterion"]}
    assert [a["id"] for a in body["alerts"]["unresolved"]] == [opened.pk]
    assert body["alerts"]["unresolved"][0]["market"] == "NQ 1m"


def test_the_data_endpoint_after_a_time_returns_only_newer_points(viewer_client, monitored):
    _, snapshots = monitored
    after = snapshots[1].taken_at.isoformat().replace("+00:00", "Z")

    view = viewer_client.get(f"/monitoring/data/?symbol=NQ&timeframe=1m&after={after}").json()["view"]

    assert view["series_appended"] is True
    assert view["series"]["id"] == [s.pk for s in snapshots[2:]]


def test_the_series_keeps_to_the_range(viewer_client, nq):
    version = active_version(nq)
    old = make_snapshot(nq, version, taken_at=timezone.now() - timedelta(hours=30))
    recent = make_snapshot(nq, version)

    day = viewer_client.get("/monitoring/data/?symbol=NQ&timeframe=1m&range=24h").json()["view"]["series"]["id"]
    week = viewer_client.get("/monitoring/data/?symbol=NQ&timeframe=1m&range=7d").json()["view"]["series"]["id"]

    assert day == [recent.pk]
    assert week == [old.pk, recent.pk]


def test_an_old_snapshot_is_flagged_stale(viewer_client, nq):
    version = active_version(nq)
    make_snapshot(nq, version, taken_at=timezone.now() - timedelta(minutes=20))

    page = viewer_client.get("/monitoring/?range=7d").content.decode()

    assert re.search(r'<p id="snapshot-stale" class="mon-warn">The newest snapshot is 20 min old', page)


# ---- alerts and acknowledging them --------------------------------------------------------------------------------

def test_alerts_are_listed_with_acknowledge_only_for_users_allowed(nq, monitored, viewer, acker):
    opened = alert(nq)

    for_viewer = client_for(viewer).get("/monitoring/").content.decode()
    for_acker = client_for(acker).get("/monitoring/").content.decode()

    assert f'id="alert-{opened.pk}"' in for_viewer and f'id="alert-{opened.pk}"' in for_acker
    assert opened.message in section(for_viewer, "alerts")
    assert "ack-form" not in section(for_viewer, "alerts")
    assert f'action="/monitoring/alerts/{opened.pk}/acknowledge/"' in section(for_acker, "alerts")


def test_acknowledging_without_the_permission_is_refused_and_changes_nothing(viewer_client, nq):
    opened = alert(nq)

    response = viewer_client.post(f"/monitoring/alerts/{opened.pk}/acknowledge/", {"note": "seen"})

    assert response.status_code == 403
    opened.refresh_from_db()
    assert (opened.status, opened.acknowledged_by, opened.acknowledged_at, opened.acknowledgement_note) == (
        Alert.Status.OPEN, None, None, "")


def test_acknowledging_through_the_page_is_audited_and_shown_to_everyone(nq, monitored, acker, viewer):
    opened = alert(nq)
    client = client_for(acker)

    response = client.post(f"/monitoring/alerts/{opened.pk}/acknowledge/",
                           {"note": "Looking into the drift", "next": "/monitoring/?symbol=NQ&timeframe=1m#alerts"})

    assert response.status_code == 302 and response["Location"] == "/monitoring/?symbol=NQ&timeframe=1m#alerts"
    opened.refresh_from_db()
    assert opened.status == Alert.Status.ACKNOWLEDGED
    assert opened.acknowledged_by == acker and opened.acknowledged_at is not None
    assert opened.acknowledgement_note == "Looking into the drift"
    followed = client.get(response["Location"]).content.decode()
    assert f"Alert #{opened.pk} acknowledged." in text_of(followed, "mon-messages")
    seen_by_viewer = section(client_for(viewer).get("/monitoring/").content.decode(), "alerts")
    assert re.search(r'Acknowledged by <b class="alert-ack-by">acker</b>', seen_by_viewer)
    assert "Looking into the drift" in seen_by_viewer


def test_acknowledging_an_unknown_alert_is_a_message_not_an_error(nq, acker):
    client = client_for(acker)

    response = client.post("/monitoring/alerts/999999/acknowledge/", follow=True)

    assert response.status_code == 200
    assert "there is no alert #999999" in text_of(response.content.decode(), "mon-messages")


def test_an_offsite_next_is_not_followed(nq, acker):
    opened = alert(nq)

    response = client_for(acker).post(f"/monitoring/alerts/{opened.pk}/acknowledge/", {"next": "https://evil.example/"})

    assert urlparse(response["Location"]).netloc == ""
    assert response["Location"].startswith("/monitoring/")


def test_acknowledging_needs_a_post(nq, acker):
    opened = alert(nq)

    assert client_for(acker).get(f"/monitoring/alerts/{opened.pk}/acknowledge/").status_code == 405
    opened.refresh_from_db()
    assert opened.status == Alert.Status.OPEN


# ---- take a snapshot now ------------------------------------------------------------------------------------------

def test_take_snapshot_of_an_unknown_market_is_a_clear_message(nq, acker):
    response = client_for(acker).post("/monitoring/snapshot/", {"symbol": "NOPE", "timeframe": "1m"}, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/monitoring/"
    assert "No snapshot taken: unknown symbol 'NOPE'" in text_of(response.content.decode(), "mon-messages")
    assert not MetricSnapshot.objects.exists()


def test_take_snapshot_of_a_market_without_a_model_says_so(nq, acker):
    response = client_for(acker).post("/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "5m"}, follow=True)

    assert response.redirect_chain[-1][0] == "/monitoring/?symbol=NQ&timeframe=5m"
    assert "NQ 5m has no active model version to monitor" in text_of(response.content.decode(), "mon-messages")


def test_take_snapshot_needs_staff_or_the_permission(viewer_client, nq):
    active_version(nq)

    response = viewer_client.post("/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "1m"})

    assert response.status_code == 403
    assert not MetricSnapshot.objects.exists()
    assert 'id="snapshot-form"' not in viewer_client.get("/monitoring/").content.decode()


def test_take_snapshot_runs_the_service_and_the_page_shows_it(nq, django_user_model):
    version = active_version(nq)
    staff = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    client = client_for(staff)
    assert 'id="snapshot-form"' in client.get("/monitoring/").content.decode()

    response = client.post("/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "1m",
                                                     "next": "/monitoring/?symbol=NQ&timeframe=1m"}, follow=True)

    snapshot = MetricSnapshot.objects.get()
    assert (snapshot.version, snapshot.trigger) == (version, MetricSnapshot.Trigger.ON_DEMAND)
    page = response.content.decode()
    assert f"Snapshot #{snapshot.pk} of NQ 1m taken" in text_of(page, "mon-messages")
    # A snapshot as the service writes it renders: the score, the breakdown, the empty windows' note.
    assert text_of(page, "health-score") == f"{snapshot.health_score:.1f}"
    assert f'data-snapshot-id="{snapshot.pk}"' in page
    assert "No verdict under 50 outcomes: 0 so far." in section(page, "card-windows")


# ---- the alerts strip on every page --------------------------------------------------------------------------------

def strip_of(page: str) -> str:
    match = re.search(r'<a id="alerts-strip".*?</a>', page, re.S)
    assert match, "the page must carry the alerts strip"
    return match.group(0)


@pytest.mark.parametrize("path", ["/", "/monitoring/"])
def test_every_logged_in_page_shows_the_alerts_strip(viewer_client, nq, path):
    alert(nq, code="drift", severity="warning", message="older warning", minutes_ago=30)
    alert(nq, code="health_critical", severity="critical", message="NQ 1m health 31/100 is under 40", minutes_ago=2)
    alert(nq, code="latency", severity="warning", status=Alert.Status.ACKNOWLEDGED, message="acknowledged one",
          minutes_ago=10)
    alert(nq, code="accuracy", severity="critical", status=Alert.Status.RESOLVED, message="resolved one")

    strip = strip_of(viewer_client.get(path).content.decode())

    assert 'data-total="3"' in strip and 'data-worst="critical"' in strip
    pills = dict(re.findall(r'data-severity="(\w+)" title="(\d+) \w+"', strip))
    assert pills == {"critical": "1", "warning": "2", "info": "0"}
    assert text_of(strip, "alerts-newest") == "NQ 1m health 31/100 is under 40"  # names its market already
    assert 'href="/monitoring/?symbol=NQ&amp;timeframe=1m#alerts"' in strip


def test_the_strip_with_no_alert_says_none_and_the_summary_json_matches(viewer_client, nq):
    strip = strip_of(viewer_client.get("/").content.decode())
    assert 'data-total="0"' in strip and re.search(r'<span class="alerts-none">none open</span>', strip)

    opened = alert(nq, message="queue(s) inference without a live worker")
    summary = viewer_client.get("/monitoring/alerts/summary/").json()

    assert summary["total"] == 1 and summary["counts"] == {"critical": 0, "warning": 1, "info": 0}
    assert summary["alerts"][0] == {"id": opened.pk, "severity": "warning", "status": "open",
                                    "message": opened.message, "market": "NQ 1m",
                                    "opened_at": summary["alerts"][0]["opened_at"],
                                    "text": "NQ 1m: queue(s) inference without a live worker"}
    assert summary["newest"]["id"] == opened.pk and summary["worst"] == "warning"


def test_the_login_page_has_no_strip(nq):
    page = Client().get("/accounts/login/").content.decode()

    assert 'id="alerts-strip"' not in page and "alerts_strip.js" not in page


def test_the_header_links_the_two_pages_keeping_the_market(viewer_client, nq):
    es = InstrumentFactory(symbol="ES", name="E-mini S&P 500")

    page = viewer_client.get("/?symbol=ES&timeframe=5m").content.decode()

    assert re.search(r'<a id="nav-monitoring" href="/monitoring/\?symbol=ES&amp;timeframe=5m">', page)
    monitoring = viewer_client.get(f"/monitoring/?symbol={es.symbol}&timeframe=5m").content.decode()
    assert re.search(r'<a id="nav-dashboard" href="/\?symbol=ES&amp;timeframe=5m">', monitoring)
    assert re.search(r'id="nav-monitoring" href="[^"]*" aria-current="page"', monitoring)
