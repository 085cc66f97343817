"""Resolving outcomes in the settle step: a failure of its own is logged and kept on the bar (settlement goes on), but
an unreachable database is the outage's, not the step's: it is raised so the step is retried once the database
answers (settling again is idempotent), as settlement does, and never logged with a traceback here. Before, it was
logged with a traceback on every try (the database outage test caught one in a fresh-clone run)."""
import logging
from datetime import UTC, datetime

import pytest
from django.db import OperationalError, connection

from trading import workflow
from trading.models import BarWorkflow

pytestmark = pytest.mark.django_db

PENDING = BarWorkflow(instrument_id=1, timeframe="1m", timestamp=datetime(2024, 1, 3, 14, 30, tzinfo=UTC))


def _failing(exc):
    def resolve(**kwargs):
        raise exc
    return resolve


@pytest.fixture
def unreachable():
    """What PostgreSQL's shutdown of the session raises, for a service of `workflow.ml_services` to raise."""
    if connection.vendor != "postgresql":
        pytest.fail("an unreachable database is PostgreSQL's here: run it through make test")
    return _failing(OperationalError("terminating connection due to administrator command"))


@pytest.mark.deployment
def test_an_unreachable_database_is_raised_for_the_step_to_be_retried_not_logged(monkeypatch, caplog, unreachable):
    monkeypatch.setattr(workflow.ml_services, "prediction_outcomes_resolve", unreachable)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(OperationalError):
            workflow._outcomes_resolve(PENDING, "")
    assert "could not be resolved" not in caplog.text


@pytest.mark.embedded
def test_a_failure_of_its_own_is_logged_and_kept_on_the_bar(monkeypatch, caplog):
    monkeypatch.setattr(workflow.ml_services, "prediction_outcomes_resolve", _failing(ValueError("no bars after it")))
    with caplog.at_level(logging.ERROR):
        failure = workflow._outcomes_resolve(PENDING, "settle: earlier")
    assert failure == "settle: earlier; outcomes: ValueError: no bars after it"
    assert "could not be resolved" in caplog.text


@pytest.mark.deployment
def test_shadow_predictions_skipped_in_an_outage_say_so_in_one_line_without_a_traceback(monkeypatch, caplog,
                                                                                          unreachable):
    monkeypatch.setattr(workflow.ml_services, "shadow_predictions_create", unreachable)
    with caplog.at_level(logging.WARNING):
        workflow._shadow_predict(PENDING)
    assert "shadow predictions skipped, the database cannot be reached" in caplog.text
    assert "Traceback" not in caplog.text and not any(record.exc_info for record in caplog.records)

