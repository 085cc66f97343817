"""A worker outage with auto-trading on: the predictions queued while no worker ran are sized by a real Celery
worker (concurrency 2) when it comes back, and the limits hold: only the latest bar's prediction may trade.

Before the fix, every backlogged prediction was auto-approved against a position of 0 and the entries filled
together on the next bar (short 25 contracts against a position limit of 5)."""
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from trading import services
from trading.models import Account, FeedStatus, Order, Position, Recommendation
from trading.tasks import size_prediction
from trading.tests.decisions import bar_at, flat_bars, model_version, prediction
from trading.tests.factories import InstrumentFactory
from trading.tests.live import LiveServer, database_url, wait_for_other_database_sessions_to_end

pytestmark = [pytest.mark.deployment, pytest.mark.django_db(transaction=True)]
WAIT_SECONDS = 120
BACKLOG = 6


@pytest.fixture
def worker(channel_prefix, tmp_path, request):
    """Starts a Celery worker of concurrency 2 on a queue of this test's own (parallel tests share the broker);
    returns (queue, start)."""
    if not (django_settings.REDIS_URL and connection.vendor == "postgresql"):
        pytest.fail("the worker test needs DATABASE_URL (PostgreSQL) and REDIS_URL; run it through make test")
    queue = f"backlog-{uuid.uuid4().hex[:10]}"
    started = []

    def start() -> LiveServer:
        process = LiveServer(
            command=[str(django_settings.BASE_DIR / ".venv/bin/celery"), "-A", "minhos_site", "worker",
                     "--loglevel", "INFO", "--concurrency", "2", "-Q", queue, "--without-heartbeat",
                     "--without-gossip", "--without-mingle"],
            env={"DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": django_settings.REDIS_URL,
                 "SECRET_KEY": django_settings.SECRET_KEY, "MINHOS_VAR_DIR": str(tmp_path),
                 "CHANNELS_PREFIX": channel_prefix, "CONN_MAX_AGE": "0"},
            log_path=tmp_path / "worker.log",
        )
        started.append(process)
        return process

    request.addfinalizer(wait_for_other_database_sessions_to_end)
    request.addfinalizer(lambda: [p.stop() for p in started])
    return queue, start


def test_a_backlog_sized_by_a_real_worker_after_an_outage_trades_only_the_latest_bar(worker):
    queue, start_worker = worker
    nq = InstrumentFactory(symbol="NQ")
    bars = flat_bars(nq, BACKLOG)
    version = model_version(nq)
    paper = services.account_default_get()
    Account.objects.filter(pk=paper.pk).update(auto_trading=True)
    FeedStatus.objects.create(instrument=nq, timeframe="1m", source="test", running=True,
                              last_bar_received_at=timezone.now(), last_bar_timestamp=bars[-1].timestamp)
    # The worker is down while the bars close: their predictions (and a second model's on the latest bar)
    # wait in the queue.
    backlog = [prediction(bar, version, side="short", p=0.7) for bar in bars]
    backlog.append(prediction(bars[-1], model_version(nq), side="short", p=0.7))
    results = [size_prediction.apply_async((p.pk,), queue=queue) for p in backlog]

    process = start_worker()
    try:
        made = [result.get(timeout=WAIT_SECONDS) for result in results]
    except Exception:
        raise AssertionError(f"the worker did not size the backlog:\n{process.log_tail()}") from None
    assert all(len(ids) == 1 for ids in made)

    states = {p.pk: Recommendation.objects.get(prediction=p).state for p in backlog}
    assert [states[p.pk] for p in backlog[:-2]] == [Recommendation.State.EXPIRED] * (BACKLOG - 1)
    latest = sorted(states[p.pk] for p in backlog[-2:])
    assert latest == sorted([Recommendation.State.APPROVED, Recommendation.State.BLOCKED])
    services.broker_process_bar(bar_id=bar_at(nq, BACKLOG).pk)
    assert Position.objects.get(account=paper, instrument=nq).quantity == -5
    assert Order.objects.filter(kind=Order.Kind.ENTRY).count() == 1
    assert services.account_reconcile().clean
    assert "Traceback" not in process.log_text()
