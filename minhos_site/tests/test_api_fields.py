"""Strings and date-times a client sends: a control character (NUL, an escape, DEL, C1) is a 400 naming the field,
in every date-time and every string field of the API (free text keeps its tabs and line breaks). Python's
datetime.fromisoformat read "2026-12-07T16:00:00\\x00Z" as a time, and the backtest API answered 201."""
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from minhos_site.api_fields import control_character_problem
from trading import backtest
from trading.models import BacktestRun, KillSwitch

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

NUL_TIME = "2026-12-07T16:00:00\u0000Z"


@pytest.fixture
def admin(settings):
    settings.MINHOS_THROTTLE_RATES = {scope: "1000000/minute" for scope in settings.MINHOS_THROTTLE_RATES}
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("root", password="pw-root-1"))
    return client


@pytest.mark.parametrize("value", [NUL_TIME, "2026-12-07T16:00:00Z\u001b[2J", "2026-12-07\u0085T16:00:00Z",
                                   "2026-12-07T16:00:00\u007fZ"])
def test_a_backtest_window_with_a_control_character_is_a_400_and_no_run(admin, value):
    response = admin.post("/api/backtests/", {"symbol": "NQ", "from": value, "to": "2026-12-08T16:00:00Z"},
                          format="json")

    assert response.status_code == 400
    assert "Control character" in response.json()["from"][0]
    assert not BacktestRun.objects.exists()


def test_a_bar_query_with_a_nul_in_its_time_is_a_400_naming_it(admin):
    response = admin.get("/api/bars/", {"symbol": "NQ", "start": NUL_TIME})

    assert response.status_code == 400
    assert "U+0000" in response.json()["start"][0]


@pytest.mark.parametrize("path, query", [("/api/bars/", {"symbol": "N\u0001Q"}),
                                         ("/api/recommendations/", {"symbol": "NQ\u0000"}),
                                         ("/api/model-versions/", {"symbol": "\u009bNQ"}),
                                         ("/api/predictions/", {"symbol": "NQ\u007f"})])
def test_a_symbol_with_a_control_character_is_a_400_naming_it(admin, path, query):
    response = admin.get(path, query)

    assert response.status_code == 400
    assert "Control character" in response.json()["symbol"][0]


def test_a_reason_with_an_escape_sequence_is_refused_and_one_with_line_breaks_is_kept(admin):
    refused = admin.post("/api/kill-switch/", {"engaged": True, "reason": "drill \u001b[31mred"}, format="json")
    accepted = admin.post("/api/kill-switch/", {"engaged": True, "reason": "drill\n\tline two"}, format="json")

    assert refused.status_code == 400 and "U+001B" in refused.json()["reason"][0]
    assert accepted.status_code == 200
    assert KillSwitch.objects.get().reason == "drill\n\tline two"


@pytest.mark.parametrize("body", [{"symbol": "NQ\u0000"}, {"symbol": "NQ", "reason": "why\u0007"}])
def test_a_retraining_request_with_a_control_character_is_a_400(admin, body):
    response = admin.post("/api/retrainings/", body, format="json")

    assert response.status_code == 400
    assert "Control character" in str(response.json())


def test_the_token_endpoint_refuses_a_username_with_a_control_character():
    response = APIClient().post("/api/auth/token/", {"username": "root\u0000", "password": "x"}, format="json")

    assert response.status_code == 400
    assert "U+0000" in response.json()["username"][0]


def test_the_problem_names_the_character_and_its_position():
    assert control_character_problem("ab\u0000c") == "Control character U+0000 at position 3 is not accepted."
    assert control_character_problem("a\nb", text=True) is None
    assert control_character_problem("a\nb") is not None
    assert control_character_problem("NQ é ü 日本") is None


def test_the_backtest_command_and_page_refuse_a_window_with_a_nul():
    with pytest.raises(ValueError, match="U\\+0000"):
        backtest.window_moment(NUL_TIME)
