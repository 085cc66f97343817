"""The instruments and bars REST API: authentication, query validation, filters, pagination and the OpenAPI docs."""
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from trading.models import Bar
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PASSWORD = "a-long-test-password-7"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="trader", password=PASSWORD)


@pytest.fixture
def client(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def nq():
    return InstrumentFactory(symbol="NQ")  # the seeded row


def bar_times(response) -> list[str]:
    return [bar["timestamp"] for bar in response.json()["results"]]


# --- authentication -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/instruments/", "/api/instruments/NQ/", "/api/bars/?symbol=NQ"])
def test_anonymous_requests_are_refused(url):
    response = APIClient().get(url)

    assert response.status_code in (401, 403)
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_session_login_grants_access(user):
    client = APIClient()
    # Through the login page: the login limiter needs the request, which Client.login() does not pass.
    assert client.post("/accounts/login/", {"username": "trader", "password": PASSWORD}).status_code == 302

    response = client.get("/api/instruments/")

    assert response.status_code == 200
    assert "NQ" in [i["symbol"] for i in response.json()]


def test_token_from_the_token_endpoint_authenticates_requests(user):
    obtained = APIClient().post("/api/auth/token/", {"username": "trader", "password": PASSWORD}, format="json")
    assert obtained.status_code == 200
    token = obtained.json()["token"]
    assert token == Token.objects.get(user=user).key

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/bars/", {"symbol": "NQ"})

    assert response.status_code == 200


def test_a_wrong_token_is_refused(user):
    Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    response = client.get("/api/instruments/")

    assert response.status_code in (401, 403)
    assert response.json()["detail"] == "Invalid token."


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("url", ["/api/instruments/", "/api/instruments/NQ/", "/api/bars/?symbol=NQ"])
def test_the_api_is_read_only(client, method, url):
    response = getattr(client, method)(url, {}, format="json")

    assert response.status_code == 405


# --- instruments ----------------------------------------------------------------------------------------------


def test_instrument_list_shows_every_instrument_by_symbol_with_decimals_as_strings(client):
    InstrumentFactory(symbol="ES", name="E-mini S&P 500", tick_size="0.25", point_value="50", active=False)

    response = client.get("/api/instruments/")

    assert response.status_code == 200
    assert response.json() == [
        {
            "symbol": "ES",
            "name": "E-mini S&P 500",
            "exchange": "CME",
            "tick_size": "0.250000",
            "point_value": "50.0000",
            "currency": "USD",
            "active": False,
        },
        {
            "symbol": "NQ",
            "name": "E-mini Nasdaq-100 Futures",
            "exchange": "CME",
            "tick_size": "0.250000",
            "point_value": "20.0000",
            "currency": "USD",
            "active": True,
        },
    ]


def test_instrument_detail_is_found_by_symbol(client):
    response = client.get("/api/instruments/NQ/")

    assert response.status_code == 200
    assert response.json()["symbol"] == "NQ"
    assert response.json()["point_value"] == "20.0000"


def test_instrument_detail_of_an_unknown_symbol_is_404_naming_it(client):
    response = client.get("/api/instruments/ZZZ/")

    assert response.status_code == 404
    assert "ZZZ" in response.json()["detail"]


@pytest.mark.parametrize("symbol", ["%00", "NQ%00", "%00NQ"])
def test_a_symbol_with_a_nul_is_an_unknown_instrument_not_a_500(client, symbol):
    # PostgreSQL refuses a NUL in a text comparison: the lookup raised DataError, a 500.
    response = client.get(f"/api/instruments/{symbol}/")

    assert response.status_code == 404


# --- bars: filters and output ---------------------------------------------------------------------------------


@pytest.fixture
def market(nq):
    """Ten NQ 1m bars from T0, plus bars that every filter must exclude: NQ 5m and another instrument's 1m."""
    bars = BarFactory.create_series(10, start=T0, instrument=nq)
    BarFactory.create_series(3, start=T0, instrument=nq, timeframe="5m")
    BarFactory.create_series(3, start=T0, instrument=InstrumentFactory(symbol="ES"))
    return bars


def test_bars_are_filtered_by_symbol_with_timeframe_1m_by_default(client, market):
    response = client.get("/api/bars/", {"symbol": "NQ"})

    assert response.status_code == 200
    assert bar_times(response) == [iso(T0 + i * MINUTE) for i in range(10)]


def test_bars_are_filtered_by_timeframe(client, market):
    response = client.get("/api/bars/", {"symbol": "NQ", "timeframe": "5m"})

    assert bar_times(response) == [iso(T0 + i * timedelta(minutes=5)) for i in range(3)]


def test_bars_of_a_timeframe_without_data_are_an_empty_page(client, market):
    response = client.get("/api/bars/", {"symbol": "NQ", "timeframe": "1d"})

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_start_is_inclusive_and_end_is_exclusive(client, market):
    response = client.get("/api/bars/", {"symbol": "NQ", "start": iso(T0 + 2 * MINUTE), "end": iso(T0 + 5 * MINUTE)})

    assert bar_times(response) == [iso(T0 + 2 * MINUTE), iso(T0 + 3 * MINUTE), iso(T0 + 4 * MINUTE)]


def test_start_alone_and_end_alone_are_open_ranges(client, market):
    from_start = client.get("/api/bars/", {"symbol": "NQ", "start": iso(T0 + 8 * MINUTE)})
    until_end = client.get("/api/bars/", {"symbol": "NQ", "end": iso(T0 + 2 * MINUTE)})

    assert bar_times(from_start) == [iso(T0 + 8 * MINUTE), iso(T0 + 9 * MINUTE)]
    assert bar_times(until_end) == [iso(T0), iso(T0 + MINUTE)]


def test_a_range_given_with_another_offset_means_the_same_instant(client, market):
    # 09:32 at UTC-5 is 14:32 UTC.
    query = {"symbol": "NQ", "start": "2024-01-02T09:32:00-05:00", "end": "2024-01-02T09:34:00-05:00"}

    response = client.get("/api/bars/", query)

    assert bar_times(response) == [iso(T0 + 2 * MINUTE), iso(T0 + 3 * MINUTE)]


def test_an_unescaped_plus_in_the_offset_is_understood(client, market):
    # Typed into a URL, "+00:00" reaches the server as " 00:00".
    response = client.get("/api/bars/?symbol=NQ&start=2024-01-02T14:38:00+00:00")

    assert response.status_code == 200
    assert bar_times(response) == [iso(T0 + 8 * MINUTE), iso(T0 + 9 * MINUTE)]


def test_bars_come_oldest_first_whatever_the_insertion_order(client, nq):
    for minute in (7, 2, 9, 0, 4):
        BarFactory(instrument=nq, timestamp=T0 + minute * MINUTE)

    response = client.get("/api/bars/", {"symbol": "NQ"})

    assert bar_times(response) == [iso(T0 + m * MINUTE) for m in (0, 2, 4, 7, 9)]


def test_a_bar_carries_its_utc_open_time_and_ohlcv_as_decimal_strings(client, nq):
    BarFactory(
        instrument=nq, timestamp=T0, open="18000.25", high="18010.5", low="17990", close="18005.75", volume="1234"
    )

    response = client.get("/api/bars/", {"symbol": "NQ"})

    assert response.json()["results"] == [
        {
            "timestamp": "2024-01-02T14:30:00Z",
            "open": "18000.250000",
            "high": "18010.500000",
            "low": "17990.000000",
            "close": "18005.750000",
            "volume": "1234.0000",
        }
    ]


# --- bars: pagination -----------------------------------------------------------------------------------------


def test_walking_the_cursor_yields_every_bar_once_in_order(client, nq):
    BarFactory.create_series(23, start=T0, instrument=nq)
    seen, pages = [], 0
    response = client.get("/api/bars/", {"symbol": "NQ", "page_size": 5})
    while True:
        assert response.status_code == 200
        assert len(response.json()["results"]) <= 5
        seen += bar_times(response)
        pages += 1
        if response.json()["next"] is None:
            break
        response = client.get(response.json()["next"])

    assert pages == 5
    assert len(seen) == 23 == len(set(seen))
    assert seen == [iso(T0 + i * MINUTE) for i in range(23)]


def test_the_cursor_keeps_the_range_filters(client, nq):
    BarFactory.create_series(10, start=T0, instrument=nq)

    query = {"symbol": "NQ", "start": iso(T0 + MINUTE), "end": iso(T0 + 6 * MINUTE), "page_size": 3}

    first = client.get("/api/bars/", query)
    second = client.get(first.json()["next"])

    assert bar_times(first) == [iso(T0 + m * MINUTE) for m in (1, 2, 3)]
    assert bar_times(second) == [iso(T0 + m * MINUTE) for m in (4, 5)]
    assert second.json()["next"] is None


def test_the_default_page_is_500_bars(client, nq):
    Bar.objects.bulk_create(
        BarFactory.build(instrument=nq, timestamp=T0 + i * MINUTE) for i in range(501)
    )

    response = client.get("/api/bars/", {"symbol": "NQ"})

    assert len(response.json()["results"]) == 500
    assert response.json()["next"] is not None


def test_a_mangled_cursor_is_a_400_naming_cursor(client, nq):
    response = client.get("/api/bars/", {"symbol": "NQ", "cursor": "not-a-cursor"})

    assert response.status_code == 400
    assert "cursor" in response.json()


# --- bars: bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({}, "symbol", "required"),
        ({"symbol": ""}, "symbol", "blank"),
        ({"symbol": "NQ", "timeframe": "2m"}, "timeframe", "1m, 5m"),
        ({"symbol": "NQ", "start": "2024-01-02T14:30:00"}, "start", "offset or Z"),
        ({"symbol": "NQ", "end": "2024-01-02T14:30:00"}, "end", "offset or Z"),
        ({"symbol": "NQ", "start": "2024-01-02"}, "start", "offset or Z"),
        ({"symbol": "NQ", "start": "yesterday"}, "start", "ISO 8601"),
        ({"symbol": "NQ", "end": "2024-13-40T00:00:00Z"}, "end", "ISO 8601"),
        ({"symbol": "NQ", "start": iso(T0), "end": iso(T0)}, "end", "later than start"),
        ({"symbol": "NQ", "start": iso(T0 + MINUTE), "end": iso(T0)}, "end", "later than start"),
        ({"symbol": "NQ", "page_size": "0"}, "page_size", "greater than or equal to 1"),
        ({"symbol": "NQ", "page_size": "5001"}, "page_size", "less than or equal to 5000"),
        ({"symbol": "NQ", "page_size": "many"}, "page_size", "valid integer"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_bad_query_is_a_400_naming_the_field(client, nq, query, field, words):
    response = client.get("/api/bars/", query)

    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert words in " ".join(body[field])


def test_an_unknown_symbol_is_a_400_naming_the_symbol(client):
    response = client.get("/api/bars/", {"symbol": "ZZZ"})

    assert response.status_code == 400
    assert response.json() == {"symbol": ["Unknown instrument symbol 'ZZZ'."]}


# --- OpenAPI schema and docs ----------------------------------------------------------------------------------


def test_the_schema_lists_the_endpoints_and_the_bar_query_parameters(client):
    response = client.get("/api/schema/", {"format": "json"})
    schema = json.loads(response.content)

    assert response.status_code == 200
    assert {"/api/instruments/", "/api/instruments/{symbol}/", "/api/bars/"} <= set(schema["paths"])
    parameters = {p["name"]: p for p in schema["paths"]["/api/bars/"]["get"]["parameters"]}
    assert set(parameters) == {"symbol", "timeframe", "start", "end", "cursor", "page_size"}
    assert parameters["symbol"].get("required") is True
    assert parameters["timeframe"]["schema"]["default"] == "1m"
    assert parameters["start"]["schema"]["format"] == "date-time"
    page = schema["components"]["schemas"]["PaginatedBarList"]["properties"]
    assert {"next", "previous", "results"} <= set(page)


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    GENERATOR_STATS.reset()  # warnings from earlier generations in this process are not this run's

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert "/api/bars/" in (tmp_path / "schema.yml").read_text()


class _AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def _asset_urls(html: str) -> list[str]:
    collector = _AssetCollector()
    collector.feed(html)
    return collector.urls


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc)  # http(s)://host/... and //host/...


@pytest.mark.parametrize(
    "url",
    ["/api/docs/", "/api/redoc/"],
)
def test_the_docs_page_loads_only_local_assets_that_resolve(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assets = _asset_urls(response.content.decode())

    assert assets, "the page should load its JavaScript and CSS"
    assert [a for a in assets if _is_external(a)] == []
    static_prefix = "/" + settings.STATIC_URL.strip("/") + "/"
    for asset in assets:
        path = urlsplit(asset).path
        if path.startswith(static_prefix):
            assert finders.find(path.removeprefix(static_prefix)), f"{asset} is not a static file"
            served = client.get(path)
            assert served.status_code == 200, f"{asset} is not served"
            assert b"".join(served.streaming_content if served.streaming else [served.content])
        else:
            assert client.get(asset).status_code == 200, f"{asset} is not served"


def test_swagger_ui_does_not_call_the_online_validator(client):
    html = client.get("/api/docs/").content.decode()

    assert '"validatorUrl": null' in html or '"validatorUrl":null' in html
