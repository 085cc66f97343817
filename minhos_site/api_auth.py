"""API authentication limits: tokens that expire and can be rotated, throttles with rates read from settings.

Imported by DRF while its views load (DEFAULT_* settings): nothing here may import rest_framework.views."""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import throttling
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from .shared_cache import throttle_cache


def token_expired(token: Token, *, now=None) -> bool:
    hours = settings.MINHOS_TOKEN_TTL_HOURS
    return bool(hours) and token.created <= (now or timezone.now()) - timedelta(hours=hours)


def token_issue(*, user, rotate: bool = False) -> Token:
    """The user's token: the current one while it is valid, else (expired, or rotation asked) a new one."""
    with transaction.atomic():
        token = Token.objects.select_for_update().filter(user=user).first()
        if token is not None and (rotate or token_expired(token)):
            token.delete()
            token = None
        return token or Token.objects.create(user=user)


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than MINHOS_TOKEN_TTL_HOURS (0: tokens never expire)."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("Token expired; obtain a new one from /api/auth/token/.")
        return user, token


class _RatesFromSettings:
    """DRF copies its rates into the throttle classes at import; these read settings.MINHOS_THROTTLE_RATES on each
    request instead, so an override (a test's, a deployment's) takes effect. A rate of None turns that one off.
    Counts live in the shared cache, or in this process while Redis is down (minhos_site/shared_cache.py)."""

    cache = throttle_cache

    @property
    def THROTTLE_RATES(self):  # noqa: N802  (the name DRF looks up)
        return settings.MINHOS_THROTTLE_RATES


class AnonRateThrottle(_RatesFromSettings, throttling.AnonRateThrottle):
    """Requests without a login, per client address (REMOTE_ADDR only: NUM_PROXIES is 0)."""


class UserRateThrottle(_RatesFromSettings, throttling.UserRateThrottle):
    """Requests of a logged-in user, per user."""


class TokenObtainRateThrottle(_RatesFromSettings, throttling.SimpleRateThrottle):
    """Password guesses on the token endpoint, per client address, logged in or not."""

    scope = "auth-token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
