"""The one vocabulary of sides: a trade is long or short; the orders that open and close it buy or sell."""
from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @classmethod
    def of_order(cls, order_side: str) -> Side:
        """The side of the trade an entry order opens ("buy" opens a long)."""
        if order_side not in ORDER_SIDES:
            raise ValueError(f"order side must be one of {', '.join(ORDER_SIDES)}, got {order_side!r}")
        return cls.LONG if order_side == BUY else cls.SHORT

    @property
    def order_side(self) -> str:
        """The side of the order that opens this trade."""
        return BUY if self is Side.LONG else SELL

    @property
    def closing_order_side(self) -> str:
        """The side of the order that closes this trade."""
        return SELL if self is Side.LONG else BUY


BUY, SELL = "buy", "sell"
ORDER_SIDES = (BUY, SELL)
SIDES = tuple(side.value for side in Side)  # ("long", "short"): the order labels, models and reports use
