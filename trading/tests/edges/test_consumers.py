"""The market websocket: a logged-in client gets status and every stored bar; others are refused."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from minhos_site.asgi import application
from trading import realtime, services
from trading.consumers import CLOSE_UNAUTHENTICATED, CLOSE_UNKNOWN_MARKET
from trading.domain.bars import BarData
from trading.models import Instrument
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# A page of the site itself: the Origin matches the Host the browser sent (minhos_site/origins.py).
ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")
# Generous: a push crosses Redis in deployment mode; a hang fails the test instead of blocking the run.
TIMEOUT = 5


@pytest.fixture(autouse=True)
def private_channel_layer(channel_prefix):
    """Every test here on a channel layer of its own (see trading/tests/conftest.py)."""


@pytest.fixture
def nq(transactional_db) -> Instrument:
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    """A real session, made the way the login view makes one."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="trader", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[HOST, ORIGIN, *headers])


async def test_logged_in_client_gets_status_then_each_stored_bar(nq, session_cookie):
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        status = await ws.receive_json_from(timeout=TIMEOUT)
        assert status["type"] == "feed.status"
        assert status["symbol"] == "NQ" and status["timeframe"] == "1m"
        assert status["running"] is False
        assert "server_time" in status

        bar = BarData(
            timestamp=datetime(2024, 5, 6, 13, 31, tzinfo=UTC), open=18250.25, high=18262.5, low=18248.0,
            close=18260.75, volume=1234,
        )
        stored = await database_sync_to_async(services.bar_store_closed)(instrument=nq, timeframe="1m", bar=bar)
        assert stored is not None

        message = await ws.receive_json_from(timeout=TIMEOUT)
        assert message == {
            "type": "bar.closed",
            "bar": {"t": "2024-05-06T13:31:00Z", "o": 18250.25, "h": 18262.5, "l": 18248.0, "c": 18260.75, "v": 1234.0},
        }
    finally:
        await ws.disconnect()


async def test_client_gets_only_its_own_market(nq, session_cookie):
    es = await database_sync_to_async(InstrumentFactory)(symbol="ES")
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"
        other_market = BarData(datetime(2024, 5, 6, 13, 31, tzinfo=UTC), 5000, 5001, 4999, 5000.5, 10)
        other_timeframe = BarData(datetime(2024, 5, 6, 13, 30, tzinfo=UTC), 18000, 18010, 17990, 18005, 50)
        own = BarData(datetime(2024, 5, 6, 13, 32, tzinfo=UTC), 18005, 18020, 18000, 18015.25, 70)
        store = database_sync_to_async(services.bar_store_closed)
        await store(instrument=es, timeframe="1m", bar=other_market)
        await store(instrument=nq, timeframe="5m", bar=other_timeframe)
        await store(instrument=nq, timeframe="1m", bar=own)

        # Messages of one group arrive in order, so the first bar seen must be our own.
        message = await ws.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "bar.closed"
        assert message["bar"]["c"] == 18015.25
    finally:
        await ws.disconnect()


async def test_feed_status_broadcast_is_forwarded(nq, session_cookie):
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        await ws.receive_json_from(timeout=TIMEOUT)
        payload = {"symbol": "NQ", "timeframe": "1m", "running": True, "server_time": "2024-05-06T13:31:02+00:00"}

        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "feed.status", payload)

        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "feed.status", **payload}
    finally:
        await ws.disconnect()


async def test_anonymous_client_is_refused(nq):
    ws = communicator("/ws/market/NQ/1m/")

    connected, code = await ws.connect(timeout=TIMEOUT)

    assert connected is False
    assert code == CLOSE_UNAUTHENTICATED == 4401


async def test_forged_session_cookie_is_refused(nq):
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", b"sessionid=not-a-real-session"))

    connected, code = await ws.connect(timeout=TIMEOUT)

    assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


@pytest.mark.parametrize("path", ["/ws/market/NOPE/1m/", "/ws/market/NQ/7m/"])
async def test_unknown_market_is_refused(nq, session_cookie, path):
    ws = communicator(path, (b"cookie", session_cookie))

    connected, code = await ws.connect(timeout=TIMEOUT)

    assert connected is False
    assert code == CLOSE_UNKNOWN_MARKET == 4404


async def test_inactive_instrument_is_refused(session_cookie):
    await database_sync_to_async(InstrumentFactory)(symbol="ES", active=False)
    ws = communicator("/ws/market/ES/1m/", (b"cookie", session_cookie))

    connected, code = await ws.connect(timeout=TIMEOUT)

    assert (connected, code) == (False, CLOSE_UNKNOWN_MARKET)


# ---- decisions: recommendations and the account are pushed as the services change them --------------------------

def _pending_recommendation(instrument):
    from trading.tests import decisions

    bars = decisions.flat_bars(instrument, 3)
    stored = decisions.prediction(bars[-1], decisions.model_version(instrument), p=0.7)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=stored.pk, now=decisions.close_time(bars[-1]))
    return recommendation


def _payload_of(recommendation_id):
    from trading import selectors
    from trading.models import Recommendation

    return selectors.recommendation_payload(Recommendation.objects.select_related("account").get(pk=recommendation_id))


async def test_recommendation_life_is_pushed_created_approved_executed_with_the_account(nq, session_cookie):
    from trading import selectors
    from trading.models import Account
    from trading.tests.decisions import bar_at, close_time, user_with

    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"

        recommendation = await database_sync_to_async(_pending_recommendation)(nq)
        created = await ws.receive_json_from(timeout=TIMEOUT)
        stored = {"type": "recommendation.updated", **await database_sync_to_async(_payload_of)(recommendation.pk)}
        # The push is made from the object before it is read back, so its decimals may carry fewer places.
        decimals = ("reference_price", "stop_distance", "take_profit_distance")
        assert {k: v for k, v in created.items() if k not in decimals} == {
            k: v for k, v in stored.items() if k not in decimals}
        assert all(Decimal(created[k]) == Decimal(stored[k]) for k in decimals)
        assert created["state"] == "pending" and created["contracts"] == 5
        assert created["kelly"]["full_kelly"] == pytest.approx(0.5)
        assert {check["name"] for check in created["risk"]["checks"]} >= {"kill_switch", "min_confidence"}

        def approve():
            services.recommendation_approve(recommendation_id=recommendation.pk, now=close_time(recommendation.bar),
                                            user=user_with("approver", "trading.approve_recommendation"))
        await database_sync_to_async(approve)()
        approved = await ws.receive_json_from(timeout=TIMEOUT)
        assert (approved["type"], approved["id"], approved["state"]) == (
            "recommendation.updated", recommendation.pk, "approved")

        def next_bar():
            services.bar_settle(bar_id=bar_at(nq, 3, open_="18001", close="18004.5").pk)
            account = Account.objects.get(pk=recommendation.account_id)
            return (selectors.account_summary(account=account),
                    [selectors.position_payload(p) for p in selectors.position_list(account=account)])
        summary, positions = await database_sync_to_async(next_bar)()

        executed = await ws.receive_json_from(timeout=TIMEOUT)
        assert (executed["type"], executed["id"], executed["state"]) == (
            "recommendation.updated", recommendation.pk, "executed")
        account = await ws.receive_json_from(timeout=TIMEOUT)
        assert account == {"type": "account.updated", "account": summary, "positions": positions}
        assert [(p["symbol"], p["quantity"]) for p in account["positions"]] == [("NQ", 5)]
        assert account["account"]["unrealized_pnl"] == "325.00"
    finally:
        await ws.disconnect()


async def test_decision_messages_are_forwarded_as_they_are(nq, session_cookie):
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        await ws.receive_json_from(timeout=TIMEOUT)
        recommendation = {"id": 7, "state": "expired", "state_label": "Expired", "kelly": {"full_kelly": 0.1},
                          "risk": {"checks": []}}
        account = {"account": {"id": 1, "equity": "99000.00"}, "positions": []}

        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "recommendation.updated", recommendation)
        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "account.updated", account)

        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "recommendation.updated", **recommendation}
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "account.updated", **account}
    finally:
        await ws.disconnect()


async def test_another_markets_recommendation_is_not_sent(nq, session_cookie):
    es = await database_sync_to_async(InstrumentFactory)(symbol="ES")
    ws = communicator("/ws/market/NQ/1m/", (b"cookie", session_cookie))
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    try:
        await ws.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(_pending_recommendation)(es)
        own = await database_sync_to_async(_pending_recommendation)(nq)

        # One group's messages arrive in order: the first recommendation seen must be NQ's.
        message = await ws.receive_json_from(timeout=TIMEOUT)
        assert (message["type"], message["id"]) == ("recommendation.updated", own.pk)
    finally:
        await ws.disconnect()
