"""Controls and configuration: a control changes only by a real value in range, every change and every refused
attempt is audited, and the refusal's record survives the rollback of the refused change."""
import importlib
import math
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from trading import services
from trading.domain.config_ranges import CONFIG_RANGES
from trading.models import Account, AuditEvent, KillSwitch, Recommendation, TradingConfig
from trading.tests.decisions import close_time, flat_bars, model_version, prediction, user_with
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

CONTROLS = ("trading.toggle_auto_trading", "trading.reset_circuit_breaker", "trading.set_trading_state",
            "trading.engage_kill_switch", "trading.change_tradingconfig")
ADDRESS = "192.0.2.44"


@pytest.fixture
def controller():
    return user_with("controller", *CONTROLS)


@pytest.fixture
def account():
    return services.account_default_get()


@pytest.fixture
def config(account, nq):
    return services.trading_config_get(account=account, instrument=nq)


def refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).order_by("id"))


# --- the switches take real booleans only -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", "", 0, 1, None])
def test_the_kill_switch_is_switched_only_by_a_real_boolean(controller, value):
    services.kill_switch_set(engaged=True, reason="outage", user=controller)

    with pytest.raises(ValidationError) as refused:
        services.kill_switch_set(engaged=value, reason="typo", user=controller, client_address=ADDRESS)

    assert list(refused.value.message_dict) == ["engaged"]
    switch = KillSwitch.objects.get(pk=1)
    assert (switch.engaged, switch.reason) == (True, "outage")
    [record] = refusals()
    assert (record.user, record.details["control"], record.client_address) == (controller, "kill_switch", ADDRESS)
    assert "engaged" in record.details["reason"]


@pytest.mark.parametrize("value", ["false", "off", 0, None])
def test_auto_trading_is_switched_only_by_a_real_boolean(controller, account, value):
    services.auto_trading_set(account_id=account.pk, enabled=True, user=controller)

    with pytest.raises(ValidationError) as refused:
        services.auto_trading_set(account_id=account.pk, enabled=value, user=controller)

    assert list(refused.value.message_dict) == ["enabled"]
    account.refresh_from_db()
    assert account.auto_trading is True
    [record] = refusals()
    assert (record.details["control"], record.account) == ("auto_trading", account)


@pytest.mark.parametrize("state", ["PAUSED", "", None, ["HALTED"]])
def test_an_unknown_trading_state_is_refused_and_audited(controller, account, state):
    with pytest.raises(ValidationError):
        services.trading_state_set(account_id=account.pk, state=state, user=controller)

    account.refresh_from_db()
    assert account.trading_state == "ACTIVE"
    assert [r.details["control"] for r in refusals()] == ["trading_state"]


# --- refused attempts leave a record ----------------------------------------------------------------------------


def test_a_refusal_inside_the_change_is_audited_and_its_record_survives_the_rollback(controller, account):
    services.circuit_breaker_trip(account_id=account.pk, reason="daily loss")

    # Refused inside the service's transaction (the breaker is tripped): the change rolls back, the record stays.
    with pytest.raises(ValidationError, match="reset it first"):
        services.trading_state_set(account_id=account.pk, state="ACTIVE", user=controller, client_address=ADDRESS)

    account.refresh_from_db()
    assert account.trading_state == "HALTED"
    assert AuditEvent.objects.filter(action="trading_state").count() == 0
    [record] = refusals()
    assert (record.user, record.account, record.client_address) == (controller, account, ADDRESS)
    assert record.details["control"] == "trading_state"
    assert "reset it first" in record.details["reason"]


def test_resetting_a_breaker_that_is_not_tripped_is_a_refusal_on_record(controller, account):
    with pytest.raises(ValidationError, match="not tripped"):
        services.circuit_breaker_reset(account_id=account.pk, user=controller)

    [record] = refusals()
    assert (record.details["control"], record.account) == ("breaker_reset", account)


@pytest.mark.parametrize(("call", "control"), [
    (lambda user, account, config: services.kill_switch_set(engaged=True, user=user, client_address=ADDRESS),
     "kill_switch"),
    (lambda user, account, config: services.auto_trading_set(account_id=account.pk, enabled=True, user=user,
                                                             client_address=ADDRESS), "auto_trading"),
    (lambda user, account, config: services.trading_state_set(account_id=account.pk, state="HALTED", user=user,
                                                              client_address=ADDRESS), "trading_state"),
    (lambda user, account, config: services.circuit_breaker_reset(account_id=account.pk, user=user,
                                                                  client_address=ADDRESS), "breaker_reset"),
    (lambda user, account, config: services.trading_config_update(config_id=config.pk, changes={"max_contracts": 2},
                                                                  user=user, client_address=ADDRESS),
     "config_change"),
], ids=["kill_switch", "auto_trading", "trading_state", "breaker_reset", "config_change"])
def test_a_missing_permission_is_refused_and_audited(account, config, call, control):
    reader = user_with("reader")

    with pytest.raises(services.PermissionRefused):
        call(reader, account, config)

    [record] = refusals()
    assert (record.user, record.client_address, record.details["control"]) == (reader, ADDRESS, control)
    assert "needs the permission" in record.details["reason"]
    assert not AuditEvent.objects.exclude(action=AuditEvent.Action.REFUSED).exists()


@pytest.mark.parametrize("decide", [services.recommendation_approve, services.recommendation_reject])
def test_deciding_without_the_permission_is_audited_as_a_refusal(nq, decide):
    bars = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq)).pk, now=close_time(bars[-1]))
    reader = user_with("reader")

    with pytest.raises(services.PermissionRefused):
        decide(recommendation_id=recommendation.pk, user=reader)

    recommendation.refresh_from_db()
    assert recommendation.state == Recommendation.State.PENDING
    [record] = refusals()
    assert record.user == reader and "trading.approve_recommendation" in record.details["reason"]


def test_a_control_of_an_unknown_account_is_refused_on_record(controller):
    with pytest.raises(Account.DoesNotExist):
        services.auto_trading_set(account_id=987654, enabled=True, user=controller)

    [record] = refusals()
    assert record.account is None and record.details["account"] == 987654


# --- trading configuration ----------------------------------------------------------------------------------------


def test_every_editable_setting_has_a_range():
    editable = {f.name for f in TradingConfig._meta.concrete_fields} - {"id", "account", "instrument", "updated_at"}
    assert set(CONFIG_RANGES) == editable


def test_the_defaults_are_inside_their_ranges(account):
    config = TradingConfig(account=account, instrument=InstrumentFactory())
    config.full_clean()  # the fields' validators and the check constraints alike
    for name, setting in CONFIG_RANGES.items():
        assert setting.parse(getattr(config, name)) == getattr(config, name), name


@pytest.mark.parametrize(("name", "value"), [
    ("recommendation_ttl_bars", 228601184493597),
    ("recommendation_ttl_bars", 2_000_000_000),  # fits the column, and overflowed the expiry of every prediction
    ("slippage_ticks", 2**63 - 1),
    ("max_position_contracts", 2_445_088),
    ("health_floor", True),
    ("recommendation_ttl_bars", 2.9),
    ("stale_after_seconds", math.inf),
    ("kelly_fraction", math.nan),
    ("max_trades_per_day", "1e9"),
    ("daily_loss_limit", "1e20"),
    ("commission_per_contract", "0.001"),
    ("max_contracts", False),
])
def test_a_setting_outside_its_type_or_range_is_refused_and_nothing_changes(controller, config, name, value):
    before = TradingConfig.objects.filter(pk=config.pk).values().get()

    with pytest.raises(ValidationError) as refused:
        services.trading_config_update(config_id=config.pk, changes={"kelly_fraction": 0.5, name: value},
                                       user=controller, client_address=ADDRESS)

    assert list(refused.value.message_dict) == [name]
    assert TradingConfig.objects.filter(pk=config.pk).values().get() == before
    [record] = refusals()
    assert (record.details["control"], record.account, record.client_address) == ("config_change", config.account,
                                                                                   ADDRESS)
    assert record.details["requested"][name] == repr(value)[:80]
    assert not AuditEvent.objects.filter(action="config_change").exists()


def test_a_setting_name_with_a_nul_character_is_refused_and_recorded_not_a_server_error(controller, config):
    # PostgreSQL's jsonb cannot hold NUL: the refusal's record writes it out (found by the API fuzz test).
    with pytest.raises(ValidationError) as refused:
        services.trading_config_update(config_id=config.pk, changes={"\x00K": 1, "kelly_fraction": "\x00"},
                                       user=controller)
    assert "\x00K" in refused.value.message_dict
    [record] = refusals()
    assert "\\x00K" in record.details["requested"] and record.details["requested"]["kelly_fraction"] == "'\\x00'"


def test_a_kill_switch_reason_with_a_nul_character_is_refused(controller):
    with pytest.raises(ValidationError, match="NUL"):
        services.kill_switch_set(engaged=True, user=controller, reason="stop\x00")


@pytest.mark.parametrize("changes", [{"health_full_size_floor": 0.3}, {"health_floor": 0.8},
                                     {"health_floor": 0.6, "health_full_size_floor": 0.5}])
def test_a_full_size_floor_under_the_blocking_floor_is_refused_and_nothing_changes(controller, config, changes):
    before = TradingConfig.objects.filter(pk=config.pk).values().get()
    with pytest.raises(ValidationError) as refused:
        services.trading_config_update(config_id=config.pk, changes=changes, user=controller)
    assert list(refused.value.message_dict) == ["health_full_size_floor"]
    assert "must be at or above the blocking floor" in refused.value.message_dict["health_full_size_floor"][0]
    assert TradingConfig.objects.filter(pk=config.pk).values().get() == before


def test_sizing_still_works_after_an_overflowing_time_to_live_was_refused(controller, config, nq):
    with pytest.raises(ValidationError):
        services.trading_config_update(config_id=config.pk, changes={"recommendation_ttl_bars": 2_000_000_000},
                                       user=controller)
    bars = flat_bars(nq, 3)

    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq)).pk, now=close_time(bars[-1]))

    assert recommendation.state == Recommendation.State.PENDING


def test_numbers_sent_as_text_are_stored_with_their_settings_types(controller, config):
    services.trading_config_update(
        config_id=config.pk, user=controller,
        changes={"recommendation_ttl_bars": "3", "max_contracts": 4.0, "min_confidence": "0.65",
                 "daily_loss_limit": "1500.50", "commission_per_contract": 3, "slippage_ticks": "0"})

    config.refresh_from_db()
    assert (config.recommendation_ttl_bars, config.max_contracts, config.min_confidence, config.daily_loss_limit,
            config.commission_per_contract, config.slippage_ticks) == (3, 4, 0.65, Decimal("1500.50"),
                                                                        Decimal("3.00"), 0)
    audit = AuditEvent.objects.get(action="config_change")
    assert audit.details["after"]["recommendation_ttl_bars"] == 3 and audit.details["after"]["max_contracts"] == 4


def _outside(name: str) -> list:
    setting = CONFIG_RANGES[name]
    step = {int: 1, float: 1e-6, Decimal: Decimal("0.01")}[setting.kind]
    below = setting.low if setting.low_open else setting.low - step
    above = setting.high if setting.high_open else setting.high + step
    values = [below, above]
    if setting.kind is float:
        values.append(math.inf)
    return [(name, value) for value in values if not (setting.kind is int and value < 0)]


@pytest.mark.parametrize(("name", "value"), [case for name in CONFIG_RANGES for case in _outside(name)])
def test_the_database_refuses_every_setting_outside_its_range(config, name, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        TradingConfig.objects.filter(pk=config.pk).update(**{name: value})


@pytest.mark.skipif(connection.vendor != "postgresql", reason="drops and re-adds the constraints in the test's "
                                                               "transaction, which PostgreSQL undoes at its end")
def test_the_migration_moves_stored_settings_into_their_ranges_and_audits_each_move(config):
    migration = importlib.import_module("trading.migrations.0005_trading_config_ranges")
    ranges = [c for c in TradingConfig._meta.constraints if c.name.endswith("_range")]
    with connection.cursor() as cursor:
        # Rows the fixtures made in this transaction have deferred foreign-key checks pending, which forbid ALTER
        # TABLE until they have run; a migration sees committed rows only.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:  # a database as it was before the migration
        for constraint in ranges:
            editor.remove_constraint(TradingConfig, constraint)
    TradingConfig.objects.filter(pk=config.pk).update(
        recommendation_ttl_bars=2_000_000_000, max_position_contracts=2_445_088, max_contracts=0,
        stale_after_seconds=math.nan, daily_loss_limit=Decimal("99999999.99"), kelly_fraction=0.5)

    migration.settings_into_range(django_apps, None)

    config.refresh_from_db()
    assert (config.recommendation_ttl_bars, config.max_position_contracts, config.max_contracts,
            config.stale_after_seconds, config.daily_loss_limit, config.kelly_fraction) == (
        1440, 100, 1, 180.0, Decimal("10000000.00"), 0.5)
    audit = AuditEvent.objects.get(action="config_change")
    assert audit.account == config.account and audit.user is None
    assert audit.details["before"] == {"recommendation_ttl_bars": 2_000_000_000, "max_position_contracts": 2_445_088,
                                       "max_contracts": 0, "stale_after_seconds": "nan",
                                       "daily_loss_limit": "99999999.99"}
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:  # the rows now satisfy what the migration adds next
        for constraint in ranges:
            editor.add_constraint(TradingConfig, constraint)
    # The migration's copy of the ranges is the table's.
    for name, (low, high, low_open, high_open, default) in migration.RANGES.items():
        setting = CONFIG_RANGES[name]
        assert (setting.low, setting.high, setting.low_open, setting.high_open) == (low, high, low_open, high_open)
        assert TradingConfig._meta.get_field(name).default == default


def test_the_record_of_a_refused_change_is_bounded_whatever_the_body(controller, config):
    changes = {f"bogus_{i}_{'x' * 200}": "y" * 10_000 for i in range(500)}

    with pytest.raises(ValidationError) as refused:
        services.trading_config_update(config_id=config.pk, changes=changes, user=controller)

    assert len(refused.value.message_dict) == 500  # the answer names every bad setting
    [record] = refusals()
    assert len(record.details["errors"]) == 20 and len(record.details["requested"]) == 20
    assert len(record.details["reason"]) <= 1000
    assert all(len(name) <= 80 and len(value) <= 80 for name, value in record.details["requested"].items())
