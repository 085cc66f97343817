"""Pre-trade risk rules: approve, reduce or block a proposed trade, with every rule's outcome and reason.

Each rule is checked on every call, in the fixed order of CHECKS, so the verdict always shows the whole
picture rather than the first failure. Any failed rule blocks (0 contracts); the position and total limits
may instead cut the size, which reduces. Trading states follow NautilusTrader's RiskEngine: ACTIVE applies
all checks, REDUCING lets only trades that shrink |net position| through, HALTED blocks everything.

The rules only decide. Persisting the circuit breaker (tripped until a person resets it), the kill switch
and the trading state is the service's job: the verdict says when the breaker must be tripped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .checks import is_count, is_real, money, near_limit


class TradingState(str, Enum):
    ACTIVE = "ACTIVE"  # all checks apply
    REDUCING = "REDUCING"  # trades that would increase |net position| are blocked
    HALTED = "HALTED"  # everything is blocked


class Decision(str, Enum):
    APPROVE = "approve"
    REDUCE = "reduce"
    BLOCK = "block"


SIDES = ("long", "short")


@dataclass(frozen=True)
class RiskLimits:
    min_confidence: float = 0.60  # in [0.5, 1)
    max_position_contracts: int = 5  # |net position| per instrument after the trade
    max_total_contracts: int = 10  # sum of |net position| over instruments after the trade
    daily_loss_limit: Decimal = Decimal("2000")  # loss today reaching this trips the circuit breaker
    max_drawdown: float = 0.10  # in (0, 1]
    max_trades_per_day: int = 20
    stale_after_seconds: float = 180.0
    health_floor: float = 0.40  # 0..1
    # CME Globex: open Sunday 18:00 to Friday 17:00, daily break 17:00-18:00 (exchange holidays are not modelled).
    session_timezone: str = "America/New_York"
    session_open: time = time(18, 0)
    session_close: time = time(17, 0)

    def __post_init__(self) -> None:
        if not is_real(self.min_confidence) or not 0.5 <= self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in [0.5, 1), got {self.min_confidence!r}")
        for name in ("max_position_contracts", "max_total_contracts", "max_trades_per_day"):
            value = getattr(self, name)
            if not is_count(value) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        loss = self.daily_loss_limit
        if not isinstance(loss, Decimal) or not loss.is_finite() or loss < 0:
            raise ValueError(f"daily_loss_limit must be a finite Decimal >= 0, got {loss!r}")
        if not is_real(self.max_drawdown) or not 0 < self.max_drawdown <= 1:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown!r}")
        if not is_real(self.stale_after_seconds) or self.stale_after_seconds < 0:
            raise ValueError(f"stale_after_seconds must be a finite number >= 0, got {self.stale_after_seconds!r}")
        if not is_real(self.health_floor) or not 0 <= self.health_floor <= 1:
            raise ValueError(f"health_floor must be in [0, 1], got {self.health_floor!r}")
        try:
            _zone(self.session_timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"session_timezone {self.session_timezone!r} is not an IANA time zone") from exc
        for name in ("session_open", "session_close"):
            value = getattr(self, name)
            if not isinstance(value, time) or value.tzinfo is not None:
                raise ValueError(f"{name} must be a naive datetime.time (local to session_timezone), got {value!r}")


@dataclass(frozen=True)
class Proposal:
    side: str  # "long" | "short"
    contracts: int
    confidence: float
    # What one contract loses if the stop fills (stop distance with slippage x point value + commissions);
    # None: unknown, and the loss-budget check cannot cut the size.
    risk_per_contract: Decimal | None = None


@dataclass(frozen=True)
class RiskContext:
    now: datetime  # aware
    trading_state: TradingState
    kill_switch: bool
    circuit_breaker_tripped: bool
    position_contracts: int  # signed net position in this instrument, long > 0
    total_contracts: int  # sum of |net position| over all instruments, this one included
    daily_pnl: Decimal  # today, realised + unrealised - commissions; negative = loss
    drawdown: float  # from peak equity, fraction
    trades_today: int
    last_bar_age_seconds: float
    model_health: float  # 0..1
    # Why the account's last per-bar settlement (fills, brackets, marks) failed; empty when it succeeded. While it
    # is set nothing new may enter: the positions and P&L the other checks read may be out of date.
    settlement_fault: str = ""
    # What the account's working entries and open trades would still lose if every one of them stopped out from
    # here (>= 0): the loss budget of a new trade is what is left after them.
    committed_risk: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class RiskCheck:
    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class RiskVerdict:
    decision: Decision
    contracts: int  # allowed, 0 <= contracts <= proposal
    checks: tuple[RiskCheck, ...]  # every rule, in the order of CHECKS (named in CHECK_NAMES)
    trip_circuit_breaker: bool  # the daily loss limit is reached and the breaker is not yet tripped

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the trade was blocked or reduced (messages of the checks that did not pass); empty on approve."""
        return tuple(check.message for check in self.checks if not check.passed)

    def as_dict(self) -> dict:
        return {
            "decision": self.decision.value,
            "contracts": self.contracts,
            "trip_circuit_breaker": self.trip_circuit_breaker,
            "reasons": list(self.reasons),
            "checks": [{"name": c.name, "passed": c.passed, "message": c.message} for c in self.checks],
        }


@lru_cache(maxsize=8)
def _zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def in_session(now: datetime, limits: RiskLimits) -> bool:
    """Whether the market is open at `now` (an aware datetime), by the weekly session in limits' time zone.

    With open later in the day than close (Globex: 18:00 / 17:00) the week opens on Sunday at `open`, closes
    on Friday at `close`, and breaks from `close` to `open` on the days between. With open earlier than close
    it is a day session, Monday to Friday from `open` to `close`; equal times mean no daily break. The local
    clock is read after converting, so daylight saving moves the UTC hours and nothing else.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    local = now.astimezone(_zone(limits.session_timezone))
    clock, day = local.time(), local.weekday()  # Monday = 0 ... Sunday = 6
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


def daily_loss_reached(daily_pnl: Decimal, loss_limit: Decimal) -> bool:
    """Whether the day's P&L has lost the limit. A zero limit means no loss at all is allowed, not that a flat
    day trips the breaker: there must be a loss."""
    loss = -daily_pnl
    return loss > 0 and loss >= loss_limit


# ------------------------------------------------------------------------------------------------ the checks
#
# One function per rule, named as the rule (its name is the check's: see CHECK_NAMES), in the order of CHECKS.
# Each takes its name, the assessment and the contracts the rules before it still allow, and returns its check,
# whether it blocks, and the contracts still allowed. A rule that only cuts the size does not pass (so it shows
# among the reasons) but does not block; only the limits and the loss budget cut.

class _Assessment(NamedTuple):
    """One trade under assessment: the inputs, and the facts several rules read, worked out once."""
    proposal: Proposal
    context: RiskContext
    limits: RiskLimits
    valid_proposal: bool  # a side and a positive whole number of contracts
    # The trade moves the position towards flat: only those may pass while REDUCING, and those are never cut
    # below closing size by the limits.
    opposing: bool
    positions_known: bool  # the net and total positions are whole numbers
    pnl_known: bool  # the day's P&L is a finite Decimal
    loss_reached: bool  # the day's P&L has lost the limit (False when unknown)


_Outcome = tuple[RiskCheck, bool, int]  # the check, whether it blocks, the contracts still allowed


def kill_switch(name: str, a: _Assessment, allowed: int) -> _Outcome:
    if a.context.kill_switch:
        return RiskCheck(name, False, "kill switch is on: all trading is stopped"), True, allowed
    return _KILL_SWITCH_OFF, False, allowed


# Passed checks whose message never changes are built once (assess runs on every bar), named by their function.
_KILL_SWITCH_OFF = RiskCheck(kill_switch.__name__, True, "kill switch is off")


def trading_state(name: str, a: _Assessment, allowed: int) -> _Outcome:
    state = a.context.trading_state
    if state == TradingState.ACTIVE:
        return _ACTIVE, False, allowed
    if state == TradingState.REDUCING:
        if not a.opposing:
            message = "trading state is REDUCING: trades that would increase the position are blocked"
            return RiskCheck(name, False, message), True, allowed
        held, wanted = abs(a.context.position_contracts), a.proposal.contracts
        if wanted > held:  # total_limit cuts the size to flat, after the limits have said what they allow
            message = f"trading state is REDUCING: only {held} of {wanted} contracts (to flat) may pass"
            return RiskCheck(name, False, message), False, allowed
        message = "trading state is REDUCING: trades that shrink the position may pass"
        return RiskCheck(name, True, message), False, allowed
    message = f"trading state is {getattr(state, 'value', state)}: all trading is blocked"
    return RiskCheck(name, False, message), True, allowed


_ACTIVE = RiskCheck(trading_state.__name__, True, "trading state is ACTIVE")


def circuit_breaker(name: str, a: _Assessment, allowed: int) -> _Outcome:
    if a.context.circuit_breaker_tripped:
        message = "daily loss circuit breaker is tripped until a person resets it"
        return RiskCheck(name, False, message), True, allowed
    return _BREAKER_NOT_TRIPPED, False, allowed


_BREAKER_NOT_TRIPPED = RiskCheck(circuit_breaker.__name__, True, "daily loss circuit breaker is not tripped")


def settlement(name: str, a: _Assessment, allowed: int) -> _Outcome:
    fault = a.context.settlement_fault
    if fault:
        message = f"settling the last bar failed, no new entries until it succeeds: {fault}"
        return RiskCheck(name, False, message), True, allowed
    return _SETTLED, False, allowed


_SETTLED = RiskCheck(settlement.__name__, True, "the last bar was settled")


def daily_loss_limit(name: str, a: _Assessment, allowed: int) -> _Outcome:
    pnl, loss_limit = a.context.daily_pnl, a.limits.daily_loss_limit
    if not a.pnl_known:
        return RiskCheck(name, False, f"daily P&L {pnl!r} is not a finite amount"), True, allowed
    if a.loss_reached:
        message = f"daily loss {money(-pnl, loss_limit)} reached the limit {money(loss_limit)}"
        return RiskCheck(name, False, message), True, allowed
    message = f"daily P&L {money(pnl, -loss_limit)} is within the loss limit {money(loss_limit)}"
    return RiskCheck(name, True, message), False, allowed


def max_drawdown(name: str, a: _Assessment, allowed: int) -> _Outcome:
    dd, limit = a.context.drawdown, a.limits.max_drawdown
    if not is_real(dd):
        return RiskCheck(name, False, f"drawdown {dd!r} is not a number"), True, allowed
    if dd >= limit:
        return RiskCheck(name, False, f"drawdown {_pct(dd, limit)} reached the maximum {limit:.1%}"), True, allowed
    return RiskCheck(name, True, f"drawdown {_pct(dd, limit)} is under the maximum {limit:.1%}"), False, allowed


def max_trades_per_day(name: str, a: _Assessment, allowed: int) -> _Outcome:
    trades, limit = a.context.trades_today, a.limits.max_trades_per_day
    if not is_count(trades):
        return RiskCheck(name, False, f"trades today {trades!r} is not a count"), True, allowed
    if trades >= limit:
        return RiskCheck(name, False, f"{trades} trades today reached the maximum {limit}"), True, allowed
    return RiskCheck(name, True, f"{trades} trades today, under the maximum {limit}"), False, allowed


def stale_data(name: str, a: _Assessment, allowed: int) -> _Outcome:
    age, stale_after = a.context.last_bar_age_seconds, a.limits.stale_after_seconds
    if not is_real(age):
        return RiskCheck(name, False, f"last bar age {age!r} is not a number"), True, allowed
    if age < 0:
        message = f"last bar is {-age:.0f}s in the future: the clock or the feed is wrong"
        return RiskCheck(name, False, message), True, allowed
    if age > stale_after:
        return RiskCheck(name, False, f"last bar is {age:.0f}s old, older than {stale_after:.0f}s"), True, allowed
    return RiskCheck(name, True, f"last bar is {age:.0f}s old"), False, allowed


def model_health(name: str, a: _Assessment, allowed: int) -> _Outcome:
    health, floor = a.context.model_health, a.limits.health_floor
    if not is_real(health):
        return RiskCheck(name, False, f"model health {health!r} is not a number"), True, allowed
    if health < floor:
        message = f"model health {near_limit(health, floor)} is under the floor {floor:.2f}"
        return RiskCheck(name, False, message), True, allowed
    return RiskCheck(name, True, f"model health {health:.2f} is at or above the floor {floor:.2f}"), False, allowed


def trading_session(name: str, a: _Assessment, allowed: int) -> _Outcome:
    now, limits = a.context.now, a.limits
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        return RiskCheck(name, False, f"now {now!r} is not a timezone-aware datetime"), True, allowed
    if in_session(now, limits):
        return _IN_SESSION, False, allowed
    local = now.astimezone(_zone(limits.session_timezone))
    return RiskCheck(name, False, f"market is closed at {local:%a %Y-%m-%d %H:%M %Z}"), True, allowed


_IN_SESSION = RiskCheck(trading_session.__name__, True, "market is in session")


def min_confidence(name: str, a: _Assessment, allowed: int) -> _Outcome:
    confidence, minimum = a.proposal.confidence, a.limits.min_confidence
    if not is_real(confidence):
        return RiskCheck(name, False, f"confidence {confidence!r} is not a number"), True, allowed
    if confidence < minimum:
        message = f"confidence {near_limit(confidence, minimum)} is under the minimum {minimum:.2f}"
        return RiskCheck(name, False, message), True, allowed
    return RiskCheck(name, True, f"confidence {confidence:.2f} meets the minimum {minimum:.2f}"), False, allowed


def proposal(name: str, a: _Assessment, allowed: int) -> _Outcome:
    side, wanted = a.proposal.side, a.proposal.contracts
    if a.valid_proposal:
        return RiskCheck(name, True, f"{side} {wanted} contract(s)"), False, allowed
    if side not in SIDES:
        return RiskCheck(name, False, f"side {side!r} is neither long nor short"), True, allowed
    return RiskCheck(name, False, f"proposed contracts {wanted!r} is not a positive whole number"), True, allowed


# The limits: how many of the proposed contracts fit. Reducing a position is never cut short of flat, even when
# the account is already over a limit; going beyond flat is held to the limits like any entry.

def position_limit(name: str, a: _Assessment, allowed: int) -> _Outcome:
    position = a.context.position_contracts
    if not a.positions_known:
        return RiskCheck(name, False, f"position {position!r} is not a whole number of contracts"), True, 0
    held, cap = abs(position), a.limits.max_position_contracts
    room = held + cap if a.opposing else max(0, cap - held)
    return _limit_check(name, allowed, room, f"position limit {cap} (net position {position})")


def total_limit(name: str, a: _Assessment, allowed: int) -> _Outcome:
    context = a.context
    if not a.positions_known:
        return RiskCheck(name, False, f"total contracts {context.total_contracts!r} is not a whole number"), True, 0
    held = abs(context.position_contracts)
    total = max(context.total_contracts, held)  # the total includes this position
    cap = a.limits.max_total_contracts
    room = held + max(0, cap - (total - held)) if a.opposing else max(0, cap - total)
    check, blocks, allowed = _limit_check(name, allowed, room, f"total limit {cap} (open contracts {total})")
    if context.trading_state == TradingState.REDUCING and a.opposing:
        allowed = min(allowed, held)  # to flat, not beyond: that would grow |net| on the other side
    return check, blocks, allowed


def loss_budget(name: str, a: _Assessment, allowed: int) -> _Outcome:
    """A new position's stop-out must not take the day past the loss limit. Profits do not widen the budget
    (conservative); trades towards flat reduce risk and are not cut by it."""
    risk, context = a.proposal.risk_per_contract, a.context
    if a.opposing:
        return _REDUCES_RISK, False, allowed
    if risk is None:
        return _NO_STOP_GIVEN, False, allowed
    if not isinstance(risk, Decimal) or not risk.is_finite() or risk <= 0:
        return RiskCheck(name, False, f"risk per contract {risk!r} is not a positive amount"), True, 0
    if not a.pnl_known:
        return RiskCheck(name, False, "the day's P&L is unknown, so is the loss budget"), True, 0
    committed = context.committed_risk
    if not isinstance(committed, Decimal) or not committed.is_finite() or committed < 0:
        return RiskCheck(name, False, f"risk already committed {committed!r} is not an amount >= 0"), True, 0
    budget = max(Decimal(0), a.limits.daily_loss_limit + min(context.daily_pnl, Decimal(0)) - committed)
    room = int(budget // risk)
    held = f" after {committed:.2f} already at risk" if committed else ""
    return _limit_check(name, allowed, room,
                        f"daily loss budget {budget:.2f}{held} at {risk:.2f} a contract to the stop")


_REDUCES_RISK = RiskCheck(loss_budget.__name__, True, "the trade reduces the position: no new loss at risk")
_NO_STOP_GIVEN = RiskCheck(loss_budget.__name__, True, "no stop-loss risk given: the daily loss limit alone applies")


CHECKS = (kill_switch, trading_state, circuit_breaker, settlement, daily_loss_limit, max_drawdown,
          max_trades_per_day, stale_data, model_health, trading_session, min_confidence, proposal,
          position_limit, total_limit, loss_budget)
CHECK_NAMES = tuple(check.__name__ for check in CHECKS)
_NAMED_CHECKS = tuple(zip(CHECK_NAMES, CHECKS))


def assess(proposal: Proposal, context: RiskContext, limits: RiskLimits) -> RiskVerdict:
    """The verdict on one proposed trade. Does not raise on odd input: what cannot be checked fails its check."""
    side, wanted, position, pnl = proposal.side, proposal.contracts, context.position_contracts, context.daily_pnl
    valid_proposal = side in SIDES and is_count(wanted) and wanted > 0
    opposing = valid_proposal and is_count(position) and position * (1 if side == "long" else -1) < 0
    pnl_known = isinstance(pnl, Decimal) and pnl.is_finite()
    loss_reached = pnl_known and daily_loss_reached(pnl, limits.daily_loss_limit)
    assessment = _Assessment(proposal, context, limits, valid_proposal, opposing,
                             is_count(position) and is_count(context.total_contracts), pnl_known, loss_reached)
    allowed = wanted if valid_proposal else 0
    blocked = False
    checks = []
    append = checks.append
    for name, rule in _NAMED_CHECKS:
        check, blocks, allowed = rule(name, assessment, allowed)
        blocked = blocked or blocks
        append(check)
    trip = loss_reached and not context.circuit_breaker_tripped
    if blocked or allowed <= 0:
        return RiskVerdict(Decision.BLOCK, 0, tuple(checks), trip)
    if allowed < wanted:
        return RiskVerdict(Decision.REDUCE, allowed, tuple(checks), trip)
    return RiskVerdict(Decision.APPROVE, wanted, tuple(checks), trip)


def _limit_check(name: str, wanted: int, room: int, what: str) -> _Outcome:
    """A limit with `room` contracts left for a trade of `wanted`: passes, cuts the size to `room`, or blocks."""
    if wanted <= room:
        return RiskCheck(name, True, f"{what} leaves room for {room}"), False, wanted
    if room <= 0:
        return RiskCheck(name, False, f"{what} leaves no room for more contracts"), True, room
    return RiskCheck(name, False, f"{what} leaves room for {room} of {wanted} contracts"), False, room


def _pct(value: float, limit: float) -> str:
    text = f"{value:.1%}"
    return text if text != f"{limit:.1%}" or value == limit else f"{value:.4%}"
