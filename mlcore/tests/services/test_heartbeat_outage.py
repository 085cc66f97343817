"""A training's heartbeat in a database outage: the training goes on, and the outage is said in one warning line
(no traceback), not on every beat; a failure of the heartbeat's own is still logged with its traceback."""
import logging

import pytest
from django.db import OperationalError, connection

from mlcore.heartbeats import Heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.deployment]


def test_an_outage_is_told_once_and_a_failure_of_its_own_with_its_traceback(monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.fail("an unreachable database is PostgreSQL's here: run it through make test")
    beat = Heartbeat(1, "run", interval=1.0)
    failure = [OperationalError("terminating connection due to administrator command")]

    def write(progress=None):
        raise failure[0]

    monkeypatch.setattr(beat, "_write", write)
    with caplog.at_level(logging.WARNING, logger="mlcore.heartbeats"):
        for _ in range(3):
            beat.progress("fitting")
    outage = [r for r in caplog.records if "the database cannot be reached" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelno == logging.WARNING and outage[0].exc_info is None
    failure[0] = ValueError("a column too short")
    beat.progress("fitting")
    own = caplog.records[-1]
    assert own.levelno == logging.ERROR and own.exc_info is not None and "could not be written" in own.getMessage()
