"""Receivers of trading: a stored live bar starts its decision workflow; a committed order goes to the broker."""
import logging

from django.dispatch import receiver
from kombu.exceptions import OperationalError

from . import workflow
from .events import bar_closed, order_placed
from .tasks import order_submit

logger = logging.getLogger(__name__)


@receiver(bar_closed, dispatch_uid="trading.workflow_start")
def start_bar_workflow(sender, bar, **kwargs):
    workflow.bar_stored(bar)


@receiver(order_placed, dispatch_uid="trading.submit_order")
def submit_placed_order(sender, order_id, **kwargs):
    try:
        order_submit.delay(order_id)
    except OperationalError as error:
        # The broker queue (Redis) is down. The order is committed and rests as a working order: the paper broker
        # fills it from its row at the next bar's open, so nothing is lost; one line, not a chained traceback.
        logger.warning("order %s is committed but its hand-over to the broker could not be queued (%s: %s); it "
                       "rests as a working order", order_id, type(error).__name__, error)
