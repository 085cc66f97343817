"""The decision admin: pages render for a superuser, controls and approvals go through the services (permission-
checked, audited, refusals reported as messages), and the rows only services write stay read-only."""
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from trading import selectors, services
from trading.models import (
    Account,
    AuditEvent,
    EquitySnapshot,
    FeedStatus,
    Fill,
    Instrument,
    KillSwitch,
    Order,
    Position,
    Recommendation,
    TradingConfig,
)
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction, user_with

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.4"


@pytest.fixture
def nq():
    return Instrument.objects.get(symbol="NQ")


@pytest.fixture
def account():
    return services.account_default_get()


@pytest.fixture
def admin(admin_user):
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(admin_user)
    return client


@pytest.fixture
def viewer():
    """Staff with view permissions only: sees the decision pages, may take no decision."""
    user = user_with("viewer", *(f"trading.view_{m}" for m in (
        "account", "recommendation", "tradingconfig", "killswitch", "auditevent")))
    user.is_staff = True
    user.save()
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(user)
    return client


@pytest.fixture
def pending(nq):
    now = timezone.now()
    FeedStatus.objects.create(instrument=nq, timeframe="1m", source="test", running=True, heartbeat_at=now,
                              last_bar_received_at=now)
    bars = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq)).pk, now=close_time(bars[-1]))
    assert recommendation.state == Recommendation.State.PENDING
    return recommendation


@pytest.fixture
def traded(pending, nq, admin_user):
    """Approved and filled: an order, a fill, a position and an equity snapshot exist."""
    services.recommendation_approve(recommendation_id=pending.pk, user=admin_user)
    services.bar_settle(bar_id=bar_at(nq, 3, open_="18001", close="18002").pk)
    return pending


def action(client, model: str, name: str, *pks):
    return client.post(f"/admin/trading/{model}/", {"action": name, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks],
                                                     "index": 0}, follow=True)


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- pages render -----------------------------------------------------------------------------------------------


MODELS = ("account", "killswitch", "tradingconfig", "recommendation", "auditevent", "order", "fill", "position",
          "equitysnapshot")


@pytest.mark.parametrize("model", MODELS)
def test_changelists_render_for_a_superuser(admin, traded, model):
    response = admin.get(f"/admin/trading/{model}/")

    assert response.status_code == 200, response.get("Location")


def _one_of(model: str):
    return {"account": Account, "killswitch": KillSwitch, "tradingconfig": TradingConfig,
            "recommendation": Recommendation, "auditevent": AuditEvent, "order": Order, "fill": Fill,
            "position": Position, "equitysnapshot": EquitySnapshot}[model].objects.first()


@pytest.mark.parametrize("model", MODELS)
def test_change_pages_render_for_a_superuser(admin, traded, model):
    obj = _one_of(model)

    response = admin.get(f"/admin/trading/{model}/{obj.pk}/change/")

    assert response.status_code == 200


def test_account_changelist_shows_equity_figures_and_controls(admin, traded, account):
    response = admin.get("/admin/trading/account/")
    html = response.content.decode()

    for column in ("column-equity", "column-daily_pnl", "column-drawdown", "column-auto_trading",
                   "column-trading_state", "column-circuit_breaker"):
        assert column in html
    summary = selectors.account_summary(account=account)
    assert summary["equity"] != "100000.00"  # the open position is marked
    assert f'<td class="field-equity">{summary["equity"]}</td>' in html


@pytest.mark.parametrize(("query", "expected"), [
    ("", 1), ("?state__exact=pending", 1), ("?state__exact=approved", 0), ("?q=NQ", 1), ("?q=ZZZ", 0),
    ("?instrument__id__exact={nq}", 1), ("?account__id__exact={account}", 1),
])
def test_recommendation_changelist_filters_and_searches(admin, pending, nq, account, query, expected):
    response = admin.get("/admin/trading/recommendation/" + query.format(nq=nq.pk, account=account.pk))

    assert response.status_code == 200, response.get("Location")
    assert response.context["cl"].result_count == expected


# --- actions through the services ---------------------------------------------------------------------------------


def test_approve_action_approves_through_the_service_and_is_audited(admin, admin_user, pending):
    response = action(admin, "recommendation", "approve", pending.pk)

    assert any("Approved" in text for text in texts(response))
    pending.refresh_from_db()
    assert pending.state == "approved"
    assert Order.objects.filter(recommendation=pending).count() == 1
    audit = AuditEvent.objects.get(action="approve")
    assert (audit.user, audit.client_address) == (admin_user, ADDRESS)


def test_reject_action_rejects_and_is_audited(admin, pending):
    action(admin, "recommendation", "reject", pending.pk)

    pending.refresh_from_db()
    assert pending.state == "rejected"
    assert AuditEvent.objects.get(action="reject").client_address == ADDRESS


def test_approving_twice_in_the_admin_reports_the_refusal_and_places_one_order(admin, pending):
    action(admin, "recommendation", "approve", pending.pk)

    response = action(admin, "recommendation", "approve", pending.pk)

    assert any("only a pending one can be approved" in text for text in texts(response))
    assert Order.objects.count() == 1


def test_a_stale_recommendation_is_reported_and_expires(admin, pending, nq):
    for i in (3, 4, 5):
        bar_at(nq, i)

    response = action(admin, "recommendation", "approve", pending.pk)

    assert any("stale" in text for text in texts(response))
    pending.refresh_from_db()
    assert pending.state == "expired"
    assert not Order.objects.exists()


def test_a_user_without_the_permission_is_refused_with_a_message(viewer, pending):
    response = action(viewer, "recommendation", "approve", pending.pk)

    assert response.status_code == 200
    assert any("trading.approve_recommendation" in text for text in texts(response))
    pending.refresh_from_db()
    assert pending.state == "pending"
    assert not Order.objects.exists()
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["refused"]  # the attempt, not a decision


def test_auto_trading_actions_toggle_through_the_service_and_are_audited(admin, admin_user, account):
    action(admin, "account", "auto_trading_on", account.pk)
    account.refresh_from_db()
    assert account.auto_trading is True

    action(admin, "account", "auto_trading_off", account.pk)
    account.refresh_from_db()
    assert account.auto_trading is False
    audits = list(AuditEvent.objects.filter(action="auto_trading").order_by("id"))
    assert [(a.state_before, a.state_after, a.user, a.client_address) for a in audits] == [
        ("off", "on", admin_user, ADDRESS), ("on", "off", admin_user, ADDRESS)]


def test_auto_trading_action_without_the_permission_is_refused(viewer, account):
    response = action(viewer, "account", "auto_trading_on", account.pk)

    assert any("trading.toggle_auto_trading" in text for text in texts(response))
    account.refresh_from_db()
    assert account.auto_trading is False
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"], refused.account) == ("refused", "auto_trading", account)


def test_reset_circuit_breaker_action_resets_and_is_audited(admin, account):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    action(admin, "account", "reset_circuit_breaker", account.pk)

    account.refresh_from_db()
    assert not account.circuit_breaker_tripped and account.trading_state == "ACTIVE"
    assert AuditEvent.objects.get(action="breaker_reset").client_address == ADDRESS


def test_resetting_a_breaker_that_is_not_tripped_is_reported(admin, account):
    response = action(admin, "account", "reset_circuit_breaker", account.pk)

    assert any("not tripped" in text for text in texts(response))
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["refused"]


def test_halt_and_resume_actions_set_the_trading_state(admin, account):
    action(admin, "account", "halt_trading", account.pk)
    account.refresh_from_db()
    assert account.trading_state == "HALTED"

    action(admin, "account", "resume_trading", account.pk)
    account.refresh_from_db()
    assert account.trading_state == "ACTIVE"
    assert AuditEvent.objects.filter(action="trading_state").count() == 2


def test_account_switches_cannot_be_edited_on_the_form(admin, account):
    admin.post(f"/admin/trading/account/{account.pk}/change/",
               {"name": "paper", "auto_trading": "on", "trading_state": "HALTED", "starting_equity": "1"})

    account.refresh_from_db()
    assert (account.auto_trading, account.trading_state, account.starting_equity) == (
        False, "ACTIVE", Decimal("100000.00"))


def test_a_settlement_fault_cannot_be_cleared_on_the_form(admin, account):
    # Only a bar that settles clears it: a person editing the row must not release the block on new entries.
    Account.objects.filter(pk=account.pk).update(settlement_fault="bar X: RuntimeError: boom")
    admin.post(f"/admin/trading/account/{account.pk}/change/", {"name": "paper", "settlement_fault": ""})

    account.refresh_from_db()
    assert account.settlement_fault == "bar X: RuntimeError: boom"


def test_a_new_account_starts_at_its_peak(admin):
    response = admin.post("/admin/trading/account/add/", {"name": "small", "currency": "USD",
                                                          "starting_equity": "25000.00"})

    assert response.status_code == 302
    small = Account.objects.get(name="small")
    assert small.peak_equity == small.starting_equity == Decimal("25000.00")


def test_accounts_cannot_be_deleted(admin, account):
    assert admin.get(f"/admin/trading/account/{account.pk}/delete/").status_code == 403


# --- trading configuration --------------------------------------------------------------------------------------


CONFIG_FORM = {"kelly_fraction": "0.25", "min_confidence": "0.6", "max_contracts": "5", "max_position_contracts": "5",
               "max_total_contracts": "10", "daily_loss_limit": "2000.00", "max_drawdown": "0.1",
               "max_trades_per_day": "20", "stale_after_seconds": "180", "health_floor": "0.4", "health_full_size_floor": "0.7",
               "recommendation_ttl_bars": "2", "slippage_ticks": "1", "commission_per_contract": "2.50"}


@pytest.fixture
def config(account, nq):
    return services.trading_config_get(account=account, instrument=nq)


def test_saving_a_config_goes_through_the_service_and_is_audited(admin, admin_user, config):
    response = admin.post(f"/admin/trading/tradingconfig/{config.pk}/change/",
                          {**CONFIG_FORM, "kelly_fraction": "0.5", "daily_loss_limit": "1500.00"})

    assert response.status_code == 302
    config.refresh_from_db()
    assert (config.kelly_fraction, config.daily_loss_limit) == (0.5, Decimal("1500.00"))
    audit = AuditEvent.objects.get(action="config_change")
    assert (audit.user, audit.client_address) == (admin_user, ADDRESS)
    assert set(audit.details["after"]) == {"kelly_fraction", "daily_loss_limit"}


@pytest.mark.parametrize(("field", "value"), [("kelly_fraction", "0"), ("kelly_fraction", "1.5"),
                                              ("min_confidence", "0.4"), ("min_confidence", "1.0"),
                                              ("daily_loss_limit", "-1")])
def test_an_invalid_config_is_refused_on_the_form_and_changes_nothing(admin, config, field, value):
    response = admin.post(f"/admin/trading/tradingconfig/{config.pk}/change/", {**CONFIG_FORM, field: value})

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    config.refresh_from_db()
    assert (config.kelly_fraction, config.min_confidence, config.daily_loss_limit) == (0.25, 0.6, Decimal("2000"))
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"], list(refused.details["errors"])) == (
        "refused", "config_change", [field])


@pytest.mark.parametrize(("field", "value"), [("recommendation_ttl_bars", "2.9"), ("recommendation_ttl_bars", "1441"),
                                              ("max_position_contracts", "2445088"), ("slippage_ticks", "101"),
                                              ("health_floor", "nan"), ("stale_after_seconds", "inf"),
                                              ("max_contracts", "0"), ("commission_per_contract", "1000.01")])
def test_a_config_outside_the_settings_ranges_is_refused_on_the_form(admin, config, field, value):
    before = TradingConfig.objects.filter(pk=config.pk).values().get()

    response = admin.post(f"/admin/trading/tradingconfig/{config.pk}/change/", {**CONFIG_FORM, field: value})

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert TradingConfig.objects.filter(pk=config.pk).values().get() == before
    assert AuditEvent.objects.get().details["control"] == "config_change"


def test_the_config_form_states_the_ranges(admin, config):
    page = admin.get(f"/admin/trading/tradingconfig/{config.pk}/change/").content.decode()

    assert "in [1, 1440] bars" in page and "in [0, 100] ticks" in page


def test_a_new_config_is_created_and_its_non_default_values_audited(admin, account):
    es = Instrument.objects.create(symbol="ES", name="E-mini S&P 500", tick_size="0.25", point_value="50")

    response = admin.post("/admin/trading/tradingconfig/add/",
                          {**CONFIG_FORM, "account": account.pk, "instrument": es.pk, "max_contracts": "2"})

    assert response.status_code == 302
    config = TradingConfig.objects.get(account=account, instrument=es)
    assert config.max_contracts == 2
    assert AuditEvent.objects.get(action="config_change").details["after"] == {"max_contracts": 2}


def test_a_config_cannot_be_edited_by_a_viewer(viewer, config):
    response = viewer.post(f"/admin/trading/tradingconfig/{config.pk}/change/",
                           {**CONFIG_FORM, "kelly_fraction": "0.5"})

    assert response.status_code == 403
    config.refresh_from_db()
    assert config.kelly_fraction == 0.25
    refused = AuditEvent.objects.get()  # recorded after the admin's refused transaction, so it stays
    assert (refused.action, refused.details["control"], refused.account) == ("refused", "config_change",
                                                                            config.account)


# --- kill switch --------------------------------------------------------------------------------------------------


def test_the_kill_switch_is_set_through_the_service_and_audited(admin, admin_user):
    assert admin.get("/admin/trading/killswitch/add/").status_code == 403  # the one row is seeded

    response = admin.post("/admin/trading/killswitch/1/change/", {"engaged": "true", "reason": "outage"})

    assert response.status_code == 302
    switch = KillSwitch.objects.get(pk=1)
    assert (switch.engaged, switch.reason, switch.changed_by) == (True, "outage", admin_user)
    audit = AuditEvent.objects.get(action="kill_switch")
    assert (audit.state_after, audit.client_address) == ("engaged", ADDRESS)

    admin.post("/admin/trading/killswitch/1/change/", {"engaged": "false", "reason": "back"})

    switch.refresh_from_db()
    assert switch.engaged is False
    assert AuditEvent.objects.filter(action="kill_switch").count() == 2


@pytest.mark.parametrize("form", [{"reason": "typo fixed"}, {"engaged": "", "reason": "x"}, {"engaged": "on"},
                                  {"engaged": ["true", "false"], "reason": "x"}],
                         ids=["missing", "blank", "checkbox-on", "sent-twice"])
def test_the_kill_switch_form_never_releases_the_switch_unless_asked_to(admin, admin_user, form):
    services.kill_switch_set(engaged=True, reason="outage", user=admin_user)

    response = admin.post("/admin/trading/killswitch/1/change/", form)

    assert response.status_code == 200
    assert "engaged" in response.context["adminform"].form.errors
    switch = KillSwitch.objects.get(pk=1)
    assert (switch.engaged, switch.reason) == (True, "outage")
    refused = AuditEvent.objects.get(action="refused")
    assert (refused.details["control"], refused.user, refused.client_address) == ("kill_switch", admin_user, ADDRESS)


def test_a_kill_switch_reason_longer_than_the_service_takes_is_a_form_error(admin):
    response = admin.post("/admin/trading/killswitch/1/change/", {"engaged": "true", "reason": "x" * 1001})

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert KillSwitch.objects.get(pk=1).engaged is False


def test_a_kill_switch_reason_with_a_control_character_is_a_form_error(admin):
    response = admin.post("/admin/trading/killswitch/1/change/", {"engaged": "true", "reason": "drill\u001b[2J"})

    assert response.status_code == 200
    assert "U+001B" in str(response.context["adminform"].form.errors["reason"])
    assert KillSwitch.objects.get(pk=1).engaged is False


def test_the_kill_switch_page_shows_the_state_now_and_preselects_nothing(admin, admin_user):
    services.kill_switch_set(engaged=True, reason="outage", user=admin_user)

    page = admin.get("/admin/trading/killswitch/1/change/").content.decode()

    assert "ENGAGED" in page
    assert 'value="true"' in page and 'value="false"' in page and "checked" not in page


def test_the_kill_switch_cannot_be_set_by_a_viewer(viewer):
    response = viewer.post("/admin/trading/killswitch/1/change/", {"engaged": "true", "reason": "x"})

    assert response.status_code == 403
    assert KillSwitch.objects.get(pk=1).engaged is False
    refused = AuditEvent.objects.get()  # the attempt, recorded after the admin's refused transaction
    assert (refused.action, refused.details["control"], refused.client_address) == ("refused", "kill_switch", ADDRESS)


# --- instruments --------------------------------------------------------------------------------------------------


def test_an_instruments_terms_are_read_only_once_it_has_traded(admin, traded, nq):
    form = {"symbol": "NQ", "name": "Nasdaq", "exchange": "CME", "tick_size": "5", "point_value": "1",
            "currency": "EUR", "active": "on"}

    response = admin.post(f"/admin/trading/instrument/{nq.pk}/change/", form)

    assert response.status_code == 302
    nq.refresh_from_db()
    assert (nq.name, nq.tick_size, nq.point_value, nq.currency) == ("Nasdaq", Decimal("0.25"), Decimal("20"), "USD")
    assert services.account_reconcile(account=traded.account).clean


def test_an_instruments_terms_can_be_corrected_before_it_trades(admin):
    es = Instrument.objects.create(symbol="ES", name="E-mini S&P 500", tick_size="0.01", point_value="1")

    admin.post(f"/admin/trading/instrument/{es.pk}/change/", {"symbol": "ES", "name": "E-mini S&P 500",
                                                              "exchange": "CME", "tick_size": "0.25",
                                                              "point_value": "50", "currency": "USD"})

    es.refresh_from_db()
    assert (es.tick_size, es.point_value) == (Decimal("0.25"), Decimal("50"))


# --- read-only rows ---------------------------------------------------------------------------------------------


READ_ONLY = ("recommendation", "auditevent", "order", "fill", "position", "equitysnapshot")


@pytest.mark.parametrize("model", READ_ONLY)
def test_read_only_models_refuse_add_change_and_delete(admin, traded, model):
    obj = _one_of(model)

    assert admin.get(f"/admin/trading/{model}/add/").status_code == 403
    assert admin.post(f"/admin/trading/{model}/{obj.pk}/change/", {}).status_code == 403
    assert admin.get(f"/admin/trading/{model}/{obj.pk}/delete/").status_code == 403
    assert admin.post(f"/admin/trading/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = action(admin, model, "delete_selected", obj.pk)
    assert bulk.status_code == 200
    assert type(obj).objects.filter(pk=obj.pk).exists()
