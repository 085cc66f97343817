"""Receivers of trading: live push of each closed bar, the paper broker on each bar, sizing of each prediction.

On a closed bar the broker runs first (this app's receivers connect before mlcore's), so approved entries fill at
the new bar's open before that bar's own prediction is sized against the updated exposure.
"""
from django.dispatch import receiver

from mlcore.events import prediction_created

from . import realtime
from .events import bar_closed
from .tasks import broker_process_bar, size_prediction


@receiver(bar_closed, dispatch_uid="trading.push_bar_to_dashboards")
def push_bar_to_dashboards(sender, bar, **kwargs):
    realtime.broadcast(bar.instrument.symbol, bar.timeframe, "bar.closed", {"bar": realtime.bar_message(bar)})


@receiver(bar_closed, dispatch_uid="trading.run_broker_on_bar")
def run_broker_on_bar(sender, bar, **kwargs):
    broker_process_bar.delay(bar.pk)


@receiver(prediction_created, dispatch_uid="trading.size_prediction")
def size_new_prediction(sender, prediction, **kwargs):
    size_prediction.delay(prediction.pk)
