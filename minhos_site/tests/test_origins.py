"""The market websocket opens, with the user's session cookie, only for a page of this site: same scheme, host and
port as the server the browser reached, or an origin listed in CSRF_TRUSTED_ORIGINS."""
import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from minhos_site.asgi import application
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

TIMEOUT = 5


@pytest.fixture(autouse=True)
def market(transactional_db):
    InstrumentFactory(symbol="NQ")


@pytest.fixture
def session_cookie(transactional_db, django_user_model) -> bytes:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="trader", password="unused"))
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode()


async def opens(session_cookie, *, host: str, origin: str | None, scheme: str = "ws", extra=()) -> bool:
    headers = [(b"host", host.encode()), (b"cookie", session_cookie), *extra]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    ws = WebsocketCommunicator(application, "/ws/market/NQ/1m/", headers=headers)
    ws.scope["scheme"] = scheme  # what the ASGI server reports: ws, or wss behind TLS
    connected, _ = await ws.connect(timeout=TIMEOUT)
    await ws.disconnect()
    return connected


@pytest.mark.parametrize(("host", "origin"), [
    ("localhost:8000", "http://localhost:8000"),
    ("LOCALHOST:8000", "http://localhost:8000/"),
    ("127.0.0.1", "http://127.0.0.1:80"),
    ("[::1]:8000", "http://[::1]:8000"),
])
async def test_a_page_of_the_site_itself_opens_the_stream(session_cookie, host, origin):
    assert await opens(session_cookie, host=host, origin=origin) is True


@pytest.mark.parametrize("origin", [
    "http://localhost:9999",  # same host, another port: another site (the reported hole)
    "https://localhost:8000",  # another scheme
    "http://evil.example:8000",
    "http://localhost",  # port 80, not 8000
    "null",
    "not a url",
    None,
])
async def test_a_page_of_any_other_origin_is_refused_even_with_the_users_cookie(session_cookie, origin):
    assert await opens(session_cookie, host="localhost:8000", origin=origin) is False


async def test_a_host_the_site_does_not_serve_is_refused_even_if_the_origin_matches_it(session_cookie):
    # DNS rebinding: a foreign name pointed at this server; Django refuses that host for HTTP too.
    assert await opens(session_cookie, host="rebound.example:8000", origin="http://rebound.example:8000") is False


async def test_behind_tls_the_origin_must_be_https(session_cookie, settings):
    settings.ALLOWED_HOSTS = ["minhos.example.com"]

    assert await opens(session_cookie, host="minhos.example.com", origin="https://minhos.example.com",
                       scheme="wss") is True
    assert await opens(session_cookie, host="minhos.example.com", origin="http://minhos.example.com",
                       scheme="wss") is False


async def test_a_tls_proxy_named_by_secure_proxy_ssl_header_makes_the_own_origin_https(session_cookie, settings):
    settings.ALLOWED_HOSTS = ["minhos.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proto = ((b"x-forwarded-proto", b"https"),)

    assert await opens(session_cookie, host="minhos.example.com", origin="https://minhos.example.com",
                       extra=proto) is True
    assert await opens(session_cookie, host="minhos.example.com", origin="http://minhos.example.com",
                       extra=proto) is False


@pytest.mark.parametrize(("origin", "opened"), [
    ("https://desk.example.com", True), ("https://desk.example.com:443", True), ("http://desk.example.com", False),
    ("https://desk.example.com:8443", False), ("https://a.ops.example.com", True), ("https://ops.example.com", True),
    ("https://a.ops.example.com:8443", False), ("https://opsexample.com", False),
])
async def test_csrf_trusted_origins_are_matched_on_scheme_host_and_port(session_cookie, settings, origin, opened):
    settings.CSRF_TRUSTED_ORIGINS = ["https://desk.example.com", "https://*.ops.example.com"]

    assert await opens(session_cookie, host="localhost:8000", origin=origin) is opened
