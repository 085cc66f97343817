"""Market-data feeds: sources of closed bars and the runner that stores and announces them.

Adding a live data source means writing one class with this shape (see `BarSource`):

    class MyVendorSource:
        name = "myvendor"            # shown on the dashboard's status strip
        already_stored = False       # the runner stores each bar, then announces it
        def __iter__(self):          # yield trading.domain.bars.BarData, oldest first,
            ...                      # each one only once its bar has closed; block while waiting

and running it with `trading.feeds.runner.run_feed(..., source=MyVendorSource(), pace_seconds=0)`.
"""
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from trading.domain.bars import BarData


@runtime_checkable
class BarSource(Protocol):
    """Yields closed bars, oldest first. A live adapter blocks in iteration until the next bar closes."""

    name: str
    already_stored: bool  # True for a replay of bars already in the database: announce, don't store
    # Optional `simulated = True`: generated bars that may run ahead of the wall clock (the synthetic source);
    # every other source's bars must fall in the plausible time range (services.bar_time_bounds).

    def __iter__(self) -> Iterator[BarData]: ...
