"""The heartbeat thread of a part of a retraining writes on its own database connection while the part runs, without
any progress reported, and the part is marked ended with the block (transactional: the thread sees committed rows)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from mlcore import retraining
from mlcore.heartbeats import retraining_heartbeat
from mlcore.models import Retraining, RetrainingHeartbeat, RetrainingPolicy
from trading.tests.processes import wait_for


@pytest.fixture
def market(nq, stored_bars):
    RetrainingPolicy.objects.create(instrument=nq, timeframe="1m", min_new_bars=100)
    return nq


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_beats_from_its_thread_while_the_block_runs_and_ends_with_it(market, settings):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (the heartbeat thread writes on its own connection)")
    settings.MINHOS_TRAINING_HEARTBEAT_SECONDS = 0.05
    record = retraining.retraining_request(symbol="NQ", timeframe="1m", trigger="manual", requested_by="t",
                                           run="none")
    Retraining.objects.filter(pk=record.pk).update(status="training")
    with retraining_heartbeat(retraining_id=record.pk, part="run", progress="reading the bars") as beat:
        part = RetrainingHeartbeat.objects.get(retraining=record, part="run")
        # No progress is reported meanwhile: only the thread writes.
        wait_for(lambda: RetrainingHeartbeat.objects.filter(pk=part.pk, beat_at__gt=part.started_at).exists(), 10,
                 "the heartbeat thread did not beat")
        beat.progress("fitting long/shipped/lstm")
        assert Retraining.objects.get(pk=record.pk).progress == "fitting long/shipped/lstm"
    ended = RetrainingHeartbeat.objects.get(pk=part.pk)
    assert ended.ended_at is not None and ended.progress == "fitting long/shipped/lstm"
    assert Retraining.objects.get(pk=record.pk).heartbeat_at >= ended.beat_at
    assert retraining.retrainings_silent_fail(now=timezone.now() + timedelta(hours=1)) == []  # it ended: not silent
