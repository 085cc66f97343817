"""The API's paginators: page sizes are bounded and a bad `limit`, `offset`, `page_size` or cursor is a 400 naming
the parameter, on every list endpoint; never a silent default and never a 500 from the database."""
import base64
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from trading import services
from trading.models import Instrument
from trading.tests.decisions import flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LIMIT_OFFSET_URLS = ("/api/model-versions/", "/api/predictions/")
CURSOR_URLS = ("/api/bars/?symbol=NQ", "/api/recommendations/", "/api/orders/", "/api/fills/", "/api/audit-events/",
               "/api/accounts/{account}/equity/")


@pytest.fixture
def client() -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.create(username="reader"))  # read-only; no password to hash
    return client


@pytest.fixture
def rows():
    """A model version and three predictions: LIMIT and OFFSET only reach the database when there are rows."""
    nq = Instrument.objects.get(symbol="NQ")
    version = model_version(nq)
    for bar in flat_bars(nq, 3):
        prediction(bar, version)
    return version


def _with(url: str, **params) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _cursor(position: str) -> str:
    """A cursor as DRF encodes one, with a position of the caller's choosing."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


# --- limit and offset ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", LIMIT_OFFSET_URLS)
@pytest.mark.parametrize("limit", [str(2**63), "99999999999999999999999", "1001"])
def test_a_limit_over_the_maximum_is_a_400_naming_it(client, rows, url, limit):
    # A limit of 2^63 or more used to reach SQL as is: "bigint out of range" (PostgreSQL), "datatype mismatch"
    # (SQLite), a 500 either way.
    response = client.get(url, {"limit": limit})

    assert response.status_code == 400, response.content
    assert "1000" in str(response.json()["limit"])


@pytest.mark.parametrize("url", LIMIT_OFFSET_URLS)
@pytest.mark.parametrize("params", [{"limit": "abc"}, {"limit": ""}, {"limit": "0"}, {"limit": "-5"},
                                    {"limit": "2.5"}, {"offset": "abc"}, {"offset": "-1"}, {"offset": ""},
                                    {"offset": str(2**31)}, {"offset": "99999999999999999999999"}])
def test_a_garbage_limit_or_offset_is_refused_not_replaced_by_the_default(client, rows, url, params):
    response = client.get(url, params)

    assert response.status_code == 400, response.content
    assert set(response.json()) == set(params)


@pytest.mark.parametrize("url", LIMIT_OFFSET_URLS)
def test_limit_and_offset_within_bounds_page_through_the_rows(client, rows, url):
    first = client.get(url, {"limit": 1000, "offset": 0}).json()
    second = client.get(url, {"limit": 1, "offset": 1}).json()
    past_the_end = client.get(url, {"limit": 1, "offset": 2**31 - 1}).json()

    assert first["count"] == len(first["results"]) >= 1
    assert second["count"] == first["count"]
    assert second["results"] == first["results"][1:2]
    assert past_the_end["results"] == []


def test_a_page_is_at_most_100_rows_by_default(client, rows):
    nq = Instrument.objects.get(symbol="NQ")
    for bar in flat_bars(nq, 101, start=3):
        prediction(bar, rows)

    page = client.get("/api/predictions/").json()

    assert page["count"] == 104 and len(page["results"]) == 100


def test_the_schema_states_the_bounds_of_limit_and_offset(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    for url in LIMIT_OFFSET_URLS:
        parameters = {p["name"]: p["schema"] for p in schema["paths"][url]["get"]["parameters"]}
        assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
        assert parameters["offset"] == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}
        assert "400" in schema["paths"][url]["get"]["responses"]


# --- cursors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", CURSOR_URLS)
@pytest.mark.parametrize("position", [
    "xx",                            # not a time: Django's ValidationError from the filter, a 500
    "9999999999999999999999",
    "10000-01-01 00:00:00+00:00",    # past year 9999
    "2024-01-02 14:33:00",           # no offset: the cursors made here always carry one
    "0001-01-01 00:00:00+05:00",     # before year 1 in UTC: an OverflowError on SQLite
])
def test_a_forged_cursor_is_a_400_naming_cursor(client, url, position):
    url = url.format(account=services.account_default_get().pk)

    response = client.get(_with(url, cursor=_cursor(position)))

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["cursor"]


@pytest.mark.parametrize("url", CURSOR_URLS)
@pytest.mark.parametrize("page_size", ["abc", "", "0", "1001", str(2**63)])
def test_a_bad_page_size_is_a_400_on_every_cursor_endpoint(client, url, page_size):
    url = url.format(account=services.account_default_get().pk)
    if url.startswith("/api/bars/") and page_size == "1001":
        page_size = "5001"  # bars allow bigger pages

    response = client.get(_with(url, page_size=page_size))

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["page_size"]


def test_a_cursor_made_by_the_server_still_pages(client):
    nq = Instrument.objects.get(symbol="NQ")
    flat_bars(nq, 3)

    first = client.get("/api/bars/", {"symbol": "NQ", "page_size": 2}).json()
    second = client.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
