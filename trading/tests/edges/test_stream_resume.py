"""Resume: a client that reconnects sends the time of its newest bar and gets, oldest first, every bar it missed,
then their predictions and recommendations as the live stream pushed them, then resume.done; malformed requests
get an error naming what is wrong and the socket stays open."""
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from minhos_site.asgi import application
from mlcore import services as ml_services
from mlcore.models import Prediction
from trading import realtime, selectors, services
from trading.models import Bar, Recommendation
from trading.stream_catchup import MAX_BARS
from trading.tests import decisions
from trading.tests.factories import SERIES_ORIGIN, InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")
TIMEOUT = 5


@pytest.fixture(autouse=True)
def private_channel_layer(channel_prefix):
    """A channel layer of this test's own (see trading/tests/conftest.py)."""


@pytest.fixture
def nq(transactional_db):
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="trader", password="unused-in-this-test")
    client = Client()
    client.force_login(user)
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode()


async def open_socket(session_cookie) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/market/NQ/1m/", headers=[HOST, ORIGIN, (b"cookie", session_cookie)])
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "feed.status"
    return ws


async def resume(ws, since: str) -> list[dict]:
    """Everything the server sends for one resume, resume.done included (bounded by MAX_BARS messages a kind)."""
    await ws.send_json_to({"type": "resume", "since": since})
    messages = []
    for _ in range(4 * MAX_BARS + 10):
        message = await ws.receive_json_from(timeout=TIMEOUT)
        messages.append(message)
        if message["type"] == "resume.done":
            return messages
    raise AssertionError("no resume.done")


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def missed_while_away(nq):
    """Bars 3-5 of NQ close while the client is away; bars 4 and 5 are predicted and sized (bar 4's recommendation
    after bar 5 exists, so it is recorded expired); other markets move too."""
    bars = decisions.flat_bars(nq, 3, start=3)
    version = decisions.model_version(nq)
    predictions = [decisions.prediction(bar, version, p=0.7) for bar in bars[1:]]
    recommendations = []
    for prediction in predictions:
        recommendations += services.recommendations_create_for_prediction(
            prediction_id=prediction.pk, now=decisions.close_time(bars[-1]))
    es = InstrumentFactory(symbol="ES")
    decisions.bar_at(es, 4, open_="5000")
    decisions.bar_at(nq, 4, open_="18000", timeframe="5m")
    return bars, predictions, recommendations


def expected_payloads(prediction_ids, recommendation_ids):
    predictions = [ml_services.prediction_payload(Prediction.objects.select_related("bar").get(pk=pk))
                   for pk in prediction_ids]
    recommendations = [selectors.recommendation_payload(
        Recommendation.objects.select_related("account", "decided_by").get(pk=pk)) for pk in recommendation_ids]
    return predictions, recommendations


async def test_a_client_that_reconnects_gets_what_it_missed_in_order(nq, session_cookie):
    seen = await database_sync_to_async(decisions.flat_bars)(nq, 3)
    ws = await open_socket(session_cookie)
    await ws.disconnect()  # the client goes away with bars 0-2

    bars, predictions, recommendations = await database_sync_to_async(missed_while_away)(nq)
    assert len(recommendations) >= 2
    expected_predictions, expected_recommendations = await database_sync_to_async(expected_payloads)(
        [p.pk for p in predictions], [r.pk for r in recommendations])

    ws = await open_socket(session_cookie)
    try:
        messages = await resume(ws, iso(seen[-1].timestamp))

        kinds = [m["type"] for m in messages]
        assert kinds == (["bar.closed"] * 3 + ["prediction.created"] * 2
                         + ["recommendation.updated"] * len(recommendations) + ["resume.done"])
        assert [m["bar"] for m in messages[:3]] == [realtime.bar_message(bar) for bar in bars]
        assert [m["bar"]["t"] for m in messages[:3]] == [iso(SERIES_ORIGIN + timedelta(minutes=i)) for i in (3, 4, 5)]
        assert messages[3:5] == [{"type": "prediction.created", **p} for p in expected_predictions]
        assert [m["bar_timestamp"] for m in messages[3:5]] == [iso(bars[1].timestamp), iso(bars[2].timestamp)]
        assert messages[5:-1] == [{"type": "recommendation.updated", **r} for r in expected_recommendations]
        assert [m["bar_timestamp"] for m in messages[5:-1]] == sorted(m["bar_timestamp"] for m in messages[5:-1])
        assert messages[-1] == {"type": "resume.done", "bars": 3, "more": False}

        # Live messages flow as before once the catch-up is done.
        await database_sync_to_async(realtime.broadcast)("NQ", "1m", "feed.status", {"running": True})
        assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "feed.status", "running": True}
    finally:
        await ws.disconnect()


async def test_a_client_that_missed_nothing_gets_only_resume_done(nq, session_cookie):
    seen = await database_sync_to_async(decisions.flat_bars)(nq, 3)
    ws = await open_socket(session_cookie)
    try:
        assert await resume(ws, iso(seen[-1].timestamp)) == [{"type": "resume.done", "bars": 0, "more": False}]
        # Any offset is UTC once parsed: 09:31 in New York (UTC-5) is 14:31 UTC, bar 1; bar 2 is after it.
        messages = await resume(ws, "2024-01-02T09:31:00-05:00")
        assert [m["bar"]["t"] for m in messages[:-1]] == [iso(seen[2].timestamp)]
    finally:
        await ws.disconnect()


async def test_a_long_absence_comes_back_in_pages_of_at_most_max_bars(nq, session_cookie):
    def many_bars():
        Bar.objects.bulk_create([
            Bar(instrument=nq, timeframe="1m", timestamp=SERIES_ORIGIN + timedelta(minutes=i), open=Decimal(100),
                high=Decimal(101), low=Decimal(99), close=Decimal(100), volume=Decimal(1))
            for i in range(MAX_BARS + 2)])
    await database_sync_to_async(many_bars)()
    ws = await open_socket(session_cookie)
    try:
        first = await resume(ws, iso(SERIES_ORIGIN))
        assert first[-1] == {"type": "resume.done", "bars": MAX_BARS, "more": True}
        times = [m["bar"]["t"] for m in first[:-1]]
        assert times == [iso(SERIES_ORIGIN + timedelta(minutes=i)) for i in range(1, MAX_BARS + 1)]

        second = await resume(ws, times[-1])
        assert second[-1] == {"type": "resume.done", "bars": 1, "more": False}
        assert second[0]["bar"]["t"] == iso(SERIES_ORIGIN + timedelta(minutes=MAX_BARS + 1))
    finally:
        await ws.disconnect()


@pytest.mark.parametrize("frame, field, says", [
    ("not json", "frame", "not JSON"),
    ('["resume"]', "type", "JSON object"),
    ('{"since": "2024-01-02T14:30:00Z"}', "type", "unknown message type None"),
    ('{"type": "subscribe"}', "type", "unknown message type 'subscribe'"),
    ('{"type": "resume"}', "since", '"since" is required'),
    ('{"type": "resume", "since": 1704205800}', "since", '"since" is required'),
    ('{"type": "resume", "since": "yesterday"}', "since", "not an ISO 8601 time: 'yesterday'"),
    ('{"type": "resume", "since": "2024-01-02T14:30:00"}', "since", "needs a time zone"),
    ('{"type": "resume", "since": "2024-01-02T14:30:00\\u0000Z"}', "since", "Control character U+0000"),
    # Nested 1,000 deep: Python's decoder raised RecursionError and the connection ended.
    ("[" * 1000 + "]" * 1000, "frame", "nested 1000 levels deep; at most 32"),
    ('{"type": "resume", "since": "2024-01-02T14:30:00Z", "since": "2030-01-01T00:00:00Z"}', "since",
     "sent twice"),
])
async def test_a_malformed_request_gets_an_error_naming_what_is_wrong_and_the_socket_stays_open(
        nq, session_cookie, frame, field, says):
    seen = await database_sync_to_async(decisions.flat_bars)(nq, 2)
    ws = await open_socket(session_cookie)
    try:
        await ws.send_to(text_data=frame)
        error = await ws.receive_json_from(timeout=TIMEOUT)
        assert (error["type"], error["field"]) == ("error", field)
        assert says in error["message"]

        messages = await resume(ws, iso(seen[0].timestamp))
        assert [m["type"] for m in messages] == ["bar.closed", "resume.done"]
    finally:
        await ws.disconnect()


async def test_a_binary_frame_gets_an_error(nq, session_cookie):
    ws = await open_socket(session_cookie)
    try:
        await ws.send_to(bytes_data=b'{"type": "resume"}')
        assert await ws.receive_json_from(timeout=TIMEOUT) == {
            "type": "error", "field": "frame", "message": "messages are JSON text frames, not binary"}
    finally:
        await ws.disconnect()
