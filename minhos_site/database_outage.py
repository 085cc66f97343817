"""While the database cannot be reached, a request that needs it gets a 503 saying so (JSON under /api/, a short page
otherwise) instead of a 500 and a traceback per request; the outage is logged once when it starts and once when it
ends."""
from __future__ import annotations

import logging
import threading
import time

from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# While an outage is on, the database is tried at most this often (one SELECT 1, never more) to tell when it ends.
PROBE_SECONDS = 1.0
# Connection failures (no SQLSTATE: refused, reset, not accepting connections), class 08 (connection exception) and
# the server shutting sessions down (57P01-57P03). A deadlock or a statement timeout is not an outage: it stays a 500.
_UNREACHABLE_STATES = ("57P01", "57P02", "57P03")
RETRY_AFTER_SECONDS = 5
MESSAGE = ("The database cannot be reached, so nothing can be read or changed: the kill switch, approvals and every "
           "other control are stored there. No bar is settled or decided and no order is filled until it answers "
           "again (see /healthz).")


def is_database_unreachable(error: BaseException) -> bool:
    """Whether this error says the database (PostgreSQL) cannot be reached, rather than that a statement failed."""
    if isinstance(error, InterfaceError):  # the connection is closed
        return True
    if not isinstance(error, OperationalError) or connection.vendor != "postgresql":
        return False
    state = getattr(error.__cause__, "sqlstate", None)
    return state is None or state.startswith("08") or state in _UNREACHABLE_STATES


class _Outage:
    """The web process's view of a database outage: started by the first request that failed on it, ended by a
    probe that succeeds; each end told in one line."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started: float | None = None
        self.answered_503 = 0
        self.probed_at = 0.0

    def failed(self, error: BaseException, path: str) -> None:
        with self.lock:
            self.answered_503 += 1
            if self.started is not None:
                return
            self.started = self.probed_at = time.monotonic()
        cause = error.__cause__ or error
        logger.error("The database cannot be reached (%s: %s, during %s): requests that need it answer 503 until "
                     "it does; this is logged once, and once when it answers again.", type(cause).__name__,
                     str(cause).strip(), path)

    def probe_if_due(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.started is None or now - self.probed_at < PROBE_SECONDS:
                return
            self.probed_at = now
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except (OperationalError, InterfaceError):
            connection.close_if_unusable_or_obsolete()
            return
        with self.lock:
            if self.started is None:
                return
            down, answered = time.monotonic() - self.started, self.answered_503
            self.started, self.answered_503 = None, 0
        logger.warning("The database answers again after %.0f s (%d requests were answered 503 meanwhile).", down,
                       answered)


_outage = _Outage()


def database_unavailable_response(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": MESSAGE, "code": "database_unavailable"}, status=503)
    else:
        response = HttpResponse(f"503 Service Unavailable\n\n{MESSAGE}\n", status=503,
                                content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Already told (once per outage, above): Django's request logger would add a line per request.
    response._has_been_logged = True
    return response


class DatabaseOutageMiddleware:
    """First in MIDDLEWARE: a view (or a DRF authentication) that fails because the database is away answers 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        _outage.probe_if_due()
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_database_unreachable(exception):
            return None
        _outage.failed(exception, request.path)
        return database_unavailable_response(request)
