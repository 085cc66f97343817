"""Input checks and number formatting shared by the pure trading cores (Kelly, risk, broker rules, ledger)."""
from __future__ import annotations

import math
import numbers
from decimal import Decimal


def is_real(value: object) -> bool:
    """A finite int or float (bool excluded: True is not a probability)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def near_limit(value: float, limit: float) -> str:
    """Two decimals, or more when two would print a value under the limit as equal to it (0.5999 vs 0.60)."""
    text = f"{value:.2f}"
    return text if text != f"{limit:.2f}" else f"{value:.6g}"


_CENT = Decimal("0.01")


def money(value: Decimal, limit: Decimal | None = None) -> str:
    """An amount in cents (a stored 0E-10 prints as 0.00, -0 as 0.00); exact when cents would print it as the
    limit itself (-1999.996 against a limit of -2000). Never raises: an amount too large for cents prints as is."""
    try:
        cents = value.quantize(_CENT) + 0  # + 0 drops the sign of a negative zero
        if limit is not None and value != limit and cents == limit.quantize(_CENT):
            return f"{value.normalize():f}"
    except ArithmeticError:  # more digits than the context's precision: a broken input, named as it came
        return str(value)
    return f"{cents:f}"


def exact_decimal(name: str, value, *, minimum: str | None = "positive") -> Decimal:
    """A finite Decimal (ints and numeric strings converted exactly); floats are refused, being inexact.

    `minimum`: "positive" (> 0), "non-negative" (>= 0) or None (any sign). Raises ValueError naming `name`.
    """
    if isinstance(value, (bool, float)):
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__} {value!r} (use Decimal(str(x)))")
    if isinstance(value, numbers.Integral):
        value = Decimal(int(value))
    elif isinstance(value, str):
        try:
            value = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not isinstance(value, Decimal):
        raise ValueError(f"{name} must be a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum == "positive" and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum == "non-negative" and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def whole_number(name: str, value, *, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)
