"""Websocket handshakes only from this site's own pages: the Origin's scheme, host and port, not the host alone."""
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


class SameOriginValidator:
    """Let a websocket through only when its Origin is the server's own origin (scheme, host and port as the browser
    reached it, the host one of ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS, as Django's CSRF check does for forms.

    Channels' AllowedHostsOriginValidator compares the host only, so a page on another port of the same host
    (http://localhost:9999) could open the stream with the user's session cookie. No Origin is refused: browsers
    always send one, and a script without one has no business with a session cookie either."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def origin_allowed(scope) -> bool:
    headers = _headers(scope)
    origin = _parse(headers.get("origin", ""))
    if origin is None:
        return False
    own = _own_origin(scope, headers)
    return origin == own or _trusted(origin)


def _parse(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin with the default port filled in; None for anything else ("null")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _own_origin(scope, headers: dict[str, str]) -> tuple[str, str, int] | None:
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None  # the same refusal Django gives an HTTP request for a host it does not serve
    return _parse(f"{'https' if _is_secure(scope, headers) else 'http'}://{host}")


def _is_secure(scope, headers: dict[str, str]) -> bool:
    """As Django's request.is_secure(): SECURE_PROXY_SSL_HEADER when set (a TLS-terminating proxy), else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = meta_name.removeprefix("HTTP_").lower().replace("_", "-")
        return headers.get(header, "").split(",")[0].strip() == secure_value
    return scope.get("scheme", "ws") in ("wss", "https")


def _trusted(origin: tuple[str, str, int]) -> bool:
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if "://*." in entry:  # a wildcard subdomain entry, as CSRF_TRUSTED_ORIGINS allows
            pattern = urlsplit(entry)
            if pattern.scheme == scheme and is_same_domain(f"{host}:{port}", _with_port(pattern.netloc[1:], scheme)):
                return True
        elif _parse(entry) == origin:
            return True
    return False


def _with_port(netloc: str, scheme: str) -> str:
    return netloc if ":" in netloc.rsplit("]", 1)[-1] else f"{netloc}:{DEFAULT_PORTS.get(scheme, 0)}"


def _headers(scope) -> dict[str, str]:
    return {name.decode("latin1").lower(): value.decode("latin1") for name, value in scope.get("headers", [])}
