"""Monitoring listens: a version that becomes active is scored at once (its health is what sizing reads)."""
import logging

from django.dispatch import receiver

from mlcore.events import model_version_promoted, retraining_decided, training_run_ended

logger = logging.getLogger("minhos.monitoring")


@receiver(model_version_promoted, dispatch_uid="monitoring-score-promoted-version")
def score_promoted_version(sender, *, version_id: int, **kwargs) -> None:
    from . import tasks

    # Eager in embedded mode (scored inline); in deployment, on the monitoring queue. A broker that is down only
    # delays the score: the beat's next snapshot takes it.
    try:
        tasks.snapshot_version.apply_async(args=(version_id, "promotion"), retry=False)
    except Exception as exc:
        logger.error("could not queue the snapshot of promoted version %s: %s", version_id, exc)


@receiver(retraining_decided, dispatch_uid="monitoring-retraining-decided")
def retraining_decided_alert(sender, *, retraining_id: int, **kwargs) -> None:
    """A failed retraining or a refused promotion opens the market's "retraining_failed" alert (the champion keeps
    serving); the market's next retraining that reaches a decision resolves it. Every decision is pushed to pages."""
    from . import services

    services.retraining_outcome_record(retraining_id=retraining_id)


@receiver(training_run_ended, dispatch_uid="monitoring-training-run-ended")
def training_run_ended_alert(sender, *, run_id: int, **kwargs) -> None:
    """A failed training run opens the market's "training_failed" alert; its next run that succeeds resolves it."""
    from . import services

    services.training_run_outcome_record(run_id=run_id)
