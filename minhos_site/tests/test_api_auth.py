"""Logins and API access have limits: the login limiter (django-axes) on the login page and the token endpoint,
DRF throttles keyed by the address the server resolved, and API tokens that expire and can be rotated."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PASSWORD = "the-Right-pass-1"
ELSEWHERE = "198.51.100.20"


@pytest.fixture
def trader(django_user_model):
    return django_user_model.objects.create_user(username="trader", password=PASSWORD)


def log_in(client, password, username="trader"):
    return client.post("/accounts/login/", {"username": username, "password": password})


def obtain(client, password, username="trader", **extra):
    return client.post("/api/auth/token/", {"username": username, "password": password, **extra}, format="json")


def logged_in(client) -> bool:
    return client.get("/").status_code == 200


# --- the login limiter ----------------------------------------------------------------------------------------------

def test_after_the_failure_limit_even_the_right_password_is_refused_on_the_login_page(trader, settings):
    client = Client()
    answers = [log_in(client, "wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)]

    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then the lockout
    assert log_in(client, PASSWORD).status_code == 429
    assert not logged_in(client)


def test_after_the_failure_limit_even_the_right_password_gets_no_token(trader, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        obtain(client, "wrong")

    refused = obtain(client, PASSWORD)

    assert refused.status_code == 429
    assert "Too many failed logins" in refused.json()["detail"]
    assert not Token.objects.exists()


def test_the_lockout_holds_one_username_from_one_address_only(trader, django_user_model, settings):
    django_user_model.objects.create_user(username="other", password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "wrong")

    assert log_in(Client(REMOTE_ADDR=ELSEWHERE), PASSWORD).status_code == 302
    assert log_in(Client(), PASSWORD, username="other").status_code == 302
    assert log_in(Client(), PASSWORD).status_code == 429


def test_the_lockout_ends_after_the_cool_off(trader, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "wrong")
    assert log_in(Client(), PASSWORD).status_code == 429

    # The cool-off counts from the last failure (the refused right password counted as one).
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    client = Client()
    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_success_resets_the_failure_count(trader, settings):
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert log_in(Client(), "wrong").status_code == 200
        assert log_in(Client(), PASSWORD).status_code == 302


def test_the_limiter_counts_the_address_the_server_resolved_not_a_forwarded_header(trader, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(HTTP_X_FORWARDED_FOR=f"203.0.113.{n}"), "wrong")

    assert log_in(Client(HTTP_X_FORWARDED_FOR="203.0.113.99"), PASSWORD).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def _retry_after(response) -> int:
    assert response.has_header("Retry-After"), dict(response.items())
    return int(response["Retry-After"])


def _age_the_failures(settings, minutes: float) -> None:
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=minutes))


def test_the_login_pages_lockout_says_when_to_retry_in_seconds_left_of_the_cool_off(trader, settings):
    cool_off = int(settings.AXES_COOLOFF_TIME.total_seconds())
    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = log_in(Client(), "wrong")

    assert locked.status_code == 429
    assert cool_off - 5 <= _retry_after(locked) <= cool_off

    _age_the_failures(settings, 10)  # 10 of the 15 minutes gone: about 5 left
    with_right_password = log_in(Client(), PASSWORD)
    assert with_right_password.status_code == 429
    assert cool_off - 5 <= _retry_after(with_right_password) <= cool_off  # that failure started it again


def test_the_admin_logins_lockout_says_when_to_retry(trader, settings):
    def admin_log_in(password):
        return Client().post("/admin/login/?next=/admin/", {"username": "trader", "password": password})

    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = admin_log_in("wrong")

    assert locked.status_code == 429
    assert 1 <= _retry_after(locked) <= settings.AXES_COOLOFF_TIME.total_seconds()
    assert f"{_retry_after(locked)} s" in locked.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_says_when_to_retry_under_asgi_too(trader, settings):
    # The web server runs Django as ASGI, where django-axes takes its middleware's async path.
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    client = AsyncClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = await client.post("/accounts/login/", {"username": "trader", "password": "wrong"})
    assert await sync_to_async(AccessAttempt.objects.count)() == 1

    assert locked.status_code == 429
    assert 1 <= _retry_after(locked) <= settings.AXES_COOLOFF_TIME.total_seconds()


def test_the_token_endpoints_lockout_says_when_to_retry_with_what_is_left(trader, settings):
    # Attempts during the lockout do not start it again here, so what is left shows.
    settings.AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = obtain(client, "wrong")
    _age_the_failures(settings, 10)
    left = int((settings.AXES_COOLOFF_TIME - timedelta(minutes=10)).total_seconds())

    with_right_password = obtain(client, PASSWORD)

    assert locked.status_code == with_right_password.status_code == 429
    assert left - 5 <= _retry_after(with_right_password) <= left + 1
    assert f"in {_retry_after(with_right_password)} s" in with_right_password.json()["detail"]


# --- throttles ------------------------------------------------------------------------------------------------------

def test_the_token_endpoint_is_throttled_per_address_whatever_x_forwarded_for_says(trader, settings):
    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "auth-token": "3/minute"}

    answers = [APIClient(HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").post(
        "/api/auth/token/", {"username": "trader", "password": PASSWORD}, format="json").status_code
        for n in range(4)]

    assert answers == [200, 200, 200, 429]
    assert obtain(APIClient(REMOTE_ADDR=ELSEWHERE), PASSWORD).status_code == 200


def test_anonymous_requests_are_throttled_per_address_whatever_x_forwarded_for_says(settings):
    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "anon": "1/minute"}

    first = APIClient(HTTP_X_FORWARDED_FOR="203.0.113.1").get("/api/schema/")
    second = APIClient(HTTP_X_FORWARDED_FOR="203.0.113.2").get("/api/schema/")

    assert (first.status_code, second.status_code) == (200, 429)


def test_a_users_requests_are_throttled_per_user_and_a_rate_of_none_turns_the_throttle_off(trader, settings):
    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "user": "2/minute"}
    client = APIClient()
    client.force_login(trader)

    assert [client.get("/api/instruments/").status_code for _ in range(3)] == [200, 200, 429]

    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "user": None}
    assert client.get("/api/instruments/").status_code == 200


def test_the_default_rates_are_set_and_the_token_endpoint_is_the_strictest(settings):
    rates = settings.MINHOS_THROTTLE_RATES
    assert set(rates) == {"anon", "user", "auth-token"}

    def per_minute(rate):
        count, period = rate.split("/")
        return int(count) * {"s": 60, "m": 1, "h": 1 / 60, "d": 1 / 1440}[period[0]]

    assert per_minute(rates["auth-token"]) < per_minute(rates["anon"]) < per_minute(rates["user"])


# --- token expiry and rotation --------------------------------------------------------------------------------------

def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def age(token: Token, hours: float) -> None:
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=hours))


def test_a_token_older_than_the_ttl_is_refused_and_asking_again_gives_a_new_one(trader, settings):
    key = obtain(APIClient(), PASSWORD).json()["token"]
    assert token_client(key).get("/api/instruments/").status_code == 200
    age(Token.objects.get(key=key), settings.MINHOS_TOKEN_TTL_HOURS + 0.01)

    refused = token_client(key).get("/api/instruments/")

    assert refused.status_code in (401, 403)  # 403: session authentication comes first and has no challenge
    assert refused.json()["detail"].startswith("Token expired")
    fresh = obtain(APIClient(), PASSWORD).json()["token"]
    assert fresh != key
    assert token_client(fresh).get("/api/instruments/").status_code == 200


def test_a_token_within_its_ttl_is_kept_and_asking_again_returns_it(trader, settings):
    key = obtain(APIClient(), PASSWORD).json()["token"]
    age(Token.objects.get(key=key), settings.MINHOS_TOKEN_TTL_HOURS - 0.1)

    assert obtain(APIClient(), PASSWORD).json()["token"] == key
    assert token_client(key).get("/api/instruments/").status_code == 200


def test_rotate_replaces_a_valid_token_and_the_old_one_stops_working(trader):
    old = obtain(APIClient(), PASSWORD).json()["token"]

    new = obtain(APIClient(), PASSWORD, rotate=True).json()["token"]

    assert new != old
    assert token_client(old).get("/api/instruments/").json()["detail"] == "Invalid token."
    assert token_client(new).get("/api/instruments/").status_code == 200


def test_a_ttl_of_zero_means_tokens_never_expire(trader, settings):
    settings.MINHOS_TOKEN_TTL_HOURS = 0
    key = obtain(APIClient(), PASSWORD).json()["token"]
    age(Token.objects.get(key=key), 24 * 365 * 10)

    assert token_client(key).get("/api/instruments/").status_code == 200


@pytest.mark.parametrize("path", ["/api/auth/token/", "/accounts/login/"])
def test_a_username_longer_than_any_user_can_have_is_a_failed_login_not_a_server_error(trader, path):
    response = APIClient().post(path, {"username": "u" * 300, "password": "wrong"})

    # The login form again, or the token endpoint's 400; before it, the limiter's record of the failure overflowed
    # its 255-character column on PostgreSQL: a 500.
    assert response.status_code in (200, 400)
