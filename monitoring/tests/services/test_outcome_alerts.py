"""The alerts that outcomes open and clear (a failed retraining, a failed training run, a dead worker) share one rule
(`services._alert_keep`): one open alert per cause, refreshed while failing, resolved by a later success; the log
line, the notice and the push only once the change is committed. Before, the retraining's and the worker's "alert
opened" lines were written inside the transaction: a rolled-back opening was still logged as opened."""
import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from mlcore.models import Retraining, TrainingRun
from monitoring import services
from monitoring.models import Alert
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


class Rollback(Exception):
    pass


def _retraining(nq, status, error=""):
    return Retraining.objects.create(instrument=nq, timeframe="1m", trigger="schedule", requested_by="schedule",
                                     requested_at=timezone.now(), status=status, error=error)


def test_an_opening_rolled_back_with_its_caller_is_neither_logged_nor_kept(caplog):
    nq = InstrumentFactory(symbol="NQ")
    failed = _retraining(nq, Retraining.Status.FAILED, error="worker killed")
    with caplog.at_level(logging.WARNING, logger="minhos.monitoring"):
        with pytest.raises(Rollback):
            with transaction.atomic():
                assert services.retraining_outcome_record(retraining_id=failed.pk) is not None
                raise Rollback
    assert not Alert.objects.exists()
    assert "alert opened" not in caplog.text


def test_a_retraining_alert_opens_once_is_refreshed_then_resolved_with_the_log_after_commit(
        caplog, django_capture_on_commit_callbacks):
    nq = InstrumentFactory(symbol="NQ")
    with caplog.at_level(logging.WARNING, logger="minhos.monitoring"):
        with django_capture_on_commit_callbacks(execute=True):
            opened = services.retraining_outcome_record(retraining_id=_retraining(nq, "failed", "boom").pk)
        with django_capture_on_commit_callbacks(execute=True):
            again = services.retraining_outcome_record(retraining_id=_retraining(nq, "failed", "boom twice").pk)
    assert opened is not None and again is None
    alert = Alert.objects.get()
    assert (alert.status, alert.times_seen, alert.instrument_id) == ("open", 2, nq.pk) and "boom twice" in alert.message
    assert caplog.text.count("alert opened [critical] retraining_failed:NQ 1m") == 1
    decided = _retraining(nq, "kept")
    with django_capture_on_commit_callbacks(execute=True):
        services.retraining_outcome_record(retraining_id=decided.pk)
    alert.refresh_from_db()
    assert alert.status == "resolved" and f"retraining #{decided.pk} reached a decision (kept)" == alert.resolution
    assert "alert resolved: retraining_failed:NQ 1m" in caplog.text


def test_a_training_alert_opens_on_a_failed_run_and_a_succeeded_one_resolves_it(django_capture_on_commit_callbacks):
    nq = InstrumentFactory(symbol="NQ")
    now = timezone.now()

    def run(status, error=""):
        return TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="fast", status=status, error=error)

    with django_capture_on_commit_callbacks(execute=True):
        opened = services.training_run_outcome_record(run_id=run("failed", "out of memory").pk, now=now)
    assert opened is not None and "out of memory" in opened.message and opened.timeframe == "1m"
    succeeded = run("succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.training_run_outcome_record(run_id=succeeded.pk, now=now + timedelta(minutes=1)) is None
    opened.refresh_from_db()
    assert opened.status == "resolved" and opened.resolution.startswith(f"training run #{succeeded.pk} succeeded")
