"""The "Worker down" alert with real processes: beat, a trading worker that also serves the monitoring queue (as the
Procfile has it) and an inference worker, on a private redis-server. The trading worker is SIGKILLed: the alert opens
within the rule's threshold (plus a heartbeat) and its webhook notice is posted, though the worker that served
monitoring is the one dead; it resolves, with its notice, once the worker is back. Before, the check ran in a snapshot
on the monitoring queue and so could not run while that worker was dead (killed for 100 s: no alert, no notice)."""
import asyncio
import json
import time

import pytest
from channels.layers import get_channel_layer
from django.test import Client

from monitoring.defaults import RULES
from monitoring.models import Alert, AlertRule, WebhookDelivery
from monitoring.tests.edges.test_webhooks import Receiver
from trading.models import WorkerHeartbeat
from trading.tests.processes import process_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.deployment, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

HEARTBEAT_SECONDS = 1.0
THRESHOLD = 4.0  # the rule's, in seconds


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


class StatusListener:
    """The feed status pushes of NQ 1m's dashboards, read from the channel layer (the stack's private Redis) on one
    event loop of its own (the layer's receive queue is bound to the loop that first used it)."""

    def __init__(self):
        from trading import realtime

        self.loop = asyncio.new_event_loop()
        self.layer = get_channel_layer()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        self.loop.run_until_complete(self.layer.group_add(realtime.market_group("NQ", "1m"), self.channel))
        self.workers: list[dict] = []

    def drain(self) -> list[dict]:
        try:
            while True:
                message = self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), 0.2))
                if message["type"] == "feed.status":
                    self.workers.append(message["payload"]["workers"])
        except asyncio.TimeoutError:
            return self.workers


def events(receiver) -> list[tuple[str, str]]:
    return [(json.loads(r["body"])["event"], json.loads(r["body"])["alert"]["cause"]) for r in receiver.requests]


def test_the_trading_worker_killed_opens_the_worker_down_alert_and_posts_its_notice(process_stack, receiver,
                                                                                      settings):
    stack = process_stack
    name, severity, _, description = RULES["workers"]
    AlertRule.objects.update_or_create(code="workers", defaults={
        "name": name, "severity": severity, "threshold": THRESHOLD, "description": description, "enabled": True})
    from trading import services
    from trading.tests.factories import InstrumentFactory

    services.feed_status_start(instrument=InstrumentFactory(symbol="NQ"), timeframe="1m", source="test",
                               pace_seconds=0)
    listener = StatusListener()
    stack.extra_env.update({"MINHOS_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
                            "MINHOS_WORKER_STALE_SECONDS": str(THRESHOLD),
                            "MINHOS_ALERT_WEBHOOK_URL": receiver.url, "MINHOS_ALERT_WEBHOOK_TIMEOUT": "2"})
    settings.MINHOS_WORKER_STALE_SECONDS = THRESHOLD
    settings.CELERY_TASK_ALWAYS_EAGER = False  # /healthz as in deployment
    beat = stack.beat(wait=False)
    trading, inference = stack.workers(["trading", "monitoring"], ["inference"], concurrency=1)
    beat.wait_ready()

    def fresh(*queues):
        seen = dict(WorkerHeartbeat.objects.values_list("queue", "seen_at"))
        now = time.time()
        return all(q in seen and now - seen[q].timestamp() < 2 * HEARTBEAT_SECONDS + 1 for q in queues)

    stack.wait_for(lambda: fresh("trading", "monitoring", "inference"), 30, "the workers took no heartbeat")
    assert not Alert.objects.filter(cause="workers").exists()
    health = Client().get("/healthz").json()["components"]["workers"]["queues"]
    assert health["monitoring"]["status"] == "ok"  # the monitoring queue is watched too

    stack.kill(trading)
    killed_at = time.monotonic()
    alert = stack.wait_for(lambda: Alert.objects.filter(cause="workers", status=Alert.Status.OPEN).first(),
                           THRESHOLD + 10, "no worker-down alert while the trading worker was dead")
    opened_after = time.monotonic() - killed_at
    # Both of its queues named (the second may join at the next check: their last heartbeats were a moment apart).
    stack.wait_for(lambda: {"trading", "monitoring"} <= set(Alert.objects.get(pk=alert.pk).message.replace(
        ",", " ").split()), 10, lambda: f"the alert says: {Alert.objects.get(pk=alert.pk).message}")
    assert "inference" not in Alert.objects.get(pk=alert.pk).message
    # Its notice is posted by the live worker (inference): the monitoring queue has none.
    stack.wait_for(lambda: ("opened", "workers") in events(receiver), 20, lambda: f"notices: {events(receiver)}")
    stack.wait_for(lambda: WebhookDelivery.objects.filter(alert=alert, event="opened",
                                                         status=WebhookDelivery.Status.SENT).exists(), 10,
                   "the notice was posted and not recorded as sent")
    assert not trading.alive()
    down = Client().get("/healthz").json()["components"]["workers"]["queues"]
    assert down["trading"]["status"] == down["monitoring"]["status"] == "down"

    # The dashboards are told too: the feed status push (every 5 s) is not on the dead worker's queue any more.
    stack.wait_for(lambda: any(w and w["status"] == "down" and "trading" in w["down"] for w in listener.drain()),
                   15, lambda: f"the dashboards were not told: {listener.workers[-3:]}")

    trading.restart()
    stack.wait_for(lambda: Alert.objects.get(pk=alert.pk).status == Alert.Status.RESOLVED, 30,
                   "the alert did not resolve once the trading worker was back")
    stack.wait_for(lambda: ("resolved", "workers") in events(receiver), 20, lambda: f"notices: {events(receiver)}")
    # Within the threshold, a heartbeat and the check's own interval (and a margin for a loaded machine).
    assert opened_after <= THRESHOLD + 3 * HEARTBEAT_SECONDS + 3, f"opened {opened_after:.1f} s after the kill"
    assert Alert.objects.filter(cause="workers").count() == 1
    assert "Traceback" not in stack.logs("beat")
