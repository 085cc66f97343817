"""Monitoring's Celery tasks: snapshots (and the webhook notices of alerts)."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from minhos_site.periodic import skipped_while_database_away

from . import webhooks


# --- snapshots (the "monitoring" queue: a snapshot never waits behind, or delays, a bar's settlement) ----------

@shared_task(name="monitoring.tasks.snapshot_all", acks_late=True, soft_time_limit=120, time_limit=150)
@skipped_while_database_away
def snapshot_all() -> list[float | None]:
    from django.conf import settings

    from . import services, webhooks

    if getattr(settings, "MINHOS_ALERT_WEBHOOK_URL", ""):
        webhooks.webhook_requeue_stalled()
    return [result.snapshot.health_score for result in services.snapshot_all()]


@shared_task(name="monitoring.tasks.snapshot_version", acks_late=True, soft_time_limit=120, time_limit=150)
def snapshot_version(version_id: int, trigger: str = "promotion") -> float | None:
    from mlcore.models import ModelVersion

    from . import services

    version = ModelVersion.objects.select_related("instrument").filter(pk=version_id).first()
    if version is None or version.status != ModelVersion.Status.ACTIVE:
        return None
    return services.snapshot_take(version=version, trigger=trigger).snapshot.health_score


# --- the worker-down check (run by beat itself: minhos_site/beat.py, settings.MINHOS_BEAT_RUNS_HERE) ---------

_watching_since = None  # this process's first check: a queue never seen is not judged before its threshold passed


@shared_task(name="monitoring.tasks.workers_check")
def workers_check() -> list[str]:
    """The queues without a live worker (and the "Worker down" alert opened, refreshed or resolved)."""
    global _watching_since
    from django.utils import timezone

    from . import services

    now = timezone.now()
    _watching_since = _watching_since or now
    result = services.workers_check(watching_since=_watching_since, now=now)
    return list(result.dead) if result else []


# --- alert webhooks (the "monitoring" queue; queued by monitoring.webhooks.webhook_queue after commit) ----------

@shared_task(name="monitoring.tasks.alert_webhook_deliver", bind=True, acks_late=True, soft_time_limit=60,
             time_limit=90, autoretry_for=(OperationalError, InterfaceError), retry_backoff=1, retry_backoff_max=30,
             max_retries=webhooks.MAX_ATTEMPTS + 8)  # the webhook's retries, and a few for a database away briefly
def alert_webhook_deliver(self, delivery_id: int) -> str:
    """One try of the notice; a failed try is retried after 2, 4, 8, 16 and 32 s (the tries are counted on the
    delivery's row, so a repeated message cannot add any), then given up."""
    attempt = webhooks.webhook_deliver(delivery_id)
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.outcome
