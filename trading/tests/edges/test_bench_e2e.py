"""`manage.py bench e2e`, small: deployment mode for real (web, workers, beat, feed as processes) on a database of
its own and a private Redis, a few bars watched by 1 and 3 websocket clients; the figures have the promised shape,
every client got every bar's messages in order, and nothing is left behind."""
import os
import uuid

import psycopg
import pytest
from django.conf import settings as django_settings

from trading.bench_e2e import HOPS, bench_e2e
from trading.tests.redis_server import PrivateRedis

pytestmark = [pytest.mark.deployment, pytest.mark.workers]
BARS = 20
PERCENTILES = {"p50", "p95", "p99", "max"}


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server: the bench's queues and groups never meet another test's (nor a deployment's)."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server.url(14)
    server.stop()


@pytest.fixture
def database_name():
    """A name no parallel run can take: the xdist worker (gw0, gw1...), the process and a random part."""
    return f"minhos_bench_e2e_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _databases_named(name: str) -> int:
    config = django_settings.DATABASES["default"]
    with psycopg.connect(host=config.get("HOST") or "127.0.0.1", port=config.get("PORT") or 5432,
                         user=config.get("USER") or None, password=config.get("PASSWORD") or None,
                         dbname="postgres", autocommit=True) as connection:
        return connection.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0]


def test_bench_e2e_measures_every_bar_reaching_every_client_and_cleans_up(redis_url, database_name):
    if not (django_settings.REDIS_URL and django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")):
        pytest.fail("bench e2e needs DATABASE_URL (PostgreSQL) and REDIS_URL; run it through make test")

    result = bench_e2e(bars=BARS, clients="1,3", pace=0.25, warmup=3, history_days=4, database=database_name,
                       redis_url=redis_url, progress=False)

    assert [run["clients"] for run in result["runs"]] == [1, 3]
    for run in result["runs"]:
        assert run["bars"] == run["bars_received_min"] == BARS, run
        assert run["missed"] == 0, run
        assert run["out_of_order"] == 0, run
        assert run["bars_without_prediction"] == 0 and run["bars_without_recommendation"] == 0, run
        assert sum(run["recommendations_pushed"].values()) == BARS
        assert set(run["latency_ms"]) == {"bar", "prediction", "recommendation"}
        for figures in run["latency_ms"].values():
            assert set(figures) == PERCENTILES
            assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"] <= figures["max"]
        # The decision follows the bar: the bar is pushed first, its prediction, then its recommendation.
        latency = run["latency_ms"]
        assert latency["bar"]["p50"] < latency["prediction"]["p50"] < latency["recommendation"]["p50"]
    assert set(result["hops_ms"]) == {name for name, _, _ in HOPS} | {"push"}
    for name, _, _ in HOPS:
        assert result["hops_ms"][name]["p50"] > 0, result["hops_ms"]
    assert sum(hop["share"] for hop in result["hops_ms"].values()) == pytest.approx(1.0, abs=0.01)
    # Its database is dropped and its Redis database emptied.
    assert _databases_named(database_name) == 0
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()


def test_bench_e2e_refuses_a_redis_database_that_is_not_empty(redis_url, database_name):
    import redis
    from django.core.management import CommandError

    client = redis.Redis.from_url(redis_url)
    client.set("someone-elses", "queue")
    try:
        with pytest.raises(CommandError, match="holds 1 keys.*--redis-db.*--flush"):
            bench_e2e(bars=1, clients="1", database=database_name, redis_url=redis_url, progress=False)
        assert client.get("someone-elses") == b"queue"  # left alone
    finally:
        client.close()
    assert _databases_named(database_name) == 0  # refused before making anything
