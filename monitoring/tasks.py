"""Monitoring's Celery tasks: snapshots (and the webhook notices of alerts)."""
from celery import shared_task


# --- snapshots (the "monitoring" queue: a snapshot never waits behind, or delays, a bar's settlement) ----------

@shared_task(name="monitoring.tasks.snapshot_all", acks_late=True, soft_time_limit=120, time_limit=150)
def snapshot_all() -> list[float | None]:
    from . import services

    return [result.snapshot.health_score for result in services.snapshot_all()]


@shared_task(name="monitoring.tasks.snapshot_version", acks_late=True, soft_time_limit=120, time_limit=150)
def snapshot_version(version_id: int, trigger: str = "promotion") -> float | None:
    from mlcore.models import ModelVersion

    from . import services

    version = ModelVersion.objects.select_related("instrument").filter(pk=version_id).first()
    if version is None or version.status != ModelVersion.Status.ACTIVE:
        return None
    return services.snapshot_take(version=version, trigger=trigger).snapshot.health_score
