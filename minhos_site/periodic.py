"""Periodic jobs (sent by beat every few seconds or minutes) through a database outage: a run is skipped rather than
failed with a traceback or retried, since beat sends the next one soon; each worker process says so in a few lines."""
from __future__ import annotations

import functools
import logging

from django.db import InterfaceError, OperationalError

from minhos_site.beat import FailureStreaks
from minhos_site.database_outage import is_database_unreachable

logger = logging.getLogger(__name__)
WHAT = "Each periodic job (skipped while the database cannot be reached)"
# Per worker process: one line when it first meets the outage, a count every minute, one line at its end.
_outage = FailureStreaks(logger, summary_seconds=60.0)


def skipped_while_database_away(job):
    """Wrap a periodic job: while the database cannot be reached the run returns None, told by the outage's lines.
    Before, each run logged a traceback, and the retried ones piled up in the worker (a sweep every 2 s, 8 tries each).
    A failure that is not an outage (a deadlock, a bug) still raises."""

    @functools.wraps(job)
    def run(*args, **kwargs):
        try:
            result = job(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if not is_database_unreachable(exc):
                raise
            _outage.failed("database", WHAT, exc)
            return None
        _outage.succeeded("database", WHAT)
        return result

    return run
