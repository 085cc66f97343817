"""A monitoring snapshot run in a database outage raises at once (every market's snapshot would fail alike: the run's
failure, told once by its runner), instead of logging a traceback per market."""
import logging

import pytest
from django.db import OperationalError, connection

pytestmark = pytest.mark.django_db


def _failing(exc):
    def take(**kwargs):
        raise exc
    return take


@pytest.mark.deployment
def test_a_monitoring_snapshot_run_in_an_outage_raises_at_once_without_a_traceback_per_market(monkeypatch, caplog):
    from monitoring import selectors as monitoring_selectors
    from monitoring import services as monitoring_services

    if connection.vendor != "postgresql":
        pytest.fail("an unreachable database is PostgreSQL's here: run it through make test")

    class Version:
        instrument = type("Instrument", (), {"symbol": "NQ"})()
        timeframe = "1m"

    monkeypatch.setattr(monitoring_selectors, "markets_monitored", lambda: [Version(), Version()])
    monkeypatch.setattr(monitoring_services, "snapshot_take",
                        _failing(OperationalError("terminating connection due to administrator command")))
    with caplog.at_level(logging.ERROR):
        with pytest.raises(OperationalError):
            monitoring_services.snapshot_all()
    assert "snapshot of NQ 1m failed" not in caplog.text
