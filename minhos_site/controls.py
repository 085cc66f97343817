"""Every attempt at a control through the API or a page is audited when it is refused, whatever refuses it.

The services record the refusals they decide (a missing permission, a bad value, a row that is not there). What they
never see is recorded here, in one place around each control's edge: the framework's authentication and permission
checks (a login missing, a CSRF token missing), a permission checked at the edge, a body refused before the service,
a throttle, and a crash. An API view declares its controls (`controls = {"POST": "kill_switch"}`); a page's action
is wrapped in `audited_control("snapshot")`. One record per refused attempt: none is written again here for an
attempt a service already recorded.
"""
import math
from functools import wraps

from django.http import HttpResponse

from trading import services

from .api_auth import AnonRateThrottle
from .client_address import client_address

_REASON_MAX = 1000


def _reason(data) -> str:
    """Why, from a refusal's body as DRF answers it ({"detail": ...} or {field: [messages]})."""
    if isinstance(data, dict):
        if "detail" in data and len(data) <= 2:
            return str(data["detail"])
        return "; ".join(f"{name}: {' '.join(map(str, value)) if isinstance(value, list) else value}"
                         for name, value in data.items())[:_REASON_MAX]
    return str(data)[:_REASON_MAX]


def _account_id(kwargs: dict) -> int | None:
    value = kwargs.get("account_id")
    return value if isinstance(value, int) else None


class AuditedControls:
    """Mixin for APIView: `controls` maps an HTTP method to the control it attempts (an audit action, or a name
    such as "retraining_start"). A refused attempt (a 4xx or 5xx answer, or a crash) that no service recorded is
    audited with the user DRF authenticated (none when the credentials failed), the address, the URL's ids and
    the reason."""

    controls: dict[str, str] = {}

    def check_permissions(self, request):
        # On a control the rate limits come before the permission (DRF's own order is the reverse): a client refused
        # on every attempt is limited too, and so is what its refusals write to the audit trail.
        if request.method in self.controls:
            self.check_throttles(request)
            self._throttles_checked = True
        super().check_permissions(request)

    def check_throttles(self, request):
        if not getattr(self, "_throttles_checked", False):
            super().check_throttles(request)

    def dispatch(self, request, *args, **kwargs):
        control = self.controls.get(request.method)
        if control is None:
            return super().dispatch(request, *args, **kwargs)
        with services.control_attempt(control=control, user=lambda: getattr(self.request, "user", None),
                                      client_address=client_address(request), account_id=_account_id(kwargs),
                                      details={"via": "api", "method": request.method, "path": request.path[:200],
                                               **kwargs}) as attempt:
            response = super().dispatch(request, *args, **kwargs)
            # A throttled attempt (429) was never weighed: Django's request log has its line, and the audit trail
            # is not written at whatever rate a client cares to send.
            if response.status_code >= 400 and response.status_code != 429:
                attempt.refuse(_reason(getattr(response, "data", None) or response.reason_phrase),
                               status=response.status_code)
        return response


def audited_control(control: str, *, methods: tuple[str, ...] = ("POST",)):
    """Decorator of a page's action (a Django view; the attempt is a request by one of `methods`): a refused attempt
    is audited once, whoever refuses it: not logged in, a permission checked by the view (PermissionDenied), a 4xx
    answer, a crash, or the view saying so (`services.control_refused(reason)`, for refusals it shows as a
    message)."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return view(request, *args, **kwargs)
            if not request.user.is_authenticated:
                # The API's limit for requests without a login, in the same count: each refused attempt writes an
                # audit record, and the pages have no other limit (a CSRF token is there for anyone to take).
                throttle = AnonRateThrottle()
                if not throttle.allow_request(request, None):
                    response = HttpResponse("Too many attempts without a login from this address; try again later.",
                                            status=429, content_type="text/plain")
                    response["Retry-After"] = str(max(1, math.ceil(throttle.wait() or 1)))
                    return response
            with services.control_attempt(control=control, user=lambda: request.user,
                                          client_address=client_address(request),
                                          details={"via": "page", "method": request.method,
                                                   "path": request.path[:200], **kwargs}) as attempt:
                if not request.user.is_authenticated:
                    attempt.refuse("Not logged in.")
                response = view(request, *args, **kwargs)
                if response.status_code >= 400:
                    attempt.refuse(f"Answered {response.status_code} {response.reason_phrase}.",
                                   status=response.status_code)
            return response

        return wrapped

    return decorate
