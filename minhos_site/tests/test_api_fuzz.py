"""Schemathesis against the live OpenAPI schema: every operation, as a superuser and as a read-only user, never a 500,
and every answer as the schema documents it (status code, content type, body).

The schema is read from /api/schema/ and the requests go in-process to the WSGI application, inside the test's
transaction, over seeded rows (an account and its configuration, bars, a model version, predictions, a traded and
a pending recommendation, orders, a fill, a position, equity, audit events). Valid and invalid inputs, the coverage
phase's boundary values and unexpected methods; generation is deterministic and bounded per operation. After every
request, positions must still be what their fills say (`account_reconcile`).
"""
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from trading import services
from trading.models import Instrument
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction, user_with

# Per operation and generation mode, on top of the coverage phase's cases: about 2,000 requests per user, two to
# three minutes of one core for the whole run.
MAX_EXAMPLES = 15
SEED = 20240102
# HTTPS, as a deployment serves it (plain HTTP is redirected there unless MINHOS_INSECURE_HTTP is set).
BASE_URL = "https://localhost"
CONFIG = {
    "base-url": BASE_URL,
    "seed": SEED,
    "suppress-health-check": ["all"],
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    "checks": {"enabled": False, "not_a_server_error": {"enabled": True},
               "status_code_conformance": {"enabled": True}, "content_type_conformance": {"enabled": True},
               "response_schema_conformance": {"enabled": True}},
}


def _seed_market():
    """Rows for every endpoint to read: one recommendation traded through the broker, one left pending."""
    nq = Instrument.objects.get(symbol="NQ")
    services.account_default_get()
    trader = user_with("seed-trader", "trading.approve_recommendation")
    bars = flat_bars(nq, 3)
    version = model_version(nq)
    [traded] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], version, p=0.7).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=traded.pk, user=trader, now=close_time(bars[-1]))
    bars.append(bar_at(nq, 3, open_="18000.50", high="18001", low="17999", close="18000.75"))
    services.bar_settle(bar_id=bars[-1].pk)
    services.recommendations_create_for_prediction(prediction_id=prediction(bars[-1], version, side="short").pk,
                                                   now=close_time(bars[-1]))


# The schema the server serves, read at collection through the WSGI application (no database needed for it).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), base_url=BASE_URL,
                                        config=schemathesis.Config.from_dict(CONFIG))


@pytest.fixture(params=["superuser", "reader"])
def auth_headers(request, db, settings) -> dict:
    """Seeded rows and the token header of a superuser or of a user with no permission at all."""
    settings.ALLOWED_HOSTS = ["localhost"]
    # Every login attempt on /api/auth/token/ hashes a password: the fast hasher keeps the run short.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Throttles stay in the path but never answer 429 to the fuzzer: it is here to reach the handlers.
    settings.MINHOS_THROTTLE_RATES = {scope: "1000000/minute" for scope in settings.MINHOS_THROTTLE_RATES}
    # Django's test client does the same: the request must not close the test's connection (and its transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    request.addfinalizer(lambda: request_started.connect(close_old_connections))
    request.addfinalizer(lambda: request_finished.connect(close_old_connections))
    _seed_market()
    if request.param == "superuser":
        user = get_user_model().objects.create_superuser("fuzz-admin", password="pw-fuzz-admin")
    else:
        user = user_with("fuzz-reader")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@schema.parametrize()
def test_no_operation_answers_with_a_server_error(case, auth_headers):
    case.call_and_validate(headers=auth_headers)
    report = services.account_reconcile()
    assert report.clean, report.differences
