"""The Celery app and its beat schedule; tasks live in the apps."""
import logging
import os

from celery import Celery
from celery.signals import worker_ready
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minhos_site.settings")

app = Celery("minhos")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _redis_channel_close_survives_a_dead_server() -> None:
    """kombu's Redis `Channel.close` first reads the reply of a pending BRPOP and lets only `Empty` pass. With Redis
    gone that read raises a connection error, the close stops half way, and Celery's reconnect then fails on the
    half-closed channel ("'NoneType' object has no attribute 'hostname'"): the worker exits instead of waiting for
    Redis (seen in about half of the Redis outage test's runs; none in 17 with this). Read the pending reply the same
    way, treating a connection error like `Empty`, then close as kombu does."""
    close = kombu_redis.Channel.close
    if getattr(close, "minhos_patched", False):
        return

    def close_even_if_the_pending_read_fails(self):
        if getattr(self, "_in_poll", None):
            try:
                self._brpop_read()
            except (kombu_redis.Empty, *self.connection_errors):
                pass  # _brpop_read cleared _in_poll: kombu's close does not read again
        return close(self)

    close_even_if_the_pending_read_fails.minhos_patched = True
    kombu_redis.Channel.close = close_even_if_the_pending_read_fails


_redis_channel_close_survives_a_dead_server()


class AckFailureWithoutTraceback(logging.Filter):
    """kombu logs a task message it could not acknowledge or reject because the broker went away (`Message.ack_log_error`)
    at CRITICAL with the connection error's chained traceback, some forty lines: the line stays (the message is
    delivered again once Redis is back, and every step is idempotent), the traceback of the outage goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith(("Couldn't ack", "Couldn't reject")):
            record.exc_info = record.exc_text = None
        return True


# The loggers kombu is handed for acknowledgements (celery.worker.request) and rejections (the consumer's).
for _name in ("celery.worker.request", "celery.worker.consumer.consumer"):
    logging.getLogger(_name).addFilter(AckFailureWithoutTraceback())


@worker_ready.connect
def _redrive_stalled_bars(sender, **kwargs):
    """A worker that starts (again) re-drives at once every bar whose workflow stalled, e.g. while it was down: each
    stage on the queue of its step, so whichever worker is up takes its part."""
    for stage, queue in (("stored", "trading"), ("settled", "inference")):
        sender.app.send_task("trading.tasks.workflow_sweep", kwargs={"idle_seconds": 0, "stage": stage}, queue=queue)
