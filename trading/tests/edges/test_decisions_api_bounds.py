"""The decision API's query and path parameters are bounded, and its schema says which fields can be null: every
out-of-range id is a 400 or a 404, never an overflow in the database driver, and responses match the schema."""
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from trading import services

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

MAX_ID = 2**63 - 1
TOO_BIG = (str(MAX_ID + 1), "99999999999999999999999")


@pytest.fixture
def client() -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.create(username="reader", is_superuser=True))
    return client


@pytest.mark.parametrize("big", TOO_BIG)
def test_an_audit_recommendation_filter_past_the_id_range_is_a_400(client, big):
    # The filter had a minimum but no maximum: SQLite raised OverflowError (a 500), PostgreSQL matched nothing.
    response = client.get("/api/audit-events/", {"recommendation": big})

    assert response.status_code == 400
    assert "less than or equal to" in response.json()["recommendation"][0]


@pytest.mark.parametrize("url", ["/api/recommendations/", "/api/orders/", "/api/fills/", "/api/positions/",
                                 "/api/trading-configs/", "/api/audit-events/"])
@pytest.mark.parametrize("big", TOO_BIG)
def test_an_account_filter_past_the_id_range_is_a_400_stating_the_bound(client, url, big):
    response = client.get(url, {"account": big})

    assert response.status_code == 400
    assert "less than or equal to" in response.json()["account"][0]


def test_an_id_filter_at_the_top_of_the_range_is_accepted(client):
    assert client.get("/api/audit-events/", {"recommendation": MAX_ID}).json()["results"] == []


@pytest.mark.parametrize(("method", "url", "body"), [
    ("get", "/api/recommendations/{id}/", None), ("post", "/api/recommendations/{id}/approve/", None),
    ("post", "/api/recommendations/{id}/reject/", None), ("get", "/api/accounts/{id}/", None),
    ("get", "/api/accounts/{id}/equity/", None), ("post", "/api/accounts/{id}/auto-trading/", {"enabled": True}),
    ("post", "/api/accounts/{id}/circuit-breaker/reset/", None),
    ("post", "/api/accounts/{id}/trading-state/", {"trading_state": "HALTED"}),
    ("get", "/api/trading-configs/{id}/", None), ("patch", "/api/trading-configs/{id}/", {"kelly_fraction": 0.5}),
    ("get", "/api/model-versions/{id}/", None), ("post", "/api/model-versions/{id}/promote/", None),
])
@pytest.mark.parametrize("big", TOO_BIG)
def test_a_path_id_past_the_id_range_is_a_404(client, method, url, body, big):
    response = getattr(client, method)(url.format(id=big), body, format="json")

    assert response.status_code == 404


def _schema_properties(client, component: str) -> dict:
    return client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"][component]["properties"]


@pytest.mark.parametrize(("component", "field"), [("Recommendation", "decided_by"), ("AuditEvent", "user"),
                                                  ("KillSwitch", "changed_by")])
def test_user_fields_that_come_back_null_are_documented_as_nullable(client, component, field):
    assert _schema_properties(client, component)[field]["nullable"] is True


def test_an_undecided_recommendation_and_a_system_audit_event_do_come_back_with_null_users(client):
    account = services.account_default_get()
    services.circuit_breaker_trip(account_id=account.pk, reason="test")  # audited with no user

    events = client.get("/api/audit-events/").json()["results"]
    switch = client.get("/api/kill-switch/").json()

    assert events[0]["action"] == "breaker_trip" and events[0]["user"] is None
    assert switch["changed_by"] is None
