"""The "bar closed" event: the one hook that prediction, sizing and monitoring subscribe to.

Sent after the bar's transaction commits, in the process that stored the bar (the feed).
Receivers must be quick; heavy work goes to a Celery task (eager in embedded mode).
Keyword arguments: bar (trading.models.Bar).
"""
from django.dispatch import Signal

bar_closed = Signal()
