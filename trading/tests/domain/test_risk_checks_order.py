"""assess gives, for any input, exactly the verdict of the risk manager before its checks became one list of
functions: names, passed flags, messages (character for character), decision, contracts and the breaker trip.

The reference is a frozen copy of assess as it was (commit 330449e), closure and all. The cases mix an approving
baseline with edge and invalid values (NaN, None, bools, negative counts, naive datetimes, REDUCING / HALTED,
opposing trades, accounts over their limits, the kill switch, a binding loss budget), so every branch is reached:
the sweep asserts it reached them.
"""
import random
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, note, settings
from hypothesis import strategies as st

from trading.domain.checks import is_count, is_real, money, near_limit
from trading.domain.risk import (
    CHECK_NAMES,
    CHECKS,
    SIDES,
    Decision,
    Proposal,
    RiskCheck,
    RiskContext,
    RiskLimits,
    RiskVerdict,
    TradingState,
    assess,
)

UTC = timezone.utc


# ------------------------------------------------------------------------------------ the reference (frozen copy)

def _reference_in_session(now: datetime, limits: RiskLimits) -> bool:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    local = now.astimezone(ZoneInfo(limits.session_timezone))
    clock, day = local.time(), local.weekday()
    opens, closes = limits.session_open, limits.session_close
    if opens < closes:
        return day < 5 and opens <= clock < closes
    if day == 5:
        return False
    if day == 6:
        return clock >= opens
    if day == 4:
        return clock < closes
    return clock < closes or clock >= opens


def _reference_daily_loss_reached(daily_pnl: Decimal, loss_limit: Decimal) -> bool:
    loss = -daily_pnl
    return loss > 0 and loss >= loss_limit


_KILL_SWITCH_OFF = RiskCheck("kill_switch", True, "kill switch is off")
_ACTIVE = RiskCheck("trading_state", True, "trading state is ACTIVE")
_BREAKER_NOT_TRIPPED = RiskCheck("circuit_breaker", True, "daily loss circuit breaker is not tripped")
_SETTLED = RiskCheck("settlement", True, "the last bar was settled")
_IN_SESSION = RiskCheck("trading_session", True, "market is in session")


def _reference_assess(proposal: Proposal, context: RiskContext, limits: RiskLimits) -> RiskVerdict:
    side, wanted = proposal.side, proposal.contracts
    position = context.position_contracts
    checks: list[RiskCheck] = []
    blocked = False

    def check(name: str, passed: bool, message: str, blocks: bool | None = None) -> None:
        nonlocal blocked
        blocked = blocked or (not passed if blocks is None else blocks)
        checks.append(RiskCheck(name, passed, message))

    valid_proposal = side in SIDES and is_count(wanted) and wanted > 0
    sign = 1 if side == "long" else -1
    opposing = valid_proposal and is_count(position) and position * sign < 0

    if context.kill_switch:
        check("kill_switch", False, "kill switch is on: all trading is stopped")
    else:
        checks.append(_KILL_SWITCH_OFF)

    state = context.trading_state
    if state == TradingState.ACTIVE:
        checks.append(_ACTIVE)
    elif state == TradingState.REDUCING:
        if not opposing:
            check("trading_state", False,
                  "trading state is REDUCING: trades that would increase the position are blocked")
        elif wanted > abs(position):
            check("trading_state", False,
                  f"trading state is REDUCING: only {abs(position)} of {wanted} contracts (to flat) may pass",
                  blocks=False)
        else:
            check("trading_state", True, "trading state is REDUCING: trades that shrink the position may pass")
    else:
        check("trading_state", False, f"trading state is {getattr(state, 'value', state)}: all trading is blocked")

    if context.circuit_breaker_tripped:
        check("circuit_breaker", False, "daily loss circuit breaker is tripped until a person resets it")
    else:
        checks.append(_BREAKER_NOT_TRIPPED)

    fault = context.settlement_fault
    if fault:
        check("settlement", False, f"settling the last bar failed, no new entries until it succeeds: {fault}")
    else:
        checks.append(_SETTLED)

    pnl, loss_limit = context.daily_pnl, limits.daily_loss_limit
    trip = False
    if not isinstance(pnl, Decimal) or not pnl.is_finite():
        check("daily_loss_limit", False, f"daily P&L {pnl!r} is not a finite amount")
    else:
        loss = -pnl
        reached = _reference_daily_loss_reached(pnl, loss_limit)
        trip = reached and not context.circuit_breaker_tripped
        check("daily_loss_limit", not reached,
              f"daily loss {money(loss, loss_limit)} reached the limit {money(loss_limit)}" if reached
              else f"daily P&L {money(pnl, -loss_limit)} is within the loss limit {money(loss_limit)}")

    dd = context.drawdown
    if not is_real(dd):
        check("max_drawdown", False, f"drawdown {dd!r} is not a number")
    else:
        check("max_drawdown", dd < limits.max_drawdown,
              f"drawdown {_reference_pct(dd, limits.max_drawdown)} reached the maximum {limits.max_drawdown:.1%}"
              if dd >= limits.max_drawdown
              else f"drawdown {_reference_pct(dd, limits.max_drawdown)} is under the maximum {limits.max_drawdown:.1%}")

    trades = context.trades_today
    if not is_count(trades):
        check("max_trades_per_day", False, f"trades today {trades!r} is not a count")
    else:
        check("max_trades_per_day", trades < limits.max_trades_per_day,
              f"{trades} trades today reached the maximum {limits.max_trades_per_day}"
              if trades >= limits.max_trades_per_day
              else f"{trades} trades today, under the maximum {limits.max_trades_per_day}")

    age, stale_after = context.last_bar_age_seconds, limits.stale_after_seconds
    if not is_real(age):
        check("stale_data", False, f"last bar age {age!r} is not a number")
    elif age < 0:
        check("stale_data", False, f"last bar is {-age:.0f}s in the future: the clock or the feed is wrong")
    else:
        check("stale_data", age <= stale_after,
              f"last bar is {age:.0f}s old, older than {stale_after:.0f}s" if age > stale_after
              else f"last bar is {age:.0f}s old")

    health = context.model_health
    if not is_real(health):
        check("model_health", False, f"model health {health!r} is not a number")
    else:
        check("model_health", health >= limits.health_floor,
              f"model health {near_limit(health, limits.health_floor)} is under the floor {limits.health_floor:.2f}"
              if health < limits.health_floor
              else f"model health {health:.2f} is at or above the floor {limits.health_floor:.2f}")

    now = context.now
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        check("trading_session", False, f"now {now!r} is not a timezone-aware datetime")
    elif _reference_in_session(now, limits):
        checks.append(_IN_SESSION)
    else:
        check("trading_session", False,
              f"market is closed at {now.astimezone(ZoneInfo(limits.session_timezone)):%a %Y-%m-%d %H:%M %Z}")

    confidence = proposal.confidence
    if not is_real(confidence):
        check("min_confidence", False, f"confidence {confidence!r} is not a number")
    else:
        check("min_confidence", confidence >= limits.min_confidence,
              f"confidence {near_limit(confidence, limits.min_confidence)} is under the minimum {limits.min_confidence:.2f}"
              if confidence < limits.min_confidence
              else f"confidence {confidence:.2f} meets the minimum {limits.min_confidence:.2f}")

    if valid_proposal:
        check("proposal", True, f"{side} {wanted} contract(s)")
    elif side not in SIDES:
        check("proposal", False, f"side {side!r} is neither long nor short")
    else:
        check("proposal", False, f"proposed contracts {wanted!r} is not a positive whole number")

    allowed = wanted if valid_proposal else 0
    if not (is_count(position) and is_count(context.total_contracts)):
        check("position_limit", False, f"position {position!r} is not a whole number of contracts")
        check("total_limit", False, f"total contracts {context.total_contracts!r} is not a whole number")
        allowed = 0
    else:
        held = abs(position)
        cap = limits.max_position_contracts
        room = held + cap if opposing else max(0, cap - held)
        check(*_reference_limit_check("position_limit", allowed, room, f"position limit {cap} (net position {position})"))
        allowed = min(allowed, room)
        total = max(context.total_contracts, held)
        cap_total = limits.max_total_contracts
        room_total = held + max(0, cap_total - (total - held)) if opposing else max(0, cap_total - total)
        check(*_reference_limit_check("total_limit", allowed, room_total,
                                      f"total limit {cap_total} (open contracts {total})"))
        allowed = min(allowed, room_total)
        if state == TradingState.REDUCING and opposing:
            allowed = min(allowed, held)

    risk = proposal.risk_per_contract
    if opposing:
        check("loss_budget", True, "the trade reduces the position: no new loss at risk")
    elif risk is None:
        check("loss_budget", True, "no stop-loss risk given: the daily loss limit alone applies")
    elif not isinstance(risk, Decimal) or not risk.is_finite() or risk <= 0:
        check("loss_budget", False, f"risk per contract {risk!r} is not a positive amount")
        allowed = 0
    elif not isinstance(pnl, Decimal) or not pnl.is_finite():
        check("loss_budget", False, "the day's P&L is unknown, so is the loss budget")
        allowed = 0
    elif (not isinstance(context.committed_risk, Decimal) or not context.committed_risk.is_finite()
          or context.committed_risk < 0):
        check("loss_budget", False, f"risk already committed {context.committed_risk!r} is not an amount >= 0")
        allowed = 0
    else:
        committed = context.committed_risk
        budget = max(Decimal(0), loss_limit + min(pnl, Decimal(0)) - committed)
        room = int(budget // risk)
        held = f" after {committed:.2f} already at risk" if committed else ""
        check(*_reference_limit_check("loss_budget", allowed, room,
                                      f"daily loss budget {budget:.2f}{held} at {risk:.2f} a contract to the stop"))
        allowed = min(allowed, room)

    if blocked or allowed <= 0:
        return RiskVerdict(Decision.BLOCK, 0, tuple(checks), trip)
    if allowed < wanted:
        return RiskVerdict(Decision.REDUCE, allowed, tuple(checks), trip)
    return RiskVerdict(Decision.APPROVE, wanted, tuple(checks), trip)


def _reference_limit_check(name: str, wanted: int, room: int, what: str) -> tuple[str, bool, str, bool]:
    if wanted <= room:
        return name, True, f"{what} leaves room for {room}", False
    if room <= 0:
        return name, False, f"{what} leaves no room for more contracts", True
    return name, False, f"{what} leaves room for {room} of {wanted} contracts", False


def _reference_pct(value: float, limit: float) -> str:
    text = f"{value:.1%}"
    return text if text != f"{limit:.1%}" or value == limit else f"{value:.4%}"


# ------------------------------------------------------------------------------------ the cases

_NAN = float("nan")
_INF = float("inf")
_ZONES = ("America/New_York", "America/Chicago", "UTC", "Europe/London", "Asia/Tokyo")
_SESSIONS = ((time(18, 0), time(17, 0)), (time(9, 30), time(16, 0)), (time(8, 0), time(8, 0)))


def _random_limits(rng: random.Random) -> RiskLimits:
    if rng.random() < 0.3:
        return RiskLimits()
    opens, closes = rng.choice(_SESSIONS)
    return RiskLimits(
        min_confidence=rng.choice([0.5, 0.6, 0.75, rng.uniform(0.5, 0.999)]),
        max_position_contracts=rng.randint(0, 12),
        max_total_contracts=rng.randint(0, 20),
        daily_loss_limit=rng.choice([Decimal(0), Decimal("2000"), Decimal(rng.randint(0, 500_000)) / 100]),
        max_drawdown=rng.choice([1.0, 0.10, rng.uniform(0.001, 1.0)]),
        max_trades_per_day=rng.randint(0, 40),
        stale_after_seconds=rng.choice([0.0, 180.0, rng.uniform(0, 900)]),
        health_floor=rng.choice([0.0, 0.4, 1.0, rng.random()]),
        session_timezone=rng.choice(_ZONES),
        session_open=opens,
        session_close=closes,
    )


def _pick(rng: random.Random, typical, wild: list, p_wild: float):
    """The typical value (a callable) or, with probability p_wild, one of the edge and invalid ones."""
    return rng.choice(wild) if rng.random() < p_wild else typical()


def _random_now(rng: random.Random, limits: RiskLimits):
    base = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10 * 365 * 86400))
    # Near the session edges in the session's zone, where an off-by-one in the clock would show.
    local_day = datetime(2024, rng.choice([3, 6, 11]), rng.randint(1, 28), tzinfo=ZoneInfo(limits.session_timezone))
    edge_clock = rng.choice([limits.session_open, limits.session_close])
    edge = datetime.combine(local_day.date(), edge_clock, tzinfo=local_day.tzinfo) + timedelta(
        seconds=rng.choice([-60, -1, 0, 1, 59]))
    return rng.choice([
        base, base, edge, edge,
        base.astimezone(ZoneInfo("Asia/Tokyo")), base.astimezone(timezone(timedelta(hours=-5))),
        base.replace(tzinfo=None), None, "2024-03-12T15:00:00Z", date(2024, 3, 12),
        datetime(2024, 3, 12, 15, 0, tzinfo=UTC),  # Tuesday 11:00 New York
    ])


def _random_case(rng: random.Random) -> tuple[Proposal, RiskContext, RiskLimits]:
    limits = _random_limits(rng)
    # Each case perturbs a random share of the fields away from an approving baseline, from none to all.
    p = rng.choice([0.0, 0.0, 0.03, 0.1, 0.3, 1.0])
    loss_limit = limits.daily_loss_limit
    position = _pick(rng, lambda: rng.randint(-15, 15) if rng.random() < 0.5 else rng.randint(-3, 3), [0, None, 2.0, True, -10**6, 10**6], p)
    held = abs(position) if is_count(position) else 0
    proposal = Proposal(
        side=_pick(rng, lambda: rng.choice(SIDES), ["sideways", "", None, "LONG", 1], p),
        contracts=_pick(rng, lambda: rng.randint(1, 25) if rng.random() < 0.5 else rng.randint(1, 4), [0, -1, -7, True, 2.0, None, "3", 10**20], p),
        confidence=_pick(rng, lambda: rng.uniform(limits.min_confidence, 1.0),
                         [_NAN, _INF, -_INF, None, True, 1, 0, 0.5, limits.min_confidence,
                          limits.min_confidence - 1e-7, "0.7", Decimal("0.9")], p),
        risk_per_contract=_pick(
            rng, lambda: rng.choice([None, Decimal(rng.randint(1, 60_000)) / 100]),
            [Decimal(0), Decimal(-5), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), 260.0, 100,
             Decimal("1E+30"), Decimal("1E-30"), Decimal("0.01")], p),
    )
    context = RiskContext(
        now=_random_now(rng, limits) if rng.random() < p else datetime(2024, 3, 12, 15, 0, tzinfo=UTC),
        trading_state=_pick(rng, lambda: TradingState.ACTIVE,
                            [TradingState.REDUCING, TradingState.REDUCING, TradingState.HALTED, "ACTIVE",
                             "REDUCING", None, "PAUSED"], p),
        kill_switch=_pick(rng, lambda: False, [True, True, 1, "yes", 0], p),
        circuit_breaker_tripped=_pick(rng, lambda: False, [True, True, 1, 0], p),
        position_contracts=position,
        total_contracts=_pick(rng, lambda: held + rng.randint(0, 15),
                              [None, 3.5, held, max(0, held - 3), -2, held + 30], p),
        daily_pnl=_pick(
            rng, lambda: Decimal(rng.randint(-int(loss_limit * 120), 500_000)) / 100,
            [Decimal(0), Decimal("-0"), Decimal("0E-10"), -loss_limit, -loss_limit + Decimal("0.001"),
             -loss_limit - Decimal("0.004"), -loss_limit + Decimal("0.004"), Decimal("NaN"), Decimal("-Infinity"),
             -100.0, None, -100, Decimal("-1E+40"), Decimal("1E+40"), Decimal("-1E+1000000")], p),
        drawdown=_pick(rng, lambda: rng.uniform(0.0, limits.max_drawdown),
                       [_NAN, _INF, None, True, limits.max_drawdown, limits.max_drawdown - 1e-6,
                        limits.max_drawdown + 1e-6, -0.1, Decimal("0.01"), 0.5], p),
        trades_today=_pick(rng, lambda: rng.randint(0, max(0, limits.max_trades_per_day - 1)),
                           [None, 2.0, True, -1, limits.max_trades_per_day, limits.max_trades_per_day + 5], p),
        last_bar_age_seconds=_pick(rng, lambda: rng.uniform(0, limits.stale_after_seconds),
                                   [_NAN, _INF, None, -0.4, -100.0, limits.stale_after_seconds,
                                    limits.stale_after_seconds + 0.4, limits.stale_after_seconds + 100, True], p),
        model_health=_pick(rng, lambda: rng.uniform(limits.health_floor, 1.0),
                           [_NAN, None, limits.health_floor, limits.health_floor - 1e-7, 1.5, -0.2, 0.0], p),
        settlement_fault=_pick(rng, lambda: "", ["boom", "bar 2024-03-12 14:59 UTC: TypeError", None, 0], p),
        committed_risk=_pick(rng, lambda: rng.choice([Decimal(0), Decimal(rng.randint(0, 100_000)) / 100]),
                             [Decimal(-1), Decimal("NaN"), 5.0, None, Decimal("1E+30"), Decimal("0.00"),
                              Decimal("1E+1000000")], p),
    )
    return proposal, context, limits


def _outcome(function, proposal, context, limits):
    """The verdict, or the exception it raised (type and arguments): the two must fail alike too."""
    try:
        return function(proposal, context, limits)
    except Exception as exc:  # noqa: BLE001 - whatever the reference raises, assess must raise the same
        return type(exc), exc.args


def _assert_same(proposal, context, limits):
    expected = _outcome(_reference_assess, proposal, context, limits)
    actual = _outcome(assess, proposal, context, limits)
    assert actual == expected, (proposal, context, limits)
    return expected


# ------------------------------------------------------------------------------------ the tests

def test_check_names_come_from_the_one_list_of_checks_in_the_fixed_order():
    assert CHECK_NAMES == tuple(check.__name__ for check in CHECKS)
    assert CHECK_NAMES == ("kill_switch", "trading_state", "circuit_breaker", "settlement", "daily_loss_limit",
                           "max_drawdown", "max_trades_per_day", "stale_data", "model_health", "trading_session",
                           "min_confidence", "proposal", "position_limit", "total_limit", "loss_budget")


def test_assess_matches_the_reference_on_a_seeded_sweep_that_reaches_every_branch():
    rng = random.Random(20)
    seen = Counter()
    for _ in range(4000):
        proposal, context, limits = _random_case(rng)
        outcome = _assert_same(proposal, context, limits)
        if not isinstance(outcome, RiskVerdict):
            seen["raises"] += 1
            continue
        seen[outcome.decision] += 1
        seen["trip", outcome.trip_circuit_breaker] += 1
        for check in outcome.checks:
            seen[check.name, check.passed] += 1
        by_name = {check.name: check for check in outcome.checks}
        if outcome.decision is Decision.REDUCE:
            seen["reduced by", tuple(n for n, c in by_name.items() if not c.passed)] += 1
        if "(to flat) may pass" in by_name["trading_state"].message:
            seen["reducing, cut to flat"] += 1
        if "shrink the position may pass" in by_name["trading_state"].message:
            seen["reducing, passes"] += 1
    # The sweep is only a proof if it reached every outcome of every check.
    for name in CHECK_NAMES:
        assert seen[name, True] and seen[name, False], name
    for wanted in (Decision.APPROVE, Decision.REDUCE, Decision.BLOCK, ("trip", True), ("trip", False), "raises",
                   "reducing, cut to flat", "reducing, passes", ("reduced by", ("loss_budget",)),
                   ("reduced by", ("position_limit",)), ("reduced by", ("total_limit",))):
        assert seen[wanted], wanted
    assert seen[Decision.APPROVE] >= 400 and seen[Decision.REDUCE] >= 100


@settings(max_examples=1000, deadline=None)
@given(st.randoms(use_true_random=False))
def test_assess_matches_the_reference_on_random_cases(rng):
    proposal, context, limits = _random_case(rng)
    note(repr((proposal, context, limits)))
    _assert_same(proposal, context, limits)
