"""Subscriptions of the ML core: every closed bar is predicted by a task (inline in embedded mode)."""
from django.dispatch import receiver

from trading.events import bar_closed

from .tasks import predict_bar


@receiver(bar_closed, dispatch_uid="mlcore.predict_closed_bar")
def predict_closed_bar(sender, bar, **kwargs):
    predict_bar.delay(bar.pk)
