"""Beat's database scheduler through a database outage: the schedule in memory goes on (the library's forced re-read
every 5 minutes raised out of beat's loop and ended it), the entries' run times not written are written once the
database is back, and the outage is one line when it starts and one when it ends (the library logged a traceback per
tick)."""
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from django.db import connections

from trading.tests.database_outage import database_outage

pytestmark = [pytest.mark.deployment, pytest.mark.django_db(transaction=True)]

START = "Reading and writing the schedule in the database failed"
END = "Reading and writing the schedule in the database works again"


def in_other_thread(call):
    """Run `call` on a connection of its own (as beat's is): the outage ends every session but the test's."""
    def run():
        try:
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def test_beat_goes_on_with_its_schedule_through_a_database_outage_and_says_so_in_two_lines(caplog):
    from minhos_site.beat import Scheduler
    from minhos_site.celery import app

    caplog.set_level(logging.INFO)
    scheduler = in_other_thread(lambda: Scheduler(app=app))
    entries = set(in_other_thread(lambda: scheduler.schedule))
    assert "workflow-sweep-stored" in entries
    with database_outage():
        # The full re-read is due (every 5 minutes) and an entry's last run time waits to be written.
        scheduler._last_full_sync = datetime.now() - timedelta(minutes=6)
        scheduler._dirty.add("workflow-sweep-stored")
        for _ in range(20):  # a tick reads the schedule each time
            assert set(in_other_thread(lambda: scheduler.schedule)) == entries
        in_other_thread(scheduler.sync)
        assert scheduler._dirty == {"workflow-sweep-stored"}  # not written: kept for the next sync
    assert set(in_other_thread(lambda: scheduler.schedule)) == entries
    in_other_thread(scheduler.sync)
    assert scheduler._dirty == set()

    lines = [r for r in caplog.records if r.name.startswith(("celery", "django_celery_beat"))
             and r.levelno >= logging.WARNING]
    messages = [r.getMessage() for r in lines]
    assert len(messages) == 2 and messages[0].startswith(START) and messages[1].startswith(END), messages
    assert not any(r.exc_info for r in lines), "a traceback was logged"
