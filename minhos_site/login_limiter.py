"""What the login limiter (django-axes) counts a failed login against, besides the client address, and how its
lockout answers (with Retry-After)."""
import math

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit, get_lockout_message
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Max
from django.http import HttpResponse, JsonResponse
from django.utils import timezone

USERNAME_FIELD = "username"


def username_tried(request, credentials: dict | None = None) -> str | None:
    """The username of the attempt, cut to the longest a user can have: a longer one names nobody, and axes keeps it
    in a 255-character column, so a 300-character guess on the login page was a 500 on PostgreSQL."""
    if credentials:
        username = credentials.get(USERNAME_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(USERNAME_FIELD)
    if username is None:
        return None
    return str(username)[:get_user_model()._meta.get_field(USERNAME_FIELD).max_length]


def lockout_seconds_left(request, credentials: dict | None = None) -> int:
    """Whole seconds until this username may log in again from this address: the cool-off counts from the last
    failure that counted (at least 1, since an answer of 0 invites an immediate retry into the same lockout)."""
    cool_off = get_cool_off(request)
    if cool_off is None:
        return 1
    last = None
    for attempts in AxesProxyHandler.get_implementation().get_user_attempts(request, credentials):
        latest = attempts.aggregate(latest=Max("attempt_time"))["latest"]
        last = latest if last is None or (latest is not None and latest > last) else last
    if last is None:
        return max(1, math.ceil(cool_off.total_seconds()))
    return max(1, math.ceil((last + cool_off - timezone.now()).total_seconds()))


def lockout_response(request, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """django-axes' lockout answer (AXES_LOCKOUT_CALLABLE) with the Retry-After a client needs, as DRF's throttles
    give theirs: the login page, the admin's login. The token endpoint answers its own (token_api.py)."""
    seconds = lockout_seconds_left(request, credentials)
    if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
        response = JsonResponse({"failure_limit": get_failure_limit(request, credentials),
                                 "username": get_client_username(request, credentials) or "",
                                 "retry_after_seconds": seconds}, status=settings.AXES_HTTP_RESPONSE_CODE)
    else:
        response = HttpResponse(f"{get_lockout_message()} Try again in {seconds} s.",
                                status=settings.AXES_HTTP_RESPONSE_CODE, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response
