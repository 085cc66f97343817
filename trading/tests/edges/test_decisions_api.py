"""The decision REST API: recommendations (filters, approve, reject), orders, fills, positions, accounts and their
controls, trading configuration, the kill switch and the audit trail; permissions, refusals and the schema."""
import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from trading import services
from trading.domain.config_ranges import CONFIG_RANGES
from trading.models import (
    Account,
    AuditEvent,
    EquitySnapshot,
    FeedStatus,
    Instrument,
    KillSwitch,
    Order,
    Recommendation,
    TradingConfig,
)
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction, user_with
from trading.tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.9"
CONTROLS = ("trading.toggle_auto_trading", "trading.reset_circuit_breaker", "trading.set_trading_state",
            "trading.engage_kill_switch", "trading.change_tradingconfig")


def client_for(user) -> APIClient:
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.force_login(user)
    return client


@pytest.fixture
def nq():
    return Instrument.objects.get(symbol="NQ")


@pytest.fixture
def account():
    return services.account_default_get()


@pytest.fixture
def trader():
    return client_for(user_with("trader", "trading.approve_recommendation"))


@pytest.fixture
def controller():
    return client_for(user_with("controller", *CONTROLS))


@pytest.fixture
def reader():
    return client_for(user_with("reader"))


@pytest.fixture
def fresh_feed(nq):
    """The feed says a bar just arrived, so the approval's wall-clock staleness check passes."""
    now = timezone.now()
    return FeedStatus.objects.create(instrument=nq, timeframe="1m", source="test", running=True, heartbeat_at=now,
                                     last_bar_received_at=now)


def recommend(bar, version, **kwargs) -> Recommendation:
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bar, version, **kwargs).pk, now=close_time(bar))
    return recommendation


@pytest.fixture
def pending(nq, fresh_feed):
    bars = flat_bars(nq, 3)
    recommendation = recommend(bars[-1], model_version(nq))
    assert recommendation.state == Recommendation.State.PENDING
    return recommendation


def state_of(recommendation) -> str:
    recommendation.refresh_from_db()
    return recommendation.state


# --- authentication -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/recommendations/", "/api/orders/", "/api/fills/", "/api/positions/",
                                 "/api/accounts/", "/api/trading-configs/", "/api/kill-switch/", "/api/audit-events/"])
def test_anonymous_requests_are_refused(url):
    assert APIClient().get(url).status_code in (401, 403)


# --- recommendations ------------------------------------------------------------------------------------------


def test_recommendation_list_and_detail_show_every_factor(reader, pending):
    listed = reader.get("/api/recommendations/")
    detail = reader.get(f"/api/recommendations/{pending.pk}/")

    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [pending.pk]
    body = detail.json()
    assert detail.status_code == 200
    assert body["id"] == pending.pk
    assert (body["symbol"], body["timeframe"], body["state"], body["side"]) == ("NQ", "1m", "pending", "long")
    assert body["contracts"] == 5 and body["kelly"]["full_kelly"] == pytest.approx(0.5)
    assert {c["name"] for c in body["risk"]["checks"]} >= {"kill_switch", "min_confidence"}
    assert body["account_name"] == "paper" and body["decided_by"] is None
    assert body["bar_timestamp"].endswith("Z")


def test_recommendation_detail_of_an_unknown_id_is_404(reader):
    assert reader.get("/api/recommendations/999999/").status_code == 404


@pytest.fixture
def several(nq, account, fresh_feed):
    """Five recommendations: NQ 1m long pending, NQ 1m short rejected, NQ 5m long, ES 1m long, another account."""
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    es = InstrumentFactory(symbol="ES")
    es_bars = flat_bars(es, 3, price="5000")
    five = [bar_at(nq, i, timeframe="5m") for i in range(3)]
    other = Account.objects.create(name="other")
    for trading in (account, other):
        services.trading_config_get(account=trading, instrument=es)
    # Each made while its bar is the latest: a prediction sized after a newer bar closed is recorded as expired.
    made = {"nq_long": recommend(bars[2], version)}
    made |= {
        "nq_short": recommend(bar_at(nq, 3), version, side="short"),
        "nq_5m": recommend(five[-1], model_version(nq, timeframe="5m")),
    }
    made["es"], made["es_other"] = services.recommendations_create_for_prediction(
        prediction_id=prediction(es_bars[-1], model_version(es)).pk, now=close_time(es_bars[-1]))
    if made["es"].account != account:
        made["es"], made["es_other"] = made["es_other"], made["es"]
    services.recommendation_reject(recommendation_id=made["nq_short"].pk, user=user_with("decider",
                                   "trading.approve_recommendation"))
    return made, other


@pytest.mark.parametrize(("query", "expected"), [
    ({}, {"nq_long", "nq_short", "nq_5m", "es", "es_other"}),
    ({"symbol": "NQ"}, {"nq_long", "nq_short", "nq_5m"}),
    ({"symbol": "ES"}, {"es", "es_other"}),
    ({"symbol": "ZZZ"}, set()),
    ({"timeframe": "5m"}, {"nq_5m"}),
    ({"symbol": "NQ", "timeframe": "1m"}, {"nq_long", "nq_short"}),
    ({"state": "rejected"}, {"nq_short"}),
    ({"state": "pending", "symbol": "NQ", "timeframe": "1m"}, {"nq_long"}),
    ({"account": "other"}, {"es_other"}),
])
def test_recommendation_list_filters(reader, several, query, expected):
    made, other = several
    if query.get("account") == "other":
        query = {**query, "account": other.pk}

    response = reader.get("/api/recommendations/", query)

    assert response.status_code == 200
    ids = [r["id"] for r in response.json()["results"]]
    assert set(ids) == {made[name].pk for name in expected}
    assert len(ids) == len(expected)


def test_recommendation_list_pages_by_cursor(reader, several):
    first = reader.get("/api/recommendations/", {"page_size": 2}).json()
    second = reader.get(first["next"]).json()
    third = reader.get(second["next"]).json()

    ids = [r["id"] for page in (first, second, third) for r in page["results"]]
    assert len(ids) == len(set(ids)) == 5
    assert third["next"] is None


@pytest.mark.parametrize(("query", "field"), [
    ({"state": "maybe"}, "state"),
    ({"timeframe": "2m"}, "timeframe"),
    ({"account": "x"}, "account"),
    ({"account": 999999}, "account"),
    ({"page_size": 0}, "page_size"),
    ({"cursor": "garbage"}, "cursor"),
])
def test_a_bad_recommendation_query_is_a_400_naming_the_field(reader, query, field):
    response = reader.get("/api/recommendations/", query)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_a_permitted_user_approves_and_the_decision_is_audited_with_the_address(trader, pending):
    response = trader.post(f"/api/recommendations/{pending.pk}/approve/")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "approved"
    assert response.json()["decided_by"] == "trader"
    assert state_of(pending) == "approved"
    order = Order.objects.get(recommendation=pending)
    assert (order.kind, order.side, order.quantity, order.status) == ("entry", "buy", 5, "pending")
    audit = AuditEvent.objects.get(action="approve", recommendation=pending)
    assert (audit.user.username, audit.state_before, audit.state_after, audit.client_address) == (
        "trader", "pending", "approved", ADDRESS)


def test_approving_twice_is_a_409_and_places_exactly_one_order(trader, pending):
    first = trader.post(f"/api/recommendations/{pending.pk}/approve/")
    second = trader.post(f"/api/recommendations/{pending.pk}/approve/")

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["state"] == "approved"
    assert "only a pending one can be approved" in second.json()["detail"]
    assert Order.objects.filter(recommendation=pending).count() == 1
    assert AuditEvent.objects.filter(action="approve").count() == 1


def test_a_permitted_user_rejects_and_the_decision_is_audited(trader, pending):
    response = trader.post(f"/api/recommendations/{pending.pk}/reject/")

    assert response.status_code == 200
    assert state_of(pending) == "rejected"
    assert not Order.objects.exists()
    audit = AuditEvent.objects.get(action="reject")
    assert (audit.recommendation, audit.state_after, audit.client_address) == (pending, "rejected", ADDRESS)


def test_rejecting_a_decided_recommendation_is_a_409_with_its_state(trader, pending):
    trader.post(f"/api/recommendations/{pending.pk}/approve/")

    response = trader.post(f"/api/recommendations/{pending.pk}/reject/")

    assert response.status_code == 409
    assert response.json()["state"] == "approved"
    assert state_of(pending) == "approved"


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_read_only_user_cannot_decide_and_nothing_changes(reader, pending, decision):
    response = reader.post(f"/api/recommendations/{pending.pk}/{decision}/")

    assert response.status_code == 403
    assert "trading.approve_recommendation" in response.json()["detail"]
    assert state_of(pending) == "pending"
    assert not Order.objects.exists()
    assert not AuditEvent.objects.filter(recommendation=pending).exists()
    refused = AuditEvent.objects.get()  # the attempt is on record, as a refusal
    assert refused.action == "refused" and "trading.approve_recommendation" in refused.details["reason"]


def test_a_stale_recommendation_is_a_409_and_expires(trader, pending, nq):
    # Made on bar 2 with a time to live of 2 bars: it lives until the bar of minute 4; bar 5 is beyond.
    for i in (3, 4, 5):
        bar_at(nq, i)

    response = trader.post(f"/api/recommendations/{pending.pk}/approve/")

    assert response.status_code == 409
    assert response.json()["state"] == "expired"
    assert "stale" in response.json()["detail"]
    assert state_of(pending) == "expired"
    assert not Order.objects.exists()
    assert AuditEvent.objects.get(recommendation=pending).state_after == "expired"


def test_a_recommendation_the_risk_manager_now_blocks_is_a_409_and_blocked(trader, controller, pending):
    controller.post("/api/kill-switch/", {"engaged": True, "reason": "test"}, format="json")

    response = trader.post(f"/api/recommendations/{pending.pk}/approve/")

    assert response.status_code == 409
    assert response.json()["state"] == "blocked"
    assert state_of(pending) == "blocked"
    assert not Order.objects.exists()


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_deciding_an_unknown_recommendation_is_404(trader, decision):
    assert trader.post(f"/api/recommendations/999999/{decision}/").status_code == 404


# --- orders, fills, positions ---------------------------------------------------------------------------------


@pytest.fixture
def traded(trader, pending, nq, account):
    """The pending recommendation approved and filled at the next bar's open: one order, one fill, a position."""
    assert trader.post(f"/api/recommendations/{pending.pk}/approve/").status_code == 200
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18001", close="18002").pk)
    return pending


def test_orders_fills_and_positions_are_listed(reader, traded, account):
    orders = reader.get("/api/orders/").json()["results"]
    fills = reader.get("/api/fills/", {"account": account.pk}).json()["results"]
    positions = reader.get("/api/positions/").json()

    assert [(o["kind"], o["side"], o["quantity"], o["status"], o["recommendation"]) for o in orders] == [
        ("entry", "buy", 5, "filled", traded.pk)]
    assert [(f["symbol"], f["side"], f["quantity"], Decimal(f["price"])) for f in fills] == [
        ("NQ", "buy", 5, Decimal("18001.25"))]
    assert [(p["symbol"], p["account_name"], p["quantity"], Decimal(p["mark_price"])) for p in positions] == [
        ("NQ", "paper", 5, Decimal("18002"))]


def test_order_fill_and_position_lists_filter_by_account(reader, traded):
    other = Account.objects.create(name="other")

    assert reader.get("/api/orders/", {"account": other.pk}).json()["results"] == []
    assert reader.get("/api/fills/", {"account": other.pk}).json()["results"] == []
    assert reader.get("/api/positions/", {"account": other.pk}).json() == []
    assert reader.get("/api/orders/", {"account": 999999}).status_code == 400


def test_open_only_positions_leave_out_flat_ones(reader, traded, nq):
    services.bar_settle(bar_id=bar_at(nq, 4, open_="18002", high="18030", low="18001", close="18020").pk)

    assert [p["quantity"] for p in reader.get("/api/positions/").json()] == [0]
    assert reader.get("/api/positions/", {"open_only": "true"}).json() == []


@pytest.mark.parametrize("url", ["/api/orders/", "/api/fills/", "/api/positions/"])
def test_orders_fills_and_positions_are_read_only(controller, url):
    assert controller.post(url, {}, format="json").status_code == 405


# --- accounts -------------------------------------------------------------------------------------------------


def test_account_list_and_detail_are_the_account_summary(reader, account):
    listed = reader.get("/api/accounts/")
    detail = reader.get(f"/api/accounts/{account.pk}/")

    assert listed.status_code == detail.status_code == 200
    assert [a["name"] for a in listed.json()] == ["paper"]
    body = detail.json()
    assert body["id"] == account.pk
    assert (body["equity"], body["auto_trading"], body["trading_state"], body["kill_switch"]) == (
        "100000.00", False, "ACTIVE", False)
    assert reader.get("/api/accounts/999999/").status_code == 404


def test_the_equity_curve_comes_from_snapshots_oldest_first(reader, traded, account, nq):
    services.bar_settle(bar_id=bar_at(nq, 4, open_="18002", close="18010").pk)

    response = reader.get(f"/api/accounts/{account.pk}/equity/")

    assert response.status_code == 200
    points = response.json()["results"]
    snapshots = list(EquitySnapshot.objects.filter(account=account).order_by("timestamp"))
    assert len(points) == len(snapshots) == 2
    assert [Decimal(p["equity"]) for p in points] == [s.equity for s in snapshots]
    assert points[0]["timestamp"] < points[1]["timestamp"]
    assert reader.get("/api/accounts/999999/equity/").status_code == 404


def test_auto_trading_toggle_is_permission_checked_and_audited(controller, reader, account):
    refused = reader.post(f"/api/accounts/{account.pk}/auto-trading/", {"enabled": True}, format="json")
    account.refresh_from_db()
    assert refused.status_code == 403
    assert "trading.toggle_auto_trading" in refused.json()["detail"]
    assert account.auto_trading is False
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["refused"]  # the attempt, not a change

    on = controller.post(f"/api/accounts/{account.pk}/auto-trading/", {"enabled": True}, format="json")

    assert on.status_code == 200
    assert on.json()["auto_trading"] is True
    account.refresh_from_db()
    assert account.auto_trading is True
    audit = AuditEvent.objects.get(action="auto_trading")
    assert (audit.user.username, audit.state_before, audit.state_after, audit.client_address) == (
        "controller", "off", "on", ADDRESS)


@pytest.mark.parametrize("body", [{}, {"enabled": "perhaps"}])
def test_auto_trading_needs_a_boolean(controller, account, body):
    response = controller.post(f"/api/accounts/{account.pk}/auto-trading/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["enabled"]


def test_account_controls_on_an_unknown_account_are_404(controller):
    assert controller.post("/api/accounts/999999/auto-trading/", {"enabled": True}, format="json").status_code == 404
    assert controller.post("/api/accounts/999999/circuit-breaker/reset/").status_code == 404


def test_circuit_breaker_reset_is_permission_checked_and_audited(controller, reader, account):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    refused = reader.post(f"/api/accounts/{account.pk}/circuit-breaker/reset/")
    account.refresh_from_db()
    assert refused.status_code == 403
    assert account.circuit_breaker_tripped

    response = controller.post(f"/api/accounts/{account.pk}/circuit-breaker/reset/")

    assert response.status_code == 200
    body = response.json()
    assert (body["circuit_breaker_tripped"], body["trading_state"]) == (False, "ACTIVE")
    audit = AuditEvent.objects.get(action="breaker_reset")
    assert (audit.state_before, audit.state_after, audit.client_address) == ("HALTED", "ACTIVE", ADDRESS)


def test_resetting_a_breaker_that_is_not_tripped_is_a_400(controller, account):
    response = controller.post(f"/api/accounts/{account.pk}/circuit-breaker/reset/")

    assert response.status_code == 400
    assert "not tripped" in json.dumps(response.json())
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"], refused.account) == ("refused", "breaker_reset", account)


def test_trading_state_is_permission_checked_validated_and_audited(controller, reader, account):
    url = f"/api/accounts/{account.pk}/trading-state/"
    assert reader.post(url, {"trading_state": "HALTED"}, format="json").status_code == 403
    bad = controller.post(url, {"trading_state": "PAUSED"}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["trading_state"]
    account.refresh_from_db()
    assert account.trading_state == "ACTIVE"

    response = controller.post(url, {"trading_state": "REDUCING"}, format="json")

    assert response.status_code == 200
    assert response.json()["trading_state"] == "REDUCING"
    audit = AuditEvent.objects.get(action="trading_state")
    assert (audit.state_before, audit.state_after, audit.client_address) == ("ACTIVE", "REDUCING", ADDRESS)


def test_a_tripped_breaker_keeps_the_account_halted(controller, account):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    response = controller.post(f"/api/accounts/{account.pk}/trading-state/", {"trading_state": "ACTIVE"},
                               format="json")

    assert response.status_code == 400
    assert "reset it first" in json.dumps(response.json())
    account.refresh_from_db()
    assert account.trading_state == "HALTED"


# --- trading configuration ------------------------------------------------------------------------------------


@pytest.fixture
def config(account, nq):
    return services.trading_config_get(account=account, instrument=nq)


def test_config_list_and_detail(reader, config, account):
    listed = reader.get("/api/trading-configs/")
    filtered = reader.get("/api/trading-configs/", {"symbol": "ES"})
    detail = reader.get(f"/api/trading-configs/{config.pk}/")

    assert [(c["account_name"], c["symbol"]) for c in listed.json()] == [("paper", "NQ")]
    assert filtered.json() == []
    body = detail.json()
    assert (body["id"], body["account"], body["kelly_fraction"], body["min_confidence"]) == (
        config.pk, account.pk, 0.25, 0.6)
    assert Decimal(body["daily_loss_limit"]) == Decimal("2000")
    assert reader.get("/api/trading-configs/999999/").status_code == 404


def test_a_valid_config_patch_changes_the_settings_and_is_audited(controller, config):
    response = controller.patch(f"/api/trading-configs/{config.pk}/",
                                {"kelly_fraction": 0.5, "daily_loss_limit": "1500.00", "max_contracts": 3},
                                format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["kelly_fraction"] == 0.5
    config.refresh_from_db()
    assert (config.kelly_fraction, config.daily_loss_limit, config.max_contracts) == (0.5, Decimal("1500.00"), 3)
    audit = AuditEvent.objects.get(action="config_change")
    assert audit.client_address == ADDRESS and audit.user.username == "controller"
    assert audit.details["before"]["kelly_fraction"] == 0.25 and audit.details["after"]["kelly_fraction"] == 0.5


def test_a_form_encoded_config_patch_works_too(controller, config):
    response = controller.patch(f"/api/trading-configs/{config.pk}/", {"min_confidence": "0.7"}, format="multipart")

    assert response.status_code == 200, response.json()
    config.refresh_from_db()
    assert config.min_confidence == 0.7


@pytest.mark.parametrize(("body", "field"), [
    ({"kelly_fraction": 0}, "kelly_fraction"),
    ({"kelly_fraction": 1.5}, "kelly_fraction"),
    ({"min_confidence": 0.4}, "min_confidence"),
    ({"min_confidence": 1.0}, "min_confidence"),
    ({"daily_loss_limit": "-1.00"}, "daily_loss_limit"),
    ({"daily_loss_limit": -100}, "daily_loss_limit"),
    ({"kelly_fraction": "half"}, "kelly_fraction"),
    ({"max_contracts": -1}, "max_contracts"),
    ({"kelly_fraction": 0.5, "min_confidence": 1.0}, "min_confidence"),  # one bad value refuses the whole change
    ({"kelly_fraction": None}, "kelly_fraction"),
    ({"bogus": 1}, "bogus"),
    ({"account": 2}, "account"),
    ({}, "non_field_errors"),
    ([{"kelly_fraction": 0.5}], "non_field_errors"),
], ids=lambda value: json.dumps(value) if isinstance(value, (dict, list)) else value)
def test_an_invalid_config_patch_is_a_400_naming_the_field_and_changes_nothing(controller, config, body, field):
    before = TradingConfig.objects.filter(pk=config.pk).values().get()

    response = controller.patch(f"/api/trading-configs/{config.pk}/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert TradingConfig.objects.filter(pk=config.pk).values().get() == before
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"], refused.client_address) == ("refused", "config_change", ADDRESS)


@pytest.mark.parametrize("body", [{"kelly_fraction": 0.5}, {"kelly_fraction": 0}, {"bogus": 1}])
def test_a_read_only_user_cannot_change_the_config(reader, config, body):
    response = reader.patch(f"/api/trading-configs/{config.pk}/", body, format="json")

    assert response.status_code == 403
    assert "trading.change_tradingconfig" in response.json()["detail"]
    config.refresh_from_db()
    assert config.kelly_fraction == 0.25
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.user.username, refused.details["control"]) == ("refused", "reader", "config_change")


@pytest.mark.parametrize("encoding", ["json", "multipart"])
@pytest.mark.parametrize("body", [
    {"recommendation_ttl_bars": 228601184493597},
    {"recommendation_ttl_bars": 2_000_000_000},
    {"slippage_ticks": 2**63 - 1},
    {"max_position_contracts": 2_445_088},
    {"health_floor": True},
    {"recommendation_ttl_bars": 2.9},
    {"stale_after_seconds": "Infinity"},
    {"max_contracts": "5 contracts"},
], ids=lambda body: json.dumps(body))
def test_settings_that_would_stop_or_distort_trading_are_a_400_naming_them(controller, config, body, encoding):
    if encoding == "multipart" and body.get("health_floor") is True:
        body = {"health_floor": "true"}
    before = TradingConfig.objects.filter(pk=config.pk).values().get()

    response = controller.patch(f"/api/trading-configs/{config.pk}/", body, format=encoding)

    assert response.status_code == 400
    assert list(response.json()) == list(body)
    assert TradingConfig.objects.filter(pk=config.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="config_change").exists()


def test_the_schema_states_every_settings_range(reader):
    schema = json.loads(reader.get("/api/schema/", {"format": "json"}).content)
    update = schema["components"]["schemas"]["PatchedTradingConfigUpdate"]["properties"]

    assert set(update) == set(CONFIG_RANGES)
    ttl = update["recommendation_ttl_bars"]
    assert (ttl["type"], ttl["minimum"], ttl["maximum"]) == ("integer", 1, 1440)
    kelly = update["kelly_fraction"]
    assert (kelly["type"], kelly["minimum"], kelly.get("exclusiveMinimum"), kelly["maximum"]) == (
        "number", 0.0, True, 1.0)
    assert "[1, 1440]" in ttl["description"]


def test_patching_an_unknown_config_is_404(controller):
    assert controller.patch("/api/trading-configs/999999/", {"kelly_fraction": 0.5}, format="json").status_code == 404


# --- kill switch and audit --------------------------------------------------------------------------------------


def test_kill_switch_is_permission_checked_and_audited(controller, reader):
    assert reader.get("/api/kill-switch/").json()["engaged"] is False
    refused = reader.post("/api/kill-switch/", {"engaged": True, "reason": "no"}, format="json")
    assert refused.status_code == 403
    assert "trading.engage_kill_switch" in refused.json()["detail"]
    assert not KillSwitch.objects.filter(engaged=True).exists()

    engaged = controller.post("/api/kill-switch/", {"engaged": True, "reason": "fat finger"}, format="json")

    assert engaged.status_code == 200
    assert engaged.json()["engaged"] is True
    shown = reader.get("/api/kill-switch/").json()
    assert (shown["engaged"], shown["changed_by"], shown["reason"]) == (True, "controller", "fat finger")
    audit = AuditEvent.objects.get(action="kill_switch")
    assert (audit.state_before, audit.state_after, audit.client_address, audit.details["reason"]) == (
        "released", "engaged", ADDRESS, "fat finger")
    assert reader.get("/api/accounts/").json()[0]["kill_switch"] is True

    released = controller.post("/api/kill-switch/", {"engaged": False}, format="json")
    assert released.status_code == 200 and released.json()["engaged"] is False


def test_kill_switch_needs_a_boolean(controller):
    response = controller.post("/api/kill-switch/", {"reason": "x"}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["engaged"]


def _post(client, url: str, body: dict, encoding: str):
    if encoding == "urlencoded":  # what `curl -d reason=x` sends
        return client.post(url, urlencode(body), content_type="application/x-www-form-urlencoded")
    return client.post(url, body, format=encoding)


ENCODINGS = ("json", "multipart", "urlencoded")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("body", [{"reason": "x"}, {}, {"engaged": ""}, {"engaged": "perhaps"}, {"engaged": "null"}],
                         ids=["missing", "empty-body", "blank", "perhaps", "null"])
def test_an_engaged_kill_switch_is_not_released_by_a_body_that_does_not_say_so(controller, encoding, body):
    assert controller.post("/api/kill-switch/", {"engaged": True, "reason": "outage"}, format="json").status_code == 200

    response = _post(controller, "/api/kill-switch/", body, encoding)

    assert response.status_code == 400
    assert list(response.json()) == ["engaged"]
    assert KillSwitch.objects.get(pk=1).engaged is True
    refused = AuditEvent.objects.get(action="refused")
    assert (refused.details["control"], refused.user.username, refused.client_address) == (
        "kill_switch", "controller", ADDRESS)
    assert "engaged" in refused.details["errors"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("body", [{"reason": "x"}, {}, {"enabled": ""}, {"enabled": "2"}],
                         ids=["missing", "empty-body", "blank", "two"])
def test_auto_trading_is_not_turned_off_by_a_body_that_does_not_say_so(controller, account, encoding, body):
    url = f"/api/accounts/{account.pk}/auto-trading/"
    assert controller.post(url, {"enabled": True}, format="json").status_code == 200

    response = _post(controller, url, body, encoding)

    assert response.status_code == 400
    assert list(response.json()) == ["enabled"]
    account.refresh_from_db()
    assert account.auto_trading is True
    refused = AuditEvent.objects.get(action="refused")
    assert (refused.details["control"], refused.account) == ("auto_trading", account)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("body", [{}, {"state": "HALTED"}, {"trading_state": ""}, {"trading_state": "halted!"}],
                         ids=["empty-body", "misnamed", "blank", "unknown"])
def test_the_trading_state_needs_a_known_state_in_form_and_json_bodies(controller, account, encoding, body):
    response = _post(controller, f"/api/accounts/{account.pk}/trading-state/", body, encoding)

    assert response.status_code == 400
    assert list(response.json()) == ["trading_state"]
    account.refresh_from_db()
    assert account.trading_state == "ACTIVE"
    assert AuditEvent.objects.get().details["control"] == "trading_state"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_form_bodies_that_say_so_do_switch_the_controls(controller, account, encoding):
    engaged = _post(controller, "/api/kill-switch/", {"engaged": "true", "reason": "x"}, encoding)
    released = _post(controller, "/api/kill-switch/", {"engaged": "false"}, encoding)
    on = _post(controller, f"/api/accounts/{account.pk}/auto-trading/", {"enabled": "true"}, encoding)
    halted = _post(controller, f"/api/accounts/{account.pk}/trading-state/", {"trading_state": "HALTED"}, encoding)

    assert [r.status_code for r in (engaged, released, on, halted)] == [200, 200, 200, 200]
    assert (engaged.json()["engaged"], released.json()["engaged"]) == (True, False)
    assert (on.json()["auto_trading"], halted.json()["trading_state"]) == (True, "HALTED")


@pytest.mark.parametrize("body", [{"reset": False}, {"confirm": "no"}], ids=["reset-false", "confirm-no"])
def test_a_breaker_reset_that_sends_a_value_is_refused_not_ignored(controller, account, body):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    response = controller.post(f"/api/accounts/{account.pk}/circuit-breaker/reset/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == list(body)
    account.refresh_from_db()
    assert account.circuit_breaker_tripped
    assert AuditEvent.objects.get(action="refused").details["control"] == "breaker_reset"


def test_a_breaker_reset_with_an_unparseable_body_is_a_400(controller, account):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    response = controller.post(f"/api/accounts/{account.pk}/circuit-breaker/reset/", "{not json",
                               content_type="application/json")

    assert response.status_code == 400
    account.refresh_from_db()
    assert account.circuit_breaker_tripped


def test_audit_events_are_listed_newest_first_and_filtered(reader, trader, controller, pending, account):
    trader.post(f"/api/recommendations/{pending.pk}/approve/")
    controller.post(f"/api/accounts/{account.pk}/auto-trading/", {"enabled": True}, format="json")

    everything = reader.get("/api/audit-events/").json()["results"]
    approvals = reader.get("/api/audit-events/", {"action": "approve"}).json()["results"]
    of_recommendation = reader.get("/api/audit-events/", {"recommendation": pending.pk}).json()["results"]

    assert [e["action"] for e in everything] == ["auto_trading", "approve"]
    assert [(e["user"], e["client_address"], e["state_after"]) for e in approvals] == [
        ("trader", ADDRESS, "approved")]
    assert [e["action"] for e in of_recommendation] == ["approve"]
    assert reader.get("/api/audit-events/", {"action": "delete"}).status_code == 400
    assert reader.post("/api/audit-events/", {}, format="json").status_code == 405


# --- schema ---------------------------------------------------------------------------------------------------


def test_the_schema_documents_the_decision_endpoints(reader):
    schema = json.loads(reader.get("/api/schema/", {"format": "json"}).content)
    paths = schema["paths"]

    expected = {
        "/api/recommendations/": {"get"},
        "/api/recommendations/{recommendation_id}/": {"get"},
        "/api/recommendations/{recommendation_id}/approve/": {"post"},
        "/api/recommendations/{recommendation_id}/reject/": {"post"},
        "/api/orders/": {"get"},
        "/api/fills/": {"get"},
        "/api/positions/": {"get"},
        "/api/accounts/": {"get"},
        "/api/accounts/{account_id}/": {"get"},
        "/api/accounts/{account_id}/equity/": {"get"},
        "/api/accounts/{account_id}/auto-trading/": {"post"},
        "/api/accounts/{account_id}/circuit-breaker/reset/": {"post"},
        "/api/accounts/{account_id}/trading-state/": {"post"},
        "/api/trading-configs/": {"get"},
        "/api/trading-configs/{config_id}/": {"get", "patch"},
        "/api/kill-switch/": {"get", "post"},
        "/api/audit-events/": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(paths[path]) - {"parameters"} == methods, path
    approve = paths["/api/recommendations/{recommendation_id}/approve/"]["post"]["responses"]
    assert {"200", "403", "404", "409"} <= set(approve)
    parameters = {p["name"] for p in paths["/api/recommendations/"]["get"]["parameters"]}
    assert {"symbol", "timeframe", "state", "account", "cursor", "page_size"} <= parameters
    assert {"400", "403"} <= set(paths["/api/trading-configs/{config_id}/"]["patch"]["responses"])
