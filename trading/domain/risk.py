"""Pre-trade risk rules: approve, reduce or block a proposed trade, with every rule's outcome and reason.

Each rule is checked on every call, in the fixed order of CHECK_NAMES, so the verdict always shows the whole
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


CHECK_NAMES = (
    "kill_switch",
    "trading_state",
    "circuit_breaker",
    "settlement",
    "daily_loss_limit",
    "max_drawdown",
    "max_trades_per_day",
    "stale_data",
    "model_health",
    "trading_session",
    "min_confidence",
    "proposal",
    "position_limit",
    "total_limit",
    "loss_budget",
)

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
    checks: tuple[RiskCheck, ...]  # every rule, in the order of CHECK_NAMES
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


# Passed checks whose message never changes, built once: assess runs on every bar.
_KILL_SWITCH_OFF = RiskCheck("kill_switch", True, "kill switch is off")
_ACTIVE = RiskCheck("trading_state", True, "trading state is ACTIVE")
_BREAKER_NOT_TRIPPED = RiskCheck("circuit_breaker", True, "daily loss circuit breaker is not tripped")
_SETTLED = RiskCheck("settlement", True, "the last bar was settled")
_IN_SESSION = RiskCheck("trading_session", True, "market is in session")


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


def assess(proposal: Proposal, context: RiskContext, limits: RiskLimits) -> RiskVerdict:
    """The verdict on one proposed trade. Does not raise on odd input: what cannot be checked fails its check."""
    side, wanted = proposal.side, proposal.contracts
    position = context.position_contracts
    checks: list[RiskCheck] = []
    blocked = False

    def check(name: str, passed: bool, message: str, blocks: bool | None = None) -> None:
        # A check that only cuts the size does not pass (so it shows among the reasons) but does not block.
        nonlocal blocked
        blocked = blocked or (not passed if blocks is None else blocks)
        checks.append(RiskCheck(name, passed, message))

    valid_proposal = side in SIDES and is_count(wanted) and wanted > 0
    sign = 1 if side == "long" else -1
    # A trade "opposes" the position when it moves it towards flat; only those may pass while REDUCING,
    # and those are never cut below closing size by the limits.
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
        reached = daily_loss_reached(pnl, loss_limit)
        trip = reached and not context.circuit_breaker_tripped
        check("daily_loss_limit", not reached,
              f"daily loss {money(loss, loss_limit)} reached the limit {money(loss_limit)}" if reached
              else f"daily P&L {money(pnl, -loss_limit)} is within the loss limit {money(loss_limit)}")

    dd = context.drawdown
    if not is_real(dd):
        check("max_drawdown", False, f"drawdown {dd!r} is not a number")
    else:
        check("max_drawdown", dd < limits.max_drawdown,
              f"drawdown {_pct(dd, limits.max_drawdown)} reached the maximum {limits.max_drawdown:.1%}"
              if dd >= limits.max_drawdown
              else f"drawdown {_pct(dd, limits.max_drawdown)} is under the maximum {limits.max_drawdown:.1%}")

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
    elif in_session(now, limits):
        checks.append(_IN_SESSION)
    else:
        check("trading_session", False,
              f"market is closed at {now.astimezone(_zone(limits.session_timezone)):%a %Y-%m-%d %H:%M %Z}")

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

    # The limits: how many of the proposed contracts fit. Reducing a position is never cut short of flat,
    # even when the account is already over a limit; going beyond flat is held to the limits like any entry.
    allowed = wanted if valid_proposal else 0
    if not (is_count(position) and is_count(context.total_contracts)):
        check("position_limit", False, f"position {position!r} is not a whole number of contracts")
        check("total_limit", False, f"total contracts {context.total_contracts!r} is not a whole number")
        allowed = 0
    else:
        held = abs(position)
        cap = limits.max_position_contracts
        room = held + cap if opposing else max(0, cap - held)
        check(*_limit_check("position_limit", allowed, room, f"position limit {cap} (net position {position})"))
        allowed = min(allowed, room)
        total = max(context.total_contracts, held)  # the total includes this position
        cap_total = limits.max_total_contracts
        room_total = held + max(0, cap_total - (total - held)) if opposing else max(0, cap_total - total)
        check(*_limit_check("total_limit", allowed, room_total, f"total limit {cap_total} (open contracts {total})"))
        allowed = min(allowed, room_total)
        if state == TradingState.REDUCING and opposing:
            allowed = min(allowed, held)  # to flat, not beyond: that would grow |net| on the other side

    # The loss budget: a new position's stop-out must not take the day past the loss limit. Profits do not widen
    # the budget (conservative); trades towards flat reduce risk and are not cut by it.
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
        check(*_limit_check("loss_budget", allowed, room,
                            f"daily loss budget {budget:.2f}{held} at {risk:.2f} a contract to the stop"))
        allowed = min(allowed, room)

    if blocked or allowed <= 0:
        return RiskVerdict(Decision.BLOCK, 0, tuple(checks), trip)
    if allowed < wanted:
        return RiskVerdict(Decision.REDUCE, allowed, tuple(checks), trip)
    return RiskVerdict(Decision.APPROVE, wanted, tuple(checks), trip)


def _limit_check(name: str, wanted: int, room: int, what: str) -> tuple[str, bool, str, bool]:
    """(name, passed, message, blocks) for a limit with `room` contracts left for a trade of `wanted`."""
    if wanted <= room:
        return name, True, f"{what} leaves room for {room}", False
    if room <= 0:
        return name, False, f"{what} leaves no room for more contracts", True
    return name, False, f"{what} leaves room for {room} of {wanted} contracts", False


def _pct(value: float, limit: float) -> str:
    text = f"{value:.1%}"
    return text if text != f"{limit:.1%}" or value == limit else f"{value:.4%}"
