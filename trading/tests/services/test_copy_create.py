"""bulk.copy_create (the memory backtest's writer on PostgreSQL) stores what bulk_create stores: the same rows, ids
set on the instances and taken from the table's sequence (later inserts do not collide), automatic timestamps and
JSON written, NULLs kept, Decimals exact."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict

from trading import bulk
from trading.models import Account, AuditEvent, Bar, EquitySnapshot
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.deployment]

AT = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def postgresql():
    if connection.vendor != "postgresql":
        pytest.fail("copy_create is PostgreSQL's COPY: run it through make test (DATABASE_URL)")


def _bars(instrument, minutes):
    return [Bar(instrument=instrument, timeframe="1m", timestamp=AT.replace(minute=30 + m),
                open=Decimal("18000.25") + m, high=Decimal("18010.123456"), low=Decimal("17999"),
                close=Decimal("18000.5"), volume=Decimal("12")) for m in minutes]


def test_copied_rows_equal_bulk_created_ones_and_ids_come_from_the_sequence():
    nq, es = InstrumentFactory(symbol="NQ"), InstrumentFactory(symbol="ES")
    with transaction.atomic():
        copied = bulk.copy_create(_bars(nq, range(5)), Bar)
    created = Bar.objects.bulk_create(_bars(es, range(5)))
    assert all(bar.pk is not None and not bar._state.adding for bar in copied)
    assert len({bar.pk for bar in copied + created}) == 10  # the sequence moved past the copied ids
    for mine, theirs in zip(copied, created):
        stored, reference = model_to_dict(Bar.objects.get(pk=mine.pk)), model_to_dict(Bar.objects.get(pk=theirs.pk))
        for name in ("id", "instrument"):
            stored.pop(name), reference.pop(name)
        assert stored == reference
    assert Bar.objects.get(pk=copied[3].pk).open == Decimal("18003.25")


def test_json_nulls_and_automatic_timestamps_are_written():
    account = Account.objects.create(name="copy")
    details = {"risk": {"checks": [{"name": "kill_switch", "passed": True}], "note": "é \"quoted\" \\ tab\t"},
               "contracts": 3, "ratio": 0.125, "none": None}
    events = [AuditEvent(action=AuditEvent.Action.AUTO_APPROVE, account=account, recommendation=None,
                         state_before="pending", state_after="approved", details=details)]
    snapshots = [EquitySnapshot(account=account, timestamp=AT, equity=Decimal("100123.45"),
                                realized_pnl=Decimal("-12.5"), unrealized_pnl=Decimal("0"),
                                peak_equity=Decimal("100200"), drawdown=0.000765)]
    with transaction.atomic():
        bulk.copy_create(events, AuditEvent)
        bulk.copy_create(snapshots, EquitySnapshot)
    stored = AuditEvent.objects.get(pk=events[0].pk)
    assert stored.details == details and stored.recommendation_id is None and stored.at is not None
    snapshot = EquitySnapshot.objects.get(pk=snapshots[0].pk)
    assert (snapshot.equity, snapshot.realized_pnl, snapshot.drawdown) == (Decimal("100123.45"), Decimal("-12.5"),
                                                                           0.000765)


def test_nothing_to_copy_runs_nothing():
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert bulk.copy_create([], Bar) == []
    assert len(captured) == 0
