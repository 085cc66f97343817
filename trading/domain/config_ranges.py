"""The one table of every trading setting's type and allowed range, and the strict parser that enforces it.

The model's validators and help texts, the database's check constraints, the API's serializer, the admin's form and
the service that changes a configuration all read `CONFIG_RANGES`, so a setting cannot be valid in one place and not
in another. The ranges are deliberately conservative: wide enough for any sane paper or live use, narrow enough that
no value can overflow sizing (a time to live of 10^14 bars did) or make a limit meaningless.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# A number written with more characters than this is not a setting anyone means (and parsing it costs time).
_MAX_TEXT = 40


@dataclass(frozen=True)
class SettingRange:
    """One setting: its type (int, float or Decimal with `places` decimals) and its interval, each end open or
    closed. `parse` accepts numbers and numeric strings (form bodies send strings) of that type in that interval."""

    kind: type
    low: int | float | Decimal
    high: int | float | Decimal
    low_open: bool = False
    high_open: bool = False
    places: int | None = None  # Decimal only: at most this many decimals
    unit: str = ""

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def describe(self) -> str:
        """The range as help text says it, e.g. "in [1, 1440] bars"."""
        return f"in {self}{' ' + self.unit if self.unit else ''}"

    def contains(self, value) -> bool:
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return bool(above_low and below_high)

    def parse(self, value):
        """The value as `kind`, or ValueError saying why not: booleans are not numbers, fractions are not integers,
        NaN and infinities are not values, text that is not a number is refused, and the value must be in range."""
        exact = self._decimal(value)
        # Range first, on the exact value: 1e999999999 must not become a billion-digit integer.
        if not self.contains(exact):
            raise ValueError(f"Must be {self.describe()}, got {exact}.")
        if self.kind is int:
            if exact != exact.to_integral_value():
                raise ValueError("Must be a whole number.")
            return int(exact)
        if self.kind is float:
            number = float(exact)
            if not self.contains(number):  # 0.99999999999999999999 is 1.0 as a float
                raise ValueError(f"Must be {self.describe()}, got {number}.")
            return number
        if self.places is not None and exact.as_tuple().exponent < -self.places:
            raise ValueError(f"At most {self.places} decimal places.")
        return exact

    def _decimal(self, value) -> Decimal:
        if value is None:
            raise ValueError("A value is required.")
        if isinstance(value, bool):
            raise ValueError("A boolean is not a number.")
        if isinstance(value, str):
            text = value.strip()
            if not text or len(text) > _MAX_TEXT:
                raise ValueError("Not a number.")
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise ValueError("Not a number.") from None
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("Must be a finite number.")
            value = Decimal(repr(value))  # the shortest decimal that reads back as this float: 0.1 stays 0.1
        elif isinstance(value, numbers.Integral):
            value = Decimal(int(value))
        elif not isinstance(value, Decimal):
            raise ValueError(f"Not a number ({type(value).__name__}).")
        if not value.is_finite():
            raise ValueError("Must be a finite number.")
        return value


def _money(high: str) -> SettingRange:
    # The database columns hold two decimals.
    return SettingRange(Decimal, Decimal(0), Decimal(high), places=2)


CONFIG_RANGES: dict[str, SettingRange] = {
    "kelly_fraction": SettingRange(float, 0.0, 1.0, low_open=True),
    "min_confidence": SettingRange(float, 0.5, 1.0, high_open=True),
    "max_contracts": SettingRange(int, 1, 100, unit="contracts"),
    "max_position_contracts": SettingRange(int, 1, 100, unit="contracts"),
    "max_total_contracts": SettingRange(int, 1, 1000, unit="contracts"),
    "daily_loss_limit": _money("10000000.00"),
    "max_drawdown": SettingRange(float, 0.0, 1.0, low_open=True),
    "max_trades_per_day": SettingRange(int, 1, 1000),
    "stale_after_seconds": SettingRange(float, 0.0, 86400.0, low_open=True, unit="seconds"),
    "health_floor": SettingRange(float, 0.0, 1.0),
    "health_full_size_floor": SettingRange(float, 0.0, 1.0),
    "recommendation_ttl_bars": SettingRange(int, 1, 1440, unit="bars"),
    "slippage_ticks": SettingRange(int, 0, 100, unit="ticks"),
    "commission_per_contract": _money("1000.00"),
}
