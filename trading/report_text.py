"""A report's figures as people read them, on the backtest pages and in `manage.py backtest`: money arrives as
exact decimal strings, ratios as floats or null (a figure that does not exist prints as a dash; a ratio the window
cannot estimate prints as "n/a" with the report's reason)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .domain import performance

MISSING = "—"
NOT_ESTIMABLE = "n/a"
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


def ratio_parts(report: dict, name: str) -> tuple[str, str]:
    """A ratio of the report (one of performance.RATIO_FIGURES) as (text, reason): ("1.23", "") or ("n/a", why).
    A report stored before reasons were kept has the same window rule applied to its bar count, so an old two-day
    run's ten-digit Calmar reads n/a too."""
    value, reason = report.get(name), report.get(f"{name}_na")
    if f"{name}_na" not in report and report.get("periods_per_year"):
        reason = performance.window_reason(name, periods=(report.get("window") or {}).get("bars") or 0,
                                           periods_per_year=report["periods_per_year"])
        value = None if reason else value
    if value is None:
        return (NOT_ESTIMABLE, reason) if reason else (MISSING, "")
    return (percent(value) if name == "annualised_return" else number(value)), ""


def ratio(report: dict, name: str) -> str:
    """As ratio_parts, on one line: "1.23" or "n/a (the window is 2 trading days of bars; …)"."""
    shown, reason = ratio_parts(report, name)
    return f"{shown} ({reason})" if reason else shown
