"""Every write of the REST API is a control, and every refused attempt at one is audited exactly once: by a read-only
user (the permission refused by the service, or at the edge before it), without credentials (refused by DRF's
permission class before any view code runs), and with a body that breaks the request (whatever the answer). The
operations are read from the schema the server serves, so a new write without a declared control fails here."""
import pytest
from django.urls import resolve
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from mlcore.models import Retraining
from trading import services
from trading.models import AuditEvent, Instrument
from trading.tests.decisions import close_time, flat_bars, model_version, prediction, user_with

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ADDRESS = "198.51.100.23"
WRITES = ("post", "put", "patch", "delete")
# Logging in is not a control (its refusals are the login limiter's).
NOT_CONTROLS = {("/api/auth/token/", "post")}
# Bodies a permitted user could send, so that a refusal is the permission's, not the body's.
BODIES = {
    "/api/kill-switch/": {"engaged": True, "reason": "test"},
    "/api/accounts/{account_id}/auto-trading/": {"enabled": True},
    "/api/accounts/{account_id}/trading-state/": {"trading_state": "HALTED"},
    "/api/trading-configs/{config_id}/": {"kelly_fraction": 0.5},
    "/api/model-versions/rollback/": {"symbol": "NQ", "timeframe": "1m"},
    "/api/retrainings/": {"symbol": "NQ", "timeframe": "1m"},
    "/api/retrainings/{retraining_id}/reject/": {"note": "no"},
    "/api/backtests/": {"symbol": "NQ", "timeframe": "1m", "from": "2024-05-07T13:30:00Z",
                        "to": "2024-05-07T14:30:00Z"},
}


def _writes():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((route, method) for route, methods in schema["paths"].items() for method in methods
                  if method in WRITES and (route, method) not in NOT_CONTROLS)


CONTROLS = _writes()
SAMPLE_IDS = {"account_id": 1, "config_id": 1, "recommendation_id": 1, "version_id": 1, "retraining_id": 1,
              "run_id": 1, "symbol": "NQ"}


def _view(route: str):
    return resolve(route.format(**SAMPLE_IDS)).func.cls


@pytest.fixture
def world():
    """A row for every id a control takes: the paper account and its NQ settings, a pending recommendation, a
    model version and a retraining proposing it."""
    nq = Instrument.objects.get(symbol="NQ")
    account = services.account_default_get()
    config = services.trading_config_get(account=account, instrument=nq)
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    retraining = Retraining.objects.create(instrument=nq, timeframe="1m", trigger="manual", requested_by="lead",
                                           requested_at=timezone.now(), status=Retraining.Status.PROPOSED,
                                           challenger=version)
    return {"account_id": account.pk, "config_id": config.pk, "recommendation_id": recommendation.pk,
            "version_id": version.pk, "retraining_id": retraining.pk}


def _attempt(client, route, method, ids, body=None):
    url = route.format(**ids)
    return getattr(client, method)(url, BODIES.get(route, {}) if body is None else body, format="json")


def _refusals():
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).select_related("user"))


def test_the_schema_has_writes_and_every_one_is_a_declared_control():
    assert len(CONTROLS) >= 13, CONTROLS
    undeclared = [(route, method) for route, method in CONTROLS
                  if method.upper() not in getattr(_view(route), "controls", {})]
    assert not undeclared, f"writes without a declared control (minhos_site.controls.AuditedControls): {undeclared}"


@pytest.mark.parametrize("route, method", CONTROLS)
def test_a_read_only_users_attempt_at_each_control_is_refused_and_audited_once(world, route, method):
    reader = user_with("reader")
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.force_login(reader)
    response = _attempt(client, route, method, world)
    assert response.status_code == 403, (route, response.status_code, response.content[:300])
    [event] = _refusals()
    assert event.user == reader and event.client_address == ADDRESS
    assert event.details["control"] == _view(route).controls[method.upper()]
    assert "permission" in event.details["reason"], event.details


@pytest.mark.parametrize("route, method", CONTROLS)
def test_an_attempt_without_credentials_at_each_control_is_refused_and_audited_once(world, route, method):
    """DRF's IsAuthenticated refuses it before any view code: recorded with no user, the address and the reason."""
    response = _attempt(APIClient(REMOTE_ADDR=ADDRESS), route, method, world)
    assert response.status_code in (401, 403), (route, response.status_code)
    [event] = _refusals()
    assert event.user is None and event.client_address == ADDRESS
    assert event.details["control"] == _view(route).controls[method.upper()]
    assert "credentials" in event.details["reason"], event.details


@pytest.mark.parametrize("route, method", CONTROLS)
def test_a_read_only_users_attempt_with_a_body_that_breaks_the_request_is_audited_once(world, route, method):
    """JSON nested 1,000 deep (a 500 in DRF's parser, or a 400 once refused): whatever the answer, one record."""
    reader = user_with("reader")
    client = APIClient(REMOTE_ADDR=ADDRESS, raise_request_exception=False)
    client.force_login(reader)
    nested = "[" * 1000 + "]" * 1000
    response = getattr(client, method)(route.format(**world), nested, content_type="application/json")
    assert response.status_code >= 400, (route, response.status_code)
    [event] = _refusals()
    assert event.user == reader and event.details["control"] == _view(route).controls[method.upper()]
    assert event.details["reason"], event.details


def test_a_refusal_the_service_recorded_is_not_recorded_again_and_one_it_did_not_is(world):
    """The kill switch's service records its refusal (with what was asked); retraining start is refused at the edge
    (its view checks the permission): each attempt leaves one record."""
    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.force_login(user_with("reader"))
    client.post("/api/kill-switch/", {"engaged": False, "reason": ""}, format="json")
    client.post("/api/retrainings/", {"symbol": "NQ", "timeframe": "1m"}, format="json")
    kill, start = sorted(_refusals(), key=lambda e: e.pk)
    assert kill.details["control"] == "kill_switch" and kill.details["requested"] == {"engaged": "False"}
    assert start.details["control"] == "retraining_start" and start.details["via"] == "api"
    assert start.details["status"] == 403


@pytest.mark.parametrize("credentials", ["none", "read-only"])
def test_refused_attempts_are_throttled_before_the_permission_so_the_audit_trail_grows_at_the_limit_at_most(
        settings, credentials):
    """DRF checks permissions before throttles: a client refused on every attempt was never limited, and each of its
    attempts wrote an audit record. On a control the throttle now comes first, and a 429 writes no record."""
    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "anon": "5/minute", "user": "5/minute"}
    client = APIClient(REMOTE_ADDR=ADDRESS)
    if credentials == "read-only":
        client.force_authenticate(user_with("reader"))

    answers = [client.post("/api/kill-switch/", {"engaged": False}, format="json").status_code for _ in range(12)]

    refused = 401 if credentials == "none" else 403
    assert answers in ([refused] * 5 + [429] * 7, [403] * 5 + [429] * 7)
    assert len(_refusals()) == 5
