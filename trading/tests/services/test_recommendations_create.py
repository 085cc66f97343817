"""Sizing a prediction: what the recommendation holds, when it is blocked, auto-trading, retries."""
from datetime import timedelta
from decimal import Decimal

import pytest

from trading import services
from trading.models import Account, AuditEvent, KillSwitch, Order, Recommendation, TradingConfig
from trading.tests.decisions import close_time, flat_bars, model_version, prediction, user_with

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
State = Recommendation.State


def recommend(nq, *, now_offset=timedelta(0), start=0, **kwargs):
    made = flat_bars(nq, 3, start=start)
    version = model_version(nq, health_score=kwargs.pop("health_score", 100.0))
    made_prediction = prediction(made[-1], version, **kwargs)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=made_prediction.pk, now=close_time(made[-1]) + now_offset)
    return recommendation


def test_a_retried_sizing_returns_the_recommendation_it_made_before(nq):
    made = flat_bars(nq, 3)
    made_prediction = prediction(made[-1], model_version(nq))
    first = services.recommendations_create_for_prediction(prediction_id=made_prediction.pk, now=close_time(made[-1]))
    again = services.recommendations_create_for_prediction(prediction_id=made_prediction.pk, now=close_time(made[-1]))
    assert [r.pk for r in first] == [r.pk for r in again]
    assert Recommendation.objects.count() == 1


def test_the_recommendation_keeps_the_bracket_from_the_model_versions_labels_and_the_predicted_atr(nq):
    recommendation = recommend(nq, atr=12.0)
    assert recommendation.stop_distance == Decimal("12.0")
    assert recommendation.take_profit_distance == Decimal("18.00")
    assert recommendation.payoff_ratio == 1.5 and recommendation.horizon_bars == 30
    assert recommendation.reference_price == Decimal("18000")


def test_a_probability_under_the_confidence_threshold_is_blocked_with_zero_contracts(nq):
    recommendation = recommend(nq, p=0.55)
    assert recommendation.state == State.BLOCKED and recommendation.contracts == 0
    assert any("0.6" in reason for reason in recommendation.reasons)


def test_a_model_health_under_the_floor_blocks(nq):
    recommendation = recommend(nq, health_score=30.0)
    assert recommendation.state == State.BLOCKED
    assert any("health" in reason.lower() for reason in recommendation.reasons)


def test_model_health_under_the_full_size_floor_scales_the_size_down_and_says_why(nq):
    healthy = recommend(nq, p=0.62)
    weaker = recommend(nq, p=0.62, health_score=50.0, start=3)
    # Linear from the full-size floor (70) down to the blocking floor (40): 50 is a third of the way up.
    assert weaker.kelly["health_factor"] == pytest.approx(1 / 3)
    assert Decimal(weaker.kelly["raw_contracts"]) < Decimal(healthy.kelly["raw_contracts"])
    assert any("under the full-size floor 70" in reason and "x0.33" in reason for reason in weaker.reasons)
    assert not any("health" in reason for reason in healthy.reasons if "floor" in reason and "under" in reason)


@pytest.mark.parametrize("score", [70.0, 85.0, 100.0])
def test_model_health_at_or_above_the_full_size_floor_sizes_in_full(nq, score):
    recommendation = recommend(nq, p=0.62, health_score=score)
    assert recommendation.kelly["health_factor"] == 1.0


def test_the_health_floors_are_the_accounts_settings(nq):
    TradingConfig.objects.filter(instrument=nq).update(health_floor=0.2, health_full_size_floor=0.9)
    recommendation = recommend(nq, p=0.62, health_score=55.0)
    assert recommendation.kelly["health_factor"] == pytest.approx((0.55 - 0.2) / (0.9 - 0.2))


def test_an_unscored_version_without_a_validated_edge_is_not_sized(nq):
    recommendation = recommend(nq, health_score=None)  # the helper's version has has_edge False
    assert recommendation.state == State.BLOCKED and recommendation.contracts == 0
    assert any("not scored yet and no validated edge" in reason for reason in recommendation.reasons)


def test_an_unscored_version_with_a_validated_edge_sizes_in_full(nq):
    made = flat_bars(nq, 3)
    version = model_version(nq, health_score=None)
    version.has_edge = True
    version.save(update_fields=["has_edge"])
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(made[-1], version).pk, now=close_time(made[-1]))
    assert recommendation.kelly["health_factor"] == 1.0 and recommendation.contracts > 0


def test_a_volatility_spike_scales_the_size_down(nq):
    recommendation = recommend(nq, p=0.62, atr=20.0, atr_reference=10.0)
    assert recommendation.kelly["volatility_factor"] == pytest.approx(0.5)


def test_a_stale_last_bar_blocks(nq):
    recommendation = recommend(nq, now_offset=timedelta(minutes=5))
    assert recommendation.state == State.BLOCKED
    assert any("old" in reason for reason in recommendation.reasons)


def test_the_kill_switch_blocks_every_recommendation(nq):
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    recommendation = recommend(nq)
    assert recommendation.state == State.BLOCKED
    assert any("kill switch" in reason.lower() for reason in recommendation.reasons)


def test_the_position_limit_reduces_the_size(nq):
    TradingConfig.objects.filter(instrument=nq).update(max_position_contracts=2)
    recommendation = recommend(nq)
    assert recommendation.kelly_contracts == 5
    assert (recommendation.risk_decision, recommendation.contracts, recommendation.state) == ("reduce", 2, "pending")


def test_with_auto_trading_off_nothing_is_approved_without_a_person(nq):
    recommendation = recommend(nq)
    assert recommendation.state == State.PENDING and not Order.objects.exists()


def test_with_auto_trading_on_a_risk_approved_recommendation_is_approved_with_no_person_and_audited(nq):
    Account.objects.filter(name="paper").update(auto_trading=True)
    recommendation = recommend(nq)
    assert recommendation.state == State.APPROVED and recommendation.decided_by is None
    assert Order.objects.get(recommendation=recommendation).quantity == recommendation.contracts
    audit = AuditEvent.objects.get(recommendation=recommendation)
    assert (audit.action, audit.user) == ("auto_approve", None)


def test_with_auto_trading_on_a_blocked_recommendation_is_not_executed(nq):
    Account.objects.filter(name="paper").update(auto_trading=True)
    recommendation = recommend(nq, p=0.55)
    assert recommendation.state == State.BLOCKED and not Order.objects.exists()


def test_turning_auto_trading_on_needs_the_permission_and_is_audited(nq, viewer):
    account = Account.objects.get(name="paper")
    with pytest.raises(services.PermissionRefused, match="trading.toggle_auto_trading"):
        services.auto_trading_set(account_id=account.pk, enabled=True, user=viewer)
    account.refresh_from_db()
    assert account.auto_trading is False
    operator = user_with("operator", "trading.toggle_auto_trading")
    services.auto_trading_set(account_id=account.pk, enabled=True, user=operator, client_address="192.0.2.1")
    account.refresh_from_db()
    assert account.auto_trading is True
    audit = AuditEvent.objects.get(action="auto_trading")
    assert (audit.user, audit.state_before, audit.state_after, audit.client_address) == (
        operator, "off", "on", "192.0.2.1")


def test_resetting_the_circuit_breaker_needs_the_permission_reactivates_and_is_audited(nq, viewer):
    account = Account.objects.get(name="paper")
    services.circuit_breaker_trip(account_id=account.pk, reason="test loss")
    with pytest.raises(services.PermissionRefused):
        services.circuit_breaker_reset(account_id=account.pk, user=viewer)
    operator = user_with("operator", "trading.reset_circuit_breaker")
    services.circuit_breaker_reset(account_id=account.pk, user=operator)
    account.refresh_from_db()
    assert not account.circuit_breaker_tripped and account.trading_state == "ACTIVE"
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "breaker_trip", "refused", "breaker_reset"]  # the viewer's refused attempt is on record too


def test_a_config_change_is_validated_whole_and_audited(nq):
    operator = user_with("operator", "trading.change_tradingconfig")
    config = TradingConfig.objects.get(instrument=nq)
    from django.core.exceptions import ValidationError
    with pytest.raises(ValidationError, match="kelly_fraction"):
        services.trading_config_update(config_id=config.pk, changes={"kelly_fraction": 1.5, "max_contracts": 3},
                                       user=operator)
    config.refresh_from_db()
    assert (config.kelly_fraction, config.max_contracts) == (0.25, 5)
    services.trading_config_update(config_id=config.pk, changes={"kelly_fraction": 0.5}, user=operator)
    audit = AuditEvent.objects.get(action="config_change")
    assert audit.details["before"] == {"kelly_fraction": 0.25} and audit.details["after"] == {"kelly_fraction": 0.5}


def test_a_new_account_starts_at_its_own_peak_so_it_has_no_drawdown():
    from trading import selectors
    from trading.tests.factories import SERIES_ORIGIN

    account = Account.objects.create(name="small", starting_equity=Decimal("50000"))
    state = selectors.account_state(account=account, at=SERIES_ORIGIN)
    assert (state.equity, state.peak_equity, state.drawdown) == (Decimal("50000"), Decimal("50000"), 0.0)
