"""Events of the trading app (Django signals, sent with `send_robust` once the change they announce has committed).

- `bar_closed` (bar: trading.models.Bar): a live bar was stored; its decision workflow has been started
  (`trading.workflow`). For listeners such as monitoring; the workflow itself does not depend on it.
- `order_placed` (order_id: int): an approved entry order was committed; the broker is told by a task.
"""
from django.dispatch import Signal

bar_closed = Signal()
order_placed = Signal()
