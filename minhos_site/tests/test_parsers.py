"""Request bodies every API endpoint parses alike (minhos_site/parsers.py): JSON nested too deep is a 400 naming the
depth, never a RecursionError's 500; a field sent twice, in a form or as a repeated JSON key, is a 400 naming it,
never "the last value wins" (which released the kill switch a form seemed to engage)."""
import json

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from minhos_site.parsers import MAX_JSON_DEPTH, json_depth
from mlcore.models import Retraining
from trading import services
from trading.models import Instrument, KillSwitch, TradingConfig

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"engaged": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}"


@pytest.fixture
def admin(settings):
    # Throttles stay in the path but never answer 429: the test is here to reach the parsers.
    settings.MINHOS_THROTTLE_RATES = {scope: "1000000/minute" for scope in settings.MINHOS_THROTTLE_RATES}
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("root", password="pw-root-1"))
    return client


def _schema_writes(client) -> list[tuple[str, str, bool]]:
    """(method, path, takes a body) of every write the schema documents, path parameters filled with real ids."""
    schema = client.get("/api/schema/?format=json").json()
    account = services.account_default_get()
    config = TradingConfig.objects.filter(account=account).first()
    retraining = Retraining.objects.create(instrument=Instrument.objects.get(symbol="NQ"), timeframe="1m",
                                           trigger=Retraining.Trigger.MANUAL, requested_by="root",
                                           requested_at=timezone.now())
    ids = {"account_id": account.pk, "config_id": config.pk if config else 1, "retraining_id": retraining.pk}
    writes = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put", "patch", "delete"):
                filled = path
                for name in ids.keys() | {"recommendation_id", "version_id", "retraining_id", "run_id", "alert_id"}:
                    filled = filled.replace("{" + name + "}", str(ids.get(name, 1)))
                writes.append((method, filled, "requestBody" in operation))
    return writes


def test_the_depth_counts_brackets_outside_strings_only():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"") == 0


def test_every_write_of_the_schema_answers_a_deeply_nested_body_with_a_400(admin):
    writes = _schema_writes(admin)
    assert len(writes) >= 10
    answers = {}
    for method, path, takes_body in writes:
        for body in (DEEP, DEEP_OBJECT):
            response = getattr(admin, method)(path, body, content_type="application/json")
            answers[(method, path, body[:2])] = response.status_code
            assert response.status_code != 500, (method, path)
            if takes_body:
                assert response.status_code == 400, (method, path, response.content[:200])
                assert f"at most {MAX_JSON_DEPTH}" in response.json()["detail"]
    assert answers


def test_the_anonymous_token_endpoint_answers_a_deeply_nested_body_with_a_400():
    response = APIClient().post("/api/auth/token/", DEEP, content_type="application/json")

    assert response.status_code == 400
    assert "nested 1000 levels deep" in response.json()["detail"]


def test_a_body_at_the_depth_limit_is_parsed(admin):
    # Not refused as too deep: refused by the serializer for what it says (a field of the wrong type).
    body = '{"engaged": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    response = admin.post("/api/kill-switch/", body, content_type="application/json")

    assert response.status_code == 400
    assert "engaged" in response.json()


@pytest.mark.parametrize("body", ["engaged=true&engaged=false", "engaged=false&engaged=true&reason=x"])
def test_a_control_field_sent_twice_in_a_form_is_a_400_naming_it_and_changes_nothing(admin, body):
    before = KillSwitch.objects.first()
    engaged_before = before.engaged if before else False

    response = admin.post("/api/kill-switch/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert "Sent 2 times" in response.json()["engaged"][0]
    after = KillSwitch.objects.first()
    assert (after.engaged if after else False) == engaged_before


def test_a_json_key_sent_twice_is_a_400_naming_it(admin):
    response = admin.post("/api/kill-switch/", '{"engaged": true, "engaged": false}', content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()) == ["engaged"]
    assert not KillSwitch.objects.filter(engaged=True).exists()


def test_a_repeated_key_deep_inside_a_json_body_is_refused_too(admin):
    config = TradingConfig.objects.filter(account=services.account_default_get()).first()
    body = json.dumps({"kelly_fraction": 0.3})[:-1] + ', "kelly_fraction": 0.9}'

    response = admin.patch(f"/api/trading-configs/{config.pk}/", body, content_type="application/json")

    assert response.status_code == 400
    assert "kelly_fraction" in response.json()
    config.refresh_from_db()
    assert float(config.kelly_fraction) != 0.9


@pytest.mark.parametrize("path, field", [("/api/accounts/{account}/auto-trading/", "enabled"),
                                         ("/api/accounts/{account}/trading-state/", "trading_state")])
def test_every_control_refuses_a_repeated_field_in_a_form_and_in_multipart(admin, path, field):
    account = services.account_default_get()
    url = path.format(account=account.pk)
    values = {"enabled": ("true", "false"), "trading_state": ("HALTED", "ACTIVE")}[field]

    form = admin.post(url, f"{field}={values[0]}&{field}={values[1]}",
                      content_type="application/x-www-form-urlencoded")
    multipart = admin.post(url, {field: list(values)}, format="multipart")

    assert (form.status_code, multipart.status_code) == (400, 400)
    assert field in form.json() and field in multipart.json()
    account.refresh_from_db()
    assert (account.auto_trading, account.trading_state) == (False, "ACTIVE")


def test_nan_is_still_refused(admin):
    response = admin.post("/api/kill-switch/", '{"engaged": NaN}', content_type="application/json")

    assert response.status_code == 400
