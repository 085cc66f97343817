"""Kelly position sizing: from a calibrated probability and the bracket's payoff ratio to a whole number of contracts.

    full Kelly          f* = p - (1 - p) / b
    adjusted fraction   max(0, f*) * kelly_fraction * confidence * drawdown * health * volatility factors
    raw contracts       adjusted fraction (to 12 significant digits) * equity / (stop distance * point value),
                        rounded down to 0.0001
    contracts           floor(raw contracts), capped at max_contracts

The factors, each in [0, 1]: confidence 0 under confidence_threshold, else 0.5 at it rising linearly to 1 at
certainty; drawdown 1 - drawdown / max_drawdown, 0 from max_drawdown on; health 1 from the full-size floor up
(health_full_at), falling linearly to 0 at the blocking floor (health_zero_at); volatility min(1, 1 / (ATR /
reference ATR)). A probability under confidence_threshold sizes to 0 too.

Every factor is kept on the result so a person can see why the size is what it is. Degenerate input
(NaN, infinities, a non-positive payoff, equity, stop or point value) sizes to 0 contracts with a reason
instead of raising, as NautilusTrader's FixedRiskSizer does; only a bad configuration raises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal

from .checks import is_count, is_real, money, near_limit

ZERO = Decimal(0)
RAW_QUANTUM = Decimal("0.0001")

# All the money arithmetic is on non-negative numbers, so rounding towards floor at every step can only make
# the size smaller than the exact one; the risk per contract (a divisor) rounds up for the same reason.
_DOWN = Context(prec=50, rounding=ROUND_FLOOR)
_UP = Context(prec=50, rounding=ROUND_CEILING)
# The fraction enters the money arithmetic at 12 significant digits: 0.6 is stored as 0.59999..., so taken
# exactly an exact 12.5 contracts would come out as 12.4999 and a whole 13 as 12. Probabilities are estimates
# good to a few digits; the rounding (to nearest, so still monotone) is 1e-12 of the size at most.
_FRACTION = Context(prec=12, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class KellyConfig:
    kelly_fraction: float = 0.25  # share of full Kelly to bet, in (0, 1]
    confidence_threshold: float = 0.60  # in [0.5, 1): below it the size is 0
    max_contracts: int = 5  # hard cap, >= 0
    max_drawdown: float = 0.10  # drawdown (fraction of peak equity) at which the drawdown factor reaches 0, in (0, 1]
    # Model health (0..1) from which the size is full, and at which it reaches 0 (monitoring's degradation floors).
    health_full_at: float = 0.70
    health_zero_at: float = 0.40

    def __post_init__(self) -> None:
        if not is_real(self.kelly_fraction) or not 0 < self.kelly_fraction <= 1:
            raise ValueError(f"kelly_fraction must be in (0, 1], got {self.kelly_fraction!r}")
        if not is_real(self.confidence_threshold) or not 0.5 <= self.confidence_threshold < 1:
            raise ValueError(f"confidence_threshold must be in [0.5, 1), got {self.confidence_threshold!r}")
        if not is_count(self.max_contracts) or self.max_contracts < 0:
            raise ValueError(f"max_contracts must be a whole number >= 0, got {self.max_contracts!r}")
        if not is_real(self.max_drawdown) or not 0 < self.max_drawdown <= 1:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown!r}")
        for name in ("health_full_at", "health_zero_at"):
            value = getattr(self, name)
            if not is_real(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class KellyInputs:
    probability: float  # calibrated p that the take-profit comes first, for the chosen side
    payoff_ratio: float  # b = take-profit distance / stop-loss distance
    confidence: float  # calibrated probability of the chosen side (usually == probability)
    drawdown: float  # current drawdown from peak equity, fraction in [0, 1]
    model_health: float  # 0..1 (the version's health score / 100)
    volatility_ratio: float  # current ATR / reference ATR (> 0); 1.0 = normal
    equity: Decimal  # account equity in account currency
    stop_distance: Decimal  # stop-loss distance in price points, > 0
    point_value: Decimal  # currency per point per contract (NQ: 20)


@dataclass(frozen=True)
class KellySize:
    full_kelly: float  # f* = p - (1 - p) / b; may be negative; 0 when it cannot be computed
    kelly_fraction: float
    confidence_factor: float
    drawdown_factor: float
    health_factor: float
    volatility_factor: float
    adjusted_fraction: float  # max(0, f*) * kelly_fraction * every factor
    risk_per_contract: Decimal  # stop_distance * point_value; 0 when it cannot be computed
    raw_contracts: Decimal  # adjusted_fraction * equity / risk_per_contract, rounded down to 0.0001, >= 0
    contracts: int  # floor(raw_contracts), then at most max_contracts
    capped: bool  # the cap, not the formula, decided the size
    reason: str  # empty when contracts > 0, else why zero

    def as_dict(self) -> dict:
        return {
            "full_kelly": self.full_kelly,
            "kelly_fraction": self.kelly_fraction,
            "confidence_factor": self.confidence_factor,
            "drawdown_factor": self.drawdown_factor,
            "health_factor": self.health_factor,
            "volatility_factor": self.volatility_factor,
            "adjusted_fraction": self.adjusted_fraction,
            "risk_per_contract": str(self.risk_per_contract),
            "raw_contracts": str(self.raw_contracts),
            "contracts": self.contracts,
            "capped": self.capped,
            "reason": self.reason,
        }


def confidence_factor(confidence: float, threshold: float) -> float:
    """0 below the threshold; 0.5 at it, rising linearly to 1.0 at confidence 1.0."""
    if not (threshold <= confidence <= 1.0):  # also NaN
        return 0.0
    return 0.5 + 0.5 * (confidence - threshold) / (1.0 - threshold)


def drawdown_factor(drawdown: float, max_drawdown: float) -> float:
    """1 with no drawdown, falling linearly to 0 at max_drawdown, 0 beyond (and for NaN)."""
    if not drawdown < max_drawdown:  # also NaN
        return 0.0
    # A negative drawdown cannot happen; float noise around 0 is read as no drawdown.
    return 1.0 - max(drawdown, 0.0) / max_drawdown


def health_factor(model_health: float, full_at: float = 0.70, zero_at: float = 0.40) -> float:
    """1 at or above `full_at`; 0 at or under `zero_at` (and for NaN); linear between. With `full_at` at or under
    `zero_at` it is a step at `full_at`."""
    if not model_health > zero_at:  # also NaN
        return 0.0
    if model_health >= full_at:
        return 1.0
    return (model_health - zero_at) / (full_at - zero_at)


def volatility_factor(volatility_ratio: float) -> float:
    """min(1, 1 / ratio): size shrinks when the market is wilder than usual, never grows when calmer.

    A ratio that is not a finite positive number says nothing about the market, so it sizes to 0.
    """
    if not 0.0 < volatility_ratio < math.inf:  # also NaN
        return 0.0
    return 1.0 if volatility_ratio <= 1.0 else 1.0 / volatility_ratio


def kelly_size(inputs: KellyInputs, config: KellyConfig) -> KellySize:
    """Size one trade. Never raises on the inputs; a zero size always carries a reason."""
    p, b, c = inputs.probability, inputs.payoff_ratio, inputs.confidence
    threshold = config.confidence_threshold
    problems: list[str] = []

    p_ok = is_real(p) and 0.0 <= p <= 1.0
    b_ok = is_real(b) and 0.0 < b < math.inf
    if not p_ok:
        problems.append(f"probability {p!r} is not a probability")
    if not b_ok:
        problems.append(f"payoff ratio {b!r} is not a finite positive number")
    if not (is_real(c) and 0.0 <= c <= 1.0):
        problems.append(f"confidence {c!r} is not a probability")
        c = math.nan
    full = p - (1.0 - p) / b if p_ok and b_ok else 0.0

    dd, health, vol = inputs.drawdown, inputs.model_health, inputs.volatility_ratio
    cf = confidence_factor(c, threshold)
    df = drawdown_factor(dd, config.max_drawdown) if is_real(dd) else 0.0
    hf = health_factor(health, config.health_full_at, config.health_zero_at) if is_real(health) else 0.0
    vf = volatility_factor(vol) if is_real(vol) else 0.0
    # The threshold gates the probability itself too: a long payoff ratio can give an edge at p = 0.3,
    # but a bet the calibrated model thinks is more likely to lose than the threshold allows is not taken.
    edge = full if full > 0.0 and p_ok and p >= threshold else 0.0
    adjusted = edge * config.kelly_fraction * cf * df * hf * vf

    equity = _decimal(inputs.equity)
    stop = _decimal(inputs.stop_distance)
    point = _decimal(inputs.point_value)
    if equity is None:
        problems.append(f"equity {inputs.equity!r} is not a finite amount")
    elif equity <= 0:
        problems.append("zero equity" if equity == 0 else f"negative equity {money(equity, ZERO)}")
    if stop is None or stop <= 0:
        problems.append(f"stop distance {inputs.stop_distance!r} is not a positive number of points")
    if point is None or point <= 0:
        problems.append(f"point value {inputs.point_value!r} is not a positive amount")
    risk = ZERO
    if stop is not None and point is not None and stop > 0 and point > 0:
        try:
            risk = _UP.multiply(stop, point)
        except ArithmeticError:
            problems.append(f"stop distance {stop} times point value {point} is out of range")

    raw = ZERO
    if adjusted > 0.0 and risk > 0 and equity is not None and equity > 0:
        try:
            raw = _DOWN.divide(_DOWN.multiply(_FRACTION.create_decimal_from_float(adjusted), equity), risk)
            if raw.adjusted() < 40:  # beyond that the quantum would not fit the precision; the cap decides anyway
                raw = raw.quantize(RAW_QUANTUM, rounding=ROUND_DOWN, context=_DOWN)
        except ArithmeticError:  # decimal's Overflow: absurd magnitudes are a broken input, not a huge bet
            raw = ZERO
            problems.append(f"equity {equity} over a risk of {risk} a contract is out of range")
    whole = int(raw)
    contracts = min(whole, config.max_contracts)
    capped = whole > config.max_contracts

    reason = ""
    if contracts <= 0:
        contracts = 0
        if problems:
            reason = "; ".join(problems)
        elif p < threshold:
            reason = f"probability {near_limit(p, threshold)} is under the confidence threshold {threshold:.2f}"
        elif full <= 0.0:
            reason = f"no edge: f* = {full:.4f} <= 0 (p {p:.4f}, payoff ratio {b:.4g})"
        elif cf == 0.0:
            reason = f"confidence {near_limit(c, threshold)} is under the confidence threshold {threshold:.2f}"
        elif df == 0.0:
            reason = (f"drawdown {dd:.1%} reached the maximum {config.max_drawdown:.1%}" if is_real(dd)
                      else f"drawdown {dd!r} is not a number")
        elif hf == 0.0:
            reason = (f"model health {health * 100:.0f}/100 is at or under the blocking floor "
                      f"{config.health_zero_at * 100:.0f}" if is_real(health)
                      else f"model health {health!r} is not a number")
        elif vf == 0.0:
            reason = f"volatility ratio {vol!r} is not a finite positive number"
        elif config.max_contracts == 0:
            reason = "max_contracts is 0"
        else:
            reason = f"size {raw} contracts rounds down to 0"

    return KellySize(
        full_kelly=full,
        kelly_fraction=config.kelly_fraction,
        confidence_factor=cf,
        drawdown_factor=df,
        health_factor=hf,
        volatility_factor=vf,
        adjusted_fraction=adjusted,
        risk_per_contract=risk,
        raw_contracts=raw,
        contracts=contracts,
        capped=capped,
        reason=reason,
    )


def _decimal(value: object) -> Decimal | None:
    """The value as a finite Decimal, or None. Floats convert exactly; strings and garbage are refused."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if is_real(value):
        return Decimal(value)
    return None
