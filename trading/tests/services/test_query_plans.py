"""The per-bar queries read through their indexes, so a step costs the same on the first day and after months of
history. On SQLite (embedded mode) a backtest of 100,000 bars showed it: each bar's expiry and workflow queries read
every earlier recommendation and bar of the market, and the replay slowed from 29 to 12 bars a second."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from trading import services, workflow
from trading.models import BarWorkflow
from trading.tests.decisions import SERIES_ORIGIN, bar_at

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return " ".join(str(row[-1]) for row in cursor.fetchall())


def captured(call) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the planner of concern is SQLite's (PostgreSQL's has stats)")
def test_expiry_and_the_workflow_queue_read_through_their_partial_indexes(nq):
    bar = bar_at(nq, 0)
    BarWorkflow.objects.create(bar=bar, instrument=nq, timeframe="1m", timestamp=bar.timestamp,
                               stored_at=SERIES_ORIGIN, touched_at=SERIES_ORIGIN)
    expiry = [q for q in captured(lambda: services.recommendations_expire(
        instrument=nq, timeframe="1m", latest_bar_timestamp=bar.timestamp)) if "trading_recommendation" in q]
    assert expiry and "recommendation_expiry" in plan_of(expiry[0]), plan_of(expiry[0])
    target = BarWorkflow.objects.get(pk=bar.pk)
    queue = [q for q in captured(lambda: next(workflow._waiting(target, BarWorkflow.Stage.STORED)))
             if "trading_barworkflow" in q]
    assert queue and "bar_workflow_queue" in plan_of(queue[0]), plan_of(queue[0])
