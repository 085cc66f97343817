"""The pre-trade risk rules: one test per rule, the trading states, the Globex session clock, and properties."""
import json
import math
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.domain.risk import (
    CHECK_NAMES,
    Decision,
    Proposal,
    RiskContext,
    RiskLimits,
    RiskVerdict,
    TradingState,
    assess,
    in_session,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
LIMITS = RiskLimits()
TUESDAY_MORNING = datetime(2024, 3, 12, 15, 0, tzinfo=UTC)  # 11:00 EDT


def _context(**overrides) -> RiskContext:
    values = dict(now=TUESDAY_MORNING, trading_state=TradingState.ACTIVE, kill_switch=False,
                  circuit_breaker_tripped=False, position_contracts=0, total_contracts=0, daily_pnl=Decimal("0"),
                  drawdown=0.0, trades_today=0, last_bar_age_seconds=30.0, model_health=0.9)
    values.update(overrides)
    return RiskContext(**values)


def _long(contracts: int = 2, confidence: float = 0.7) -> Proposal:
    return Proposal("long", contracts, confidence)


def _short(contracts: int = 2, confidence: float = 0.7) -> Proposal:
    return Proposal("short", contracts, confidence)


def _check(verdict: RiskVerdict, name: str):
    return next(c for c in verdict.checks if c.name == name)


def _blocked_by(verdict: RiskVerdict, name: str) -> bool:
    return verdict.decision is Decision.BLOCK and verdict.contracts == 0 and not _check(verdict, name).passed


def _et(*args) -> datetime:
    """A New York wall-clock time as an aware UTC datetime."""
    return datetime(*args, tzinfo=NY).astimezone(UTC)


# ------------------------------------------------------------------------------------------------ approve

def test_a_trade_is_approved_in_full_when_every_rule_passes():
    verdict = assess(_long(3), _context(), LIMITS)
    assert verdict.decision is Decision.APPROVE
    assert verdict.contracts == 3
    assert verdict.reasons == ()
    assert all(c.passed for c in verdict.checks)
    assert not verdict.trip_circuit_breaker


def test_checks_list_every_rule_in_a_fixed_order():
    assert CHECK_NAMES == ("kill_switch", "trading_state", "circuit_breaker", "settlement", "daily_loss_limit",
                           "max_drawdown",
                           "max_trades_per_day", "stale_data", "model_health", "trading_session", "min_confidence",
                           "proposal", "position_limit", "total_limit", "loss_budget")
    approved = assess(_long(), _context(), LIMITS)
    everything_wrong = assess(Proposal("sideways", 0, math.nan), _context(
        trading_state=TradingState.HALTED, kill_switch=True, circuit_breaker_tripped=True, daily_pnl=Decimal("-5000"),
        settlement_fault="boom", drawdown=0.5, trades_today=99, last_bar_age_seconds=9999.0, model_health=0.0,
        now=datetime(2024, 3, 16, 12, 0, tzinfo=UTC)), LIMITS)
    for verdict in (approved, everything_wrong):
        assert tuple(c.name for c in verdict.checks) == CHECK_NAMES
        assert all(c.message for c in verdict.checks)


def test_every_failed_rule_is_listed_among_the_reasons():
    verdict = assess(_long(confidence=0.5), _context(kill_switch=True, drawdown=0.2), LIMITS)
    assert verdict.decision is Decision.BLOCK
    failed = [c.name for c in verdict.checks if not c.passed]
    assert failed == ["kill_switch", "max_drawdown", "min_confidence"]
    assert len(verdict.reasons) == 3
    assert "kill switch is on" in verdict.reasons[0]


# ------------------------------------------------------------------------------------------------ one test per rule

def test_the_kill_switch_blocks_every_trade():
    assert _blocked_by(assess(_long(), _context(kill_switch=True), LIMITS), "kill_switch")


def test_halted_trading_state_blocks_every_trade():
    for proposal, position in ((_long(), 0), (_short(), 3)):
        verdict = assess(proposal, _context(trading_state=TradingState.HALTED, position_contracts=position,
                                            total_contracts=abs(position)), LIMITS)
        assert _blocked_by(verdict, "trading_state")


def test_reducing_trading_state_blocks_a_trade_that_would_increase_the_position():
    for proposal, position in ((_long(), 0), (_long(), 2), (_short(), -2)):
        verdict = assess(proposal, _context(trading_state=TradingState.REDUCING, position_contracts=position,
                                            total_contracts=abs(position)), LIMITS)
        assert _blocked_by(verdict, "trading_state")


def test_reducing_trading_state_lets_a_trade_that_shrinks_the_position_through():
    verdict = assess(_short(2), _context(trading_state=TradingState.REDUCING, position_contracts=3,
                                         total_contracts=3), LIMITS)
    assert verdict.decision is Decision.APPROVE
    assert verdict.contracts == 2


def test_reducing_trading_state_cuts_a_trade_through_flat_down_to_flat():
    verdict = assess(_short(5), _context(trading_state=TradingState.REDUCING, position_contracts=2,
                                         total_contracts=2), LIMITS)
    assert verdict.decision is Decision.REDUCE
    assert verdict.contracts == 2
    assert verdict.reasons == ("trading state is REDUCING: only 2 of 5 contracts (to flat) may pass",)


def test_a_tripped_circuit_breaker_blocks_until_a_person_resets_it():
    verdict = assess(_long(), _context(circuit_breaker_tripped=True, daily_pnl=Decimal("500")), LIMITS)
    assert _blocked_by(verdict, "circuit_breaker")
    assert not verdict.trip_circuit_breaker


def test_reaching_the_daily_loss_limit_blocks_and_asks_to_trip_the_circuit_breaker():
    verdict = assess(_long(), _context(daily_pnl=Decimal("-2000.00")), LIMITS)
    assert _blocked_by(verdict, "daily_loss_limit")
    assert verdict.trip_circuit_breaker
    assert _check(verdict, "daily_loss_limit").message == "daily loss 2000.00 reached the limit 2000.00"


@pytest.mark.parametrize("pnl, message", [
    # What the account selector hands over: equity minus opening equity, both stored with ten places.
    (Decimal("0E-10"), "daily P&L 0.00 is within the loss limit 2000.00"),
    (Decimal("-0E-10"), "daily P&L 0.00 is within the loss limit 2000.00"),
    (Decimal("-12.5000000000"), "daily P&L -12.50 is within the loss limit 2000.00"),
    # Cents would print this loss as the limit itself; the message must not say -2000.00 is within 2000.00.
    (Decimal("-1999.996"), "daily P&L -1999.996 is within the loss limit 2000.00"),
])
def test_the_daily_pnl_is_stated_in_cents_however_it_was_stored(pnl, message):
    assert _check(assess(_long(), _context(daily_pnl=pnl), LIMITS), "daily_loss_limit").message == message


def test_an_absurd_daily_pnl_blocks_with_a_message_instead_of_raising():
    verdict = assess(_long(), _context(daily_pnl=Decimal("-1E+30")), LIMITS)
    assert _blocked_by(verdict, "daily_loss_limit")
    assert _check(verdict, "daily_loss_limit").message == "daily loss 1E+30 reached the limit 2000.00"


def test_a_loss_past_the_limit_by_less_than_a_cent_is_stated_exactly():
    message = _check(assess(_long(), _context(daily_pnl=Decimal("-2000.004")), LIMITS), "daily_loss_limit").message
    assert message == "daily loss 2000.004 reached the limit 2000.00"


def test_a_loss_under_the_daily_limit_neither_blocks_nor_trips_the_breaker():
    verdict = assess(_long(), _context(daily_pnl=Decimal("-1999.99")), LIMITS)
    assert verdict.decision is Decision.APPROVE
    assert not verdict.trip_circuit_breaker


def test_an_already_tripped_breaker_is_not_asked_to_trip_again():
    verdict = assess(_long(), _context(daily_pnl=Decimal("-2500"), circuit_breaker_tripped=True), LIMITS)
    assert verdict.decision is Decision.BLOCK
    assert not _check(verdict, "daily_loss_limit").passed
    assert not verdict.trip_circuit_breaker


def test_the_daily_loss_limit_trips_even_when_another_rule_already_blocks():
    verdict = assess(_long(), _context(daily_pnl=Decimal("-3000"), kill_switch=True), LIMITS)
    assert verdict.trip_circuit_breaker


def test_a_zero_daily_loss_limit_allows_a_flat_day_but_not_a_loss():
    limits = RiskLimits(daily_loss_limit=Decimal(0))
    assert assess(_long(), _context(daily_pnl=Decimal(0)), limits).decision is Decision.APPROVE
    assert assess(_long(), _context(daily_pnl=Decimal("-0.01")), limits).trip_circuit_breaker


def test_drawdown_at_the_maximum_blocks():
    assert _blocked_by(assess(_long(), _context(drawdown=0.10), LIMITS), "max_drawdown")
    assert assess(_long(), _context(drawdown=0.0999), LIMITS).decision is Decision.APPROVE


def test_max_trades_per_day_blocks_once_reached():
    assert _blocked_by(assess(_long(), _context(trades_today=20), LIMITS), "max_trades_per_day")
    assert assess(_long(), _context(trades_today=19), LIMITS).decision is Decision.APPROVE


def test_a_stale_last_bar_blocks():
    assert _blocked_by(assess(_long(), _context(last_bar_age_seconds=180.5), LIMITS), "stale_data")
    assert assess(_long(), _context(last_bar_age_seconds=180.0), LIMITS).decision is Decision.APPROVE


def test_a_last_bar_from_the_future_blocks_as_a_clock_problem():
    verdict = assess(_long(), _context(last_bar_age_seconds=-60.0), LIMITS)
    assert _blocked_by(verdict, "stale_data")
    assert "future" in _check(verdict, "stale_data").message


def test_model_health_under_the_floor_blocks():
    assert _blocked_by(assess(_long(), _context(model_health=0.39), LIMITS), "model_health")
    assert assess(_long(), _context(model_health=0.40), LIMITS).decision is Decision.APPROVE


def test_trading_outside_the_session_blocks():
    saturday = datetime(2024, 3, 16, 15, 0, tzinfo=UTC)
    verdict = assess(_long(), _context(now=saturday), LIMITS)
    assert _blocked_by(verdict, "trading_session")
    assert _check(verdict, "trading_session").message == "market is closed at Sat 2024-03-16 11:00 EDT"


def test_confidence_under_the_minimum_blocks():
    assert _blocked_by(assess(_long(confidence=0.59), _context(), LIMITS), "min_confidence")
    assert assess(_long(confidence=0.60), _context(), LIMITS).decision is Decision.APPROVE


def test_a_value_just_under_a_limit_is_not_printed_as_equal_to_it():
    verdict = assess(_long(confidence=0.5999), _context(model_health=0.39999, drawdown=0.09999), LIMITS)
    assert _check(verdict, "min_confidence").message == "confidence 0.5999 is under the minimum 0.60"
    assert _check(verdict, "model_health").message == "model health 0.39999 is under the floor 0.40"
    assert _check(verdict, "max_drawdown").message == "drawdown 9.9990% is under the maximum 10.0%"


@pytest.mark.parametrize("proposal", [Proposal("long", 0, 0.7), Proposal("short", -1, 0.7),
                                      Proposal("flat", 1, 0.7), Proposal("long", 1.5, 0.7)])
def test_a_proposal_without_a_side_or_a_positive_whole_size_blocks(proposal):
    assert _blocked_by(assess(proposal, _context(), LIMITS), "proposal")


def test_the_position_limit_reduces_a_trade_to_what_fits():
    verdict = assess(_long(4), _context(position_contracts=3, total_contracts=3), LIMITS)
    assert verdict.decision is Decision.REDUCE
    assert verdict.contracts == 2
    assert verdict.reasons == ("position limit 5 (net position 3) leaves room for 2 of 4 contracts",)


def test_the_position_limit_blocks_when_no_room_is_left():
    verdict = assess(_short(1), _context(position_contracts=-5, total_contracts=5), LIMITS)
    assert _blocked_by(verdict, "position_limit")


def test_the_position_limit_never_cuts_a_trade_that_closes_the_position():
    # Already over the limit (say the limit was lowered): closing all 7 is allowed; going beyond flat is limited.
    closing = assess(_short(7), _context(position_contracts=7, total_contracts=7), LIMITS)
    assert closing.decision is Decision.APPROVE and closing.contracts == 7
    flipping = assess(_short(14), _context(position_contracts=7, total_contracts=7), LIMITS)
    assert flipping.decision is Decision.REDUCE and flipping.contracts == 12  # 7 to flat + 5 short


def test_the_total_limit_reduces_a_trade_to_what_fits_across_instruments():
    verdict = assess(_long(3), _context(position_contracts=0, total_contracts=8), LIMITS)
    assert verdict.decision is Decision.REDUCE
    assert verdict.contracts == 2
    assert not _check(verdict, "total_limit").passed
    assert _check(verdict, "position_limit").passed


def test_the_total_limit_blocks_when_no_room_is_left():
    assert _blocked_by(assess(_long(1), _context(position_contracts=2, total_contracts=10), LIMITS), "total_limit")


def test_the_total_limit_never_cuts_a_trade_that_closes_a_position():
    verdict = assess(_short(4), _context(position_contracts=4, total_contracts=12), LIMITS)
    assert verdict.decision is Decision.APPROVE and verdict.contracts == 4


@pytest.mark.parametrize("overrides", [
    dict(drawdown=math.nan), dict(model_health=math.nan), dict(last_bar_age_seconds=math.inf),
    dict(daily_pnl=Decimal("NaN")), dict(trades_today=None), dict(now=datetime(2024, 3, 12, 15, 0)),
    dict(position_contracts=None), dict(total_contracts=2.5),
])
def test_a_value_that_cannot_be_checked_blocks_instead_of_raising(overrides):
    verdict = assess(_long(), _context(**overrides), LIMITS)
    assert verdict.decision is Decision.BLOCK
    assert verdict.contracts == 0
    assert verdict.reasons


def test_verdict_as_dict_is_json_ready():
    verdict = assess(_long(4), _context(position_contracts=3, total_contracts=3, daily_pnl=Decimal("-2500")), LIMITS)
    as_dict = verdict.as_dict()
    assert as_dict["decision"] == "block"
    assert as_dict["contracts"] == 0
    assert as_dict["trip_circuit_breaker"] is True
    assert [c["name"] for c in as_dict["checks"]] == list(CHECK_NAMES)
    assert as_dict["reasons"] == list(verdict.reasons)
    json.dumps(as_dict, allow_nan=False)


# ------------------------------------------------------------------------------------------------ limits

@pytest.mark.parametrize("field, value", [
    ("min_confidence", 0.4), ("min_confidence", 1.0), ("min_confidence", math.nan),
    ("max_position_contracts", -1), ("max_position_contracts", 2.0), ("max_total_contracts", -3),
    ("daily_loss_limit", Decimal("-1")), ("daily_loss_limit", Decimal("NaN")), ("daily_loss_limit", 2000.0),
    ("max_drawdown", 0.0), ("max_drawdown", 1.1), ("max_trades_per_day", -1),
    ("stale_after_seconds", -5.0), ("stale_after_seconds", math.inf),
    ("health_floor", -0.1), ("health_floor", 1.1),
    ("session_timezone", "Mars/Olympus_Mons"), ("session_open", "18:00"),
    ("session_close", time(17, 0, tzinfo=UTC)),
])
def test_limits_reject_a_value_out_of_range_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})


def test_limits_accept_zero_for_every_limit_that_may_be_zero():
    RiskLimits(max_position_contracts=0, max_total_contracts=0, daily_loss_limit=Decimal(0), max_trades_per_day=0,
               stale_after_seconds=0.0, health_floor=0.0)


def test_default_limits_are_the_issue_defaults():
    assert (LIMITS.min_confidence, LIMITS.max_position_contracts, LIMITS.max_total_contracts,
            LIMITS.daily_loss_limit, LIMITS.max_drawdown, LIMITS.max_trades_per_day, LIMITS.stale_after_seconds,
            LIMITS.health_floor) == (0.60, 5, 10, Decimal("2000"), 0.10, 20, 180.0, 0.40)
    assert (LIMITS.session_timezone, LIMITS.session_open, LIMITS.session_close) == \
        ("America/New_York", time(18, 0), time(17, 0))


# ------------------------------------------------------------------------------------------------ the session clock

@pytest.mark.parametrize("local, expected", [
    ((2024, 1, 7, 17, 59), False),  # Sunday before the open
    ((2024, 1, 7, 18, 0), True),  # Sunday open
    ((2024, 1, 8, 9, 30), True),  # Monday morning
    ((2024, 1, 8, 16, 59), True),
    ((2024, 1, 8, 17, 0), False),  # daily break
    ((2024, 1, 8, 17, 59), False),
    ((2024, 1, 8, 18, 0), True),  # the next session opens
    ((2024, 1, 12, 16, 59), True),  # Friday before the close
    ((2024, 1, 12, 17, 0), False),  # Friday close: the weekend
    ((2024, 1, 12, 18, 30), False),  # no Friday-evening session
    ((2024, 1, 13, 12, 0), False),  # Saturday
    ((2024, 1, 14, 12, 0), False),  # Sunday afternoon
])
def test_the_session_is_cme_globex_hours_in_new_york(local, expected):
    assert in_session(_et(*local), LIMITS) is expected


def test_the_sunday_open_moves_an_hour_earlier_in_utc_when_daylight_saving_starts():
    # 10 March 2024 is the spring-forward Sunday: the open is 18:00 EDT = 22:00 UTC; a week before, 23:00 UTC.
    assert in_session(datetime(2024, 3, 10, 22, 0, tzinfo=UTC), LIMITS)
    assert not in_session(datetime(2024, 3, 10, 21, 59, tzinfo=UTC), LIMITS)
    assert not in_session(datetime(2024, 3, 3, 22, 30, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 3, 3, 23, 0, tzinfo=UTC), LIMITS)


def test_the_sunday_open_moves_an_hour_later_in_utc_when_daylight_saving_ends():
    # 3 November 2024 is the fall-back Sunday: the open is 18:00 EST = 23:00 UTC; a week before, 22:00 UTC.
    assert not in_session(datetime(2024, 11, 3, 22, 30, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 11, 3, 23, 0, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 10, 27, 22, 0, tzinfo=UTC), LIMITS)


def test_the_daily_break_and_the_friday_close_follow_new_york_time_across_daylight_saving():
    # Summer: the break is 21:00-22:00 UTC; winter: 22:00-23:00 UTC.
    assert not in_session(datetime(2024, 7, 10, 21, 30, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 7, 10, 22, 30, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 1, 10, 21, 30, tzinfo=UTC), LIMITS)
    assert not in_session(datetime(2024, 1, 10, 22, 30, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 7, 12, 20, 59, tzinfo=UTC), LIMITS)
    assert not in_session(datetime(2024, 7, 12, 21, 0, tzinfo=UTC), LIMITS)
    assert in_session(datetime(2024, 1, 12, 21, 59, tzinfo=UTC), LIMITS)
    assert not in_session(datetime(2024, 1, 12, 22, 0, tzinfo=UTC), LIMITS)


@pytest.mark.parametrize("week_start", [datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 11, 2, tzinfo=UTC),
                                        datetime(2024, 6, 1, tzinfo=UTC)])
def test_a_week_holds_five_23_hour_sessions_even_across_a_daylight_saving_change(week_start):
    minutes = sum(in_session(week_start + timedelta(minutes=m), LIMITS) for m in range(7 * 24 * 60))
    assert minutes == 5 * 23 * 60


def test_any_aware_clock_gives_the_same_answer_as_utc():
    chicago = ZoneInfo("America/Chicago")
    for utc in (datetime(2024, 3, 10, 22, 0, tzinfo=UTC), datetime(2024, 7, 12, 21, 0, tzinfo=UTC)):
        assert in_session(utc.astimezone(chicago), LIMITS) == in_session(utc, LIMITS)


def test_in_session_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        in_session(datetime(2024, 3, 12, 15, 0), LIMITS)


def test_a_day_session_is_open_weekdays_between_open_and_close():
    cash = RiskLimits(session_open=time(9, 30), session_close=time(16, 0))
    assert in_session(_et(2024, 1, 8, 9, 30), cash)
    assert not in_session(_et(2024, 1, 8, 16, 0), cash)
    assert not in_session(_et(2024, 1, 8, 20, 0), cash)
    assert not in_session(_et(2024, 1, 13, 10, 0), cash)


# ------------------------------------------------------------------------------------------------ properties

limits_strategy = st.builds(
    RiskLimits,
    max_position_contracts=st.integers(0, 8),
    max_total_contracts=st.integers(0, 15),
    max_trades_per_day=st.integers(0, 30),
)
proposals = st.builds(Proposal, side=st.sampled_from(["long", "short", "long", "short", "flat"]),
                      contracts=st.integers(-2, 20),
                      confidence=st.one_of(st.floats(0.6, 1.0), st.floats(0.0, 1.0)))


@st.composite
def contexts(draw):
    position = draw(st.integers(-12, 12))
    return RiskContext(
        now=draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))),
        trading_state=draw(st.sampled_from(TradingState)),
        kill_switch=draw(st.booleans()),
        circuit_breaker_tripped=draw(st.booleans()),
        position_contracts=position,
        total_contracts=abs(position) + draw(st.integers(0, 15)),
        daily_pnl=draw(st.decimals(min_value=-5000, max_value=5000, places=2)),
        drawdown=draw(st.floats(0.0, 0.3)),
        trades_today=draw(st.integers(0, 30)),
        last_bar_age_seconds=draw(st.floats(0.0, 600.0)),
        model_health=draw(st.floats(0.0, 1.0)),
    )


@st.composite
def tradable_contexts(draw):
    """Contexts where only the trading state and the positions can stand in the way, so the limits get exercised."""
    position = draw(st.integers(-12, 12))
    return _context(trading_state=draw(st.sampled_from([TradingState.ACTIVE, TradingState.REDUCING])),
                    position_contracts=position, total_contracts=abs(position) + draw(st.integers(0, 15)))


@given(proposals, contexts(), limits_strategy)
def test_allowed_contracts_are_never_negative_above_the_proposal_or_beyond_the_limits(proposal, context, limits):
    _assert_verdict_within_limits(proposal, context, limits)


@given(proposals, tradable_contexts(), limits_strategy)
def test_allowed_contracts_stay_within_the_limits_for_trades_that_only_the_limits_constrain(proposal, context, limits):
    _assert_verdict_within_limits(proposal, context, limits)


def _assert_verdict_within_limits(proposal, context, limits):
    verdict = assess(proposal, context, limits)
    assert tuple(c.name for c in verdict.checks) == CHECK_NAMES
    assert 0 <= verdict.contracts
    assert verdict.contracts <= max(proposal.contracts, 0)
    if verdict.decision is Decision.BLOCK:
        assert verdict.contracts == 0
        assert verdict.reasons
    elif verdict.decision is Decision.REDUCE:
        assert 0 < verdict.contracts < proposal.contracts
        assert verdict.reasons
    else:
        assert verdict.contracts == proposal.contracts
        assert verdict.reasons == ()
    if verdict.contracts:
        held = abs(context.position_contracts)
        after = context.position_contracts + (verdict.contracts if proposal.side == "long" else -verdict.contracts)
        if abs(after) > held:  # the trade adds risk: it must fit both limits
            assert abs(after) <= limits.max_position_contracts
            assert context.total_contracts - held + abs(after) <= limits.max_total_contracts
        if context.trading_state is TradingState.REDUCING:
            assert abs(after) < held
        assert context.trading_state is not TradingState.HALTED
        assert not context.kill_switch and not context.circuit_breaker_tripped
        assert proposal.confidence >= limits.min_confidence
        assert in_session(context.now, limits)


@given(proposals, contexts(), limits_strategy)
def test_the_breaker_is_asked_to_trip_exactly_when_the_loss_limit_is_reached_and_it_is_not_tripped(
        proposal, context, limits):
    verdict = assess(proposal, context, limits)
    loss = -context.daily_pnl
    reached = loss > 0 and loss >= limits.daily_loss_limit
    assert verdict.trip_circuit_breaker == (reached and not context.circuit_breaker_tripped)


def test_a_stop_out_that_would_pass_the_daily_loss_limit_reduces_the_size_to_what_the_budget_allows():
    # $2,000 limit, $300 already lost today: $1,700 left, $574 a contract to the stop -> 2 contracts.
    proposal = Proposal("long", 5, 0.7, risk_per_contract=Decimal("574"))
    verdict = assess(proposal, _context(daily_pnl=Decimal("-300")), LIMITS)
    assert (verdict.decision, verdict.contracts) == (Decision.REDUCE, 2)
    budget = next(c for c in verdict.checks if c.name == "loss_budget")
    assert not budget.passed and "1700.00" in budget.message


def test_a_loss_budget_smaller_than_one_contracts_stop_blocks():
    proposal = Proposal("long", 1, 0.7, risk_per_contract=Decimal("574"))
    verdict = assess(proposal, _context(daily_pnl=Decimal("-1500")), LIMITS)
    assert (verdict.decision, verdict.contracts) == (Decision.BLOCK, 0)


def test_profits_today_do_not_widen_the_loss_budget():
    proposal = Proposal("long", 5, 0.7, risk_per_contract=Decimal("574"))
    verdict = assess(proposal, _context(daily_pnl=Decimal("5000")), LIMITS)
    assert verdict.contracts == 3  # 2000 // 574


def test_a_trade_towards_flat_is_not_cut_by_the_loss_budget():
    proposal = Proposal("short", 2, 0.7, risk_per_contract=Decimal("5000"))
    verdict = assess(proposal, _context(position_contracts=2, total_contracts=2), LIMITS)
    assert (verdict.decision, verdict.contracts) == (Decision.APPROVE, 2)


def test_a_failed_settlement_blocks_every_new_entry_and_says_why():
    verdict = assess(_long(3), _context(settlement_fault="bar 2024-03-12 14:59 UTC: TypeError"), LIMITS)
    assert verdict.decision is Decision.BLOCK and verdict.contracts == 0
    [reason] = verdict.reasons
    assert "settling the last bar failed" in reason and "TypeError" in reason
    assert next(c for c in verdict.checks if c.name == "settlement").passed is False


def test_risk_already_committed_by_working_entries_and_open_trades_shrinks_the_loss_budget():
    limits = RiskLimits(daily_loss_limit=Decimal("2000"))
    risk = Decimal("450")
    free = assess(Proposal("long", 4, 0.7, risk), _context(), limits)
    assert free.contracts == 4  # 4 x 450 = 1800 fits in 2000
    committed = assess(Proposal("long", 4, 0.7, risk), _context(committed_risk=Decimal("1000")), limits)
    assert committed.decision is Decision.REDUCE and committed.contracts == 2  # (2000 - 1000) // 450
    assert "after 1000.00 already at risk" in committed.reasons[0]
    full = assess(Proposal("long", 1, 0.7, risk), _context(committed_risk=Decimal("1800"),
                                                            daily_pnl=Decimal("-100")), limits)
    assert full.decision is Decision.BLOCK  # 2000 - 100 - 1800 = 100 < 450


@pytest.mark.parametrize("committed", [Decimal("-1"), Decimal("NaN"), 5.0])
def test_a_committed_risk_that_is_not_an_amount_blocks(committed):
    verdict = assess(Proposal("long", 1, 0.7, Decimal("100")), _context(committed_risk=committed), LIMITS)
    assert verdict.decision is Decision.BLOCK
