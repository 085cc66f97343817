"""Receivers of trading's own events: live push of each closed bar to the dashboards watching it."""
from django.dispatch import receiver

from . import realtime
from .events import bar_closed


@receiver(bar_closed, dispatch_uid="trading.push_bar_to_dashboards")
def push_bar_to_dashboards(sender, bar, **kwargs):
    realtime.broadcast(bar.instrument.symbol, bar.timeframe, "bar.closed", {"bar": realtime.bar_message(bar)})
