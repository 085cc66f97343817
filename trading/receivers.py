"""Receivers of trading: a stored live bar starts its decision workflow; a committed order goes to the broker."""
from django.dispatch import receiver

from . import workflow
from .events import bar_closed, order_placed
from .tasks import order_submit


@receiver(bar_closed, dispatch_uid="trading.workflow_start")
def start_bar_workflow(sender, bar, **kwargs):
    workflow.bar_stored(bar)


@receiver(order_placed, dispatch_uid="trading.submit_order")
def submit_placed_order(sender, order_id, **kwargs):
    order_submit.delay(order_id)
