"""The market websocket also carries what every page hears (alerts, through realtime.broadcast_all), whatever its
market, and its market's monitoring snapshots; it leaves both groups when it closes."""
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from trading import realtime
from trading.tests.edges.test_consumers import TIMEOUT, communicator, nq, session_cookie  # noqa: F401 (fixtures)
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

ALERT = {"id": 12, "cause": "drift:NQ 1m", "rule": "drift", "severity": "warning", "status": "open",
         "message": "NQ 1m: 2 input(s) drifted to PSI >= 0.25", "value": 0.31, "threshold": 0.25, "symbol": "NQ",
         "timeframe": "1m", "version": 3, "opened_at": "2024-05-06T13:31:02Z", "last_seen_at": "2024-05-06T13:31:02Z",
         "times_seen": 1, "resolved_at": None, "resolution": "", "acknowledged_by": None, "acknowledged_at": None,
         "acknowledgement_note": ""}


@pytest.fixture(autouse=True)
def private_channel_layer(channel_prefix):
    """Every test here on a channel layer of its own (see trading/tests/conftest.py)."""


async def connected(path, cookie):
    ws = communicator(path, (b"cookie", cookie))
    ok, _ = await ws.connect(timeout=TIMEOUT)
    assert ok
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"
    return ws


async def test_an_alert_broadcast_to_everyone_reaches_dashboards_of_every_market(nq, session_cookie):  # noqa: F811
    await database_sync_to_async(InstrumentFactory)(symbol="ES")
    nq_page = await connected("/ws/market/NQ/1m/", session_cookie)
    es_page = await connected("/ws/market/ES/5m/", session_cookie)
    try:
        assert await database_sync_to_async(realtime.broadcast_all)("alert.opened", ALERT) is True

        assert await nq_page.receive_json_from(timeout=TIMEOUT) == {"type": "alert.opened", **ALERT}
        assert await es_page.receive_json_from(timeout=TIMEOUT) == {"type": "alert.opened", **ALERT}
        acknowledged = {**ALERT, "status": "acknowledged", "acknowledged_by": "acker"}
        resolved = {**ALERT, "status": "resolved", "resolved_at": "2024-05-06T13:40:00Z"}
        await database_sync_to_async(realtime.broadcast_all)("alert.acknowledged", acknowledged)
        await database_sync_to_async(realtime.broadcast_all)("alert.resolved", resolved)
        assert await nq_page.receive_json_from(timeout=TIMEOUT) == {"type": "alert.acknowledged", **acknowledged}
        assert await nq_page.receive_json_from(timeout=TIMEOUT) == {"type": "alert.resolved", **resolved}
    finally:
        await nq_page.disconnect()
        await es_page.disconnect()


async def test_a_monitoring_snapshot_reaches_its_market_only(nq, session_cookie):  # noqa: F811
    await database_sync_to_async(InstrumentFactory)(symbol="ES")
    ws = await connected("/ws/market/NQ/1m/", session_cookie)
    try:
        brief = {"id": 5, "taken_at": "2024-05-06T13:31:02Z", "version": 3, "health_score": 72.5, "components": [],
                 "caps": []}
        await database_sync_to_async(realtime.broadcast)("ES", "1m", "monitoring.snapshot", {**brief, "id": 4})
        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "monitoring.snapshot", brief)

        # One group's messages arrive in order: the first snapshot seen must be NQ's.
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "monitoring.snapshot", **brief}
        # The socket is still alive and forwarding afterwards (an unforwarded type would have ended it).
        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "feed.status", {"running": True})
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "feed.status", "running": True}
    finally:
        await ws.disconnect()


def members(layer, group: str, prefix: str) -> set[str]:
    """The channels in a group: the in-memory layer's dict, or channels_redis's sorted set."""
    if hasattr(layer, "groups"):
        return set(layer.groups.get(group, {}))
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {m.decode() for m in client.zrange(f"{prefix}:group:{group}", 0, -1)}
    finally:
        client.close()


async def test_a_socket_joins_both_groups_and_leaves_both_when_closed(nq, session_cookie, channel_prefix):  # noqa: F811
    layer = get_channel_layer()
    probe = await layer.new_channel()
    await layer.group_add(realtime.EVERYONE_GROUP, probe)
    market = realtime.market_group("NQ", "1m")
    ws = await connected("/ws/market/NQ/1m/", session_cookie)
    read = database_sync_to_async(members)
    everyone = await read(layer, realtime.EVERYONE_GROUP, channel_prefix)
    assert len(everyone) == 2 and probe in everyone
    [socket_channel] = everyone - {probe}
    assert await read(layer, market, channel_prefix) == {socket_channel}

    await ws.disconnect()

    assert await read(layer, realtime.EVERYONE_GROUP, channel_prefix) == {probe}
    assert await read(layer, market, channel_prefix) == set()
    await database_sync_to_async(realtime.broadcast_all)("alert.opened", ALERT)
    assert (await layer.receive(probe))["payload"] == ALERT
