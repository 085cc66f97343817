"""A report's figures as people read them, on the backtest pages and in `manage.py backtest`: money arrives as
exact decimal strings, ratios as floats or null (a figure that does not exist prints as a dash)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

MISSING = "—"
CENT = Decimal("0.01")


def money(value) -> str:
    """Cents with separators; a loss that rounds to nothing is 0.00, not -0.00."""
    if value is None or value == "":
        return MISSING
    try:
        return f"{Decimal(str(value)).quantize(CENT) + 0:,.2f}"
    except (InvalidOperation, ArithmeticError):  # not a number, or more digits than cents can hold
        return str(value)


def number(value, places: int = 2) -> str:
    return MISSING if value is None else f"{float(value):,.{places}f}"


def percent(value, places: int = 1) -> str:
    return MISSING if value is None else f"{100 * float(value):.{places}f}%"


def duration(seconds) -> str:
    """"3 d 04 h" (daily bars' drawdowns last days), "2 h 05 min", "12 min", "45 s"."""
    if seconds is None:
        return MISSING
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    days, rest = divmod(seconds, 86400)
    hours, minutes = divmod(rest // 60, 60)
    if days:
        return f"{days} d {hours:02d} h"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
