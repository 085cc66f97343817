"""Alert notices posted to the configured webhook: signed JSON, a timeout per try, retries with backoff, sent once.

`webhook_queue` records the delivery and hands it over once the caller's transaction commits, never running it in
the caller's thread: to the `monitoring` queue's workers in deployment, to a background thread in embedded mode
(where Celery tasks would run inline). A slow or failing webhook therefore never delays a snapshot, a prediction or
a recommendation. `webhook_deliver` makes one try; the task (monitoring.tasks) retries it after BACKOFF_SECONDS.

What is posted (Content-Type application/json):

    {"event": "opened" | "resolved", "delivery_id": 12,
     "alert": {"id", "rule", "cause", "severity", "status", "message", "value", "threshold", "instrument",
               "timeframe", "version", "opened_at", "last_seen_at", "times_seen", "resolved_at", "resolution",
               "acknowledged_by", "acknowledged_at", "acknowledgement_note"},
     "sent_at": "2026-11-30T09:50:12.345678Z"}

with the headers X-MinHOS-Event (the event), X-MinHOS-Delivery (the delivery id: a receiver can drop a repeat, which
only a crash between its answer and our record of it can cause) and, when MINHOS_ALERT_WEBHOOK_SECRET is set,
X-MinHOS-Signature: sha256=<hex HMAC-SHA256 of the raw body under the secret>.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from minhos_site.celery import app

from .models import Alert, WebhookDelivery

logger = logging.getLogger(__name__)

TASK_NAME = "monitoring.tasks.alert_webhook_deliver"
# The pause before each retry: the first try, then one after each pause; the delivery is given up after the last.
BACKOFF_SECONDS = (2, 4, 8, 16, 32)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
SIGNATURE_HEADER = "X-MinHOS-Signature"
EVENT_HEADER = "X-MinHOS-Event"
DELIVERY_HEADER = "X-MinHOS-Delivery"


@dataclass(frozen=True)
class Attempt:
    """What one call of `webhook_deliver` did."""

    outcome: str  # "sent", "retry" (failed, to be tried again after retry_in s), "failed" (given up), "skipped"
    retry_in: float | None = None
    error: str = ""


def webhook_queue(*, alert_id: int, event: str, queue: str | None = None) -> WebhookDelivery | None:
    """Record the notice of `event` ("opened" or "resolved") for the alert and hand it over once the transaction
    commits: to the `monitoring` queue, or to `queue` (the worker-down alert's notice, when monitoring's workers are
    the ones down). None when no webhook is configured. One delivery per alert and event: a second call for the same
    pair queues nothing (a notice sent, given up or already queued is not sent again)."""
    url = settings.MINHOS_ALERT_WEBHOOK_URL
    if not url:
        return None
    if event not in WebhookDelivery.Event.values:
        raise ValueError(f"unknown webhook event {event!r}; use one of {', '.join(WebhookDelivery.Event.values)}")
    delivery, created = WebhookDelivery.objects.get_or_create(alert_id=alert_id, event=event, defaults={"url": url})
    if created:
        transaction.on_commit(lambda: _hand_over(delivery.pk, queue=queue), robust=True)
    return delivery


def _hand_over(delivery_id: int, *, queue: str | None = None) -> None:
    if app.conf.task_always_eager:
        # Embedded mode: tasks would run inline, in the caller's thread. A daemon thread of its own instead.
        threading.Thread(target=_deliver_with_retries, args=(delivery_id,), name=f"minhos-webhook-{delivery_id}",
                         daemon=True).start()
        return
    try:
        # Routed to the "monitoring" queue (CELERY_TASK_ROUTES) unless told otherwise; its retries stay where it ran.
        app.send_task(TASK_NAME, args=(delivery_id,), **({"queue": queue} if queue else {}))
    except Exception:  # the broker is away: the notice stays pending, and the caller carries on
        logger.exception("webhook delivery %s could not be queued; it stays pending", delivery_id)


def _deliver_with_retries(delivery_id: int) -> None:
    """Embedded mode's stand-in for the task and its retries, in a background thread."""
    try:
        while True:
            attempt = webhook_deliver(delivery_id)
            if attempt.retry_in is None:
                return
            time.sleep(attempt.retry_in)  # this thread's own backoff; nobody waits for it
    except Exception:
        logger.exception("webhook delivery %s failed", delivery_id)
    finally:
        connection.close()  # this thread's connection, opened by the ORM


def webhook_deliver(delivery_id: int) -> Attempt:
    """One try: post the notice unless it was sent or given up already. The attempt is claimed first (a conditional
    update of its count, so two workers handed the same delivery cannot both try it), and no transaction or lock is
    held while the webhook answers."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).values("status", "attempts", "event", "url",
                                                                     "alert_id").first()
    if delivery is None or delivery["status"] != WebhookDelivery.Status.PENDING:
        return Attempt("skipped")
    attempt = delivery["attempts"] + 1
    if attempt > MAX_ATTEMPTS:
        return Attempt("skipped")
    claimed = WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING,
                                             attempts=delivery["attempts"]).update(attempts=attempt)
    if not claimed:
        return Attempt("skipped")

    alert = Alert.objects.select_related("rule", "instrument", "acknowledged_by").get(pk=delivery["alert_id"])
    now = timezone.now()
    body = json.dumps(_payload(delivery_id, delivery["event"], alert, sent_at=now), separators=(",", ":")).encode()
    status, error = _post(delivery["url"], body, event=delivery["event"], delivery_id=delivery_id)

    if error == "":
        WebhookDelivery.objects.filter(pk=delivery_id).update(status=WebhookDelivery.Status.SENT, sent_at=now,
                                                              response_status=status, last_error="")
        logger.info("webhook %s of alert %s sent (try %d, HTTP %s)", delivery["event"], alert.pk, attempt, status)
        return Attempt("sent")
    gave_up = attempt >= MAX_ATTEMPTS
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDelivery.Status.FAILED if gave_up else WebhookDelivery.Status.PENDING, response_status=status,
        last_error=error[:2000])
    if gave_up:
        logger.error("webhook %s of alert %s given up after %d tries: %s", delivery["event"], alert.pk, attempt, error)
        return Attempt("failed", error=error)
    retry_in = BACKOFF_SECONDS[attempt - 1]
    logger.warning("webhook %s of alert %s failed (try %d of %d, again in %d s): %s", delivery["event"], alert.pk,
                   attempt, MAX_ATTEMPTS, retry_in, error)
    return Attempt("retry", retry_in=retry_in, error=error)


def _payload(delivery_id: int, event: str, alert: Alert, *, sent_at: datetime) -> dict:
    return {
        "event": event,
        "delivery_id": delivery_id,
        "alert": {
            "id": alert.pk,
            "rule": alert.rule.code,
            "cause": alert.cause,
            "severity": alert.severity,
            "status": alert.status,
            "message": alert.message,
            "value": alert.value,
            "threshold": alert.threshold,
            "instrument": alert.instrument.symbol if alert.instrument else None,
            "timeframe": alert.timeframe or None,
            "version": alert.version_id,
            "opened_at": _iso(alert.opened_at),
            "last_seen_at": _iso(alert.last_seen_at),
            "times_seen": alert.times_seen,
            "resolved_at": _iso(alert.resolved_at),
            "resolution": alert.resolution,
            "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by else None,
            "acknowledged_at": _iso(alert.acknowledged_at),
            "acknowledgement_note": alert.acknowledgement_note,
        },
        "sent_at": _iso(sent_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def signature(body: bytes, secret: str) -> str:
    """The X-MinHOS-Signature value of a body: what a receiver recomputes (and compares in constant time)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, *, event: str, delivery_id: int) -> tuple[int | None, str]:
    """(HTTP status or None, "" when a 2xx answered, else what went wrong). http.client rather than urllib: header
    names go out as written, and a redirect is an answer, not followed (a POST turned into a GET elsewhere would lose
    the notice)."""
    headers = {"Content-Type": "application/json", "User-Agent": "MinHOS-webhook/1", EVENT_HEADER: event,
               DELIVERY_HEADER: str(delivery_id)}
    secret = settings.MINHOS_ALERT_WEBHOOK_SECRET
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    timeout = settings.MINHOS_ALERT_WEBHOOK_TIMEOUT
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, f"not an http(s) URL: {url!r}"
    if parts.scheme == "https":
        client = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                             context=ssl.create_default_context())
    else:
        client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        client.request("POST", target, body=body, headers=headers)
        response = client.getresponse()
        status = response.status
        response.read(65536)  # a little of the answer, so the connection closes cleanly; its content is not used
    except TimeoutError:
        return None, f"no answer within {timeout:g} s"
    except ConnectionError as exc:  # refused, reset
        return None, f"cannot connect: {exc.strerror or exc}"
    except (OSError, http.client.HTTPException) as exc:  # an unknown host, a TLS failure, a malformed answer
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    if 200 <= status < 300:
        return status, ""
    return status, f"HTTP {status} {response.reason}".strip()


def webhook_requeue_stalled(*, older_than_seconds: float = 120.0) -> int:
    """Hand over again every delivery still pending long after it was made (the broker was away when it was queued,
    or a worker died with it): run by each scheduled snapshot. A delivery never goes out twice (each try claims
    itself first), so a second hand-over of one still in flight costs nothing."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stalled = list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, created_at__lt=cutoff)
                   .values_list("pk", flat=True)[:100])
    for delivery_id in stalled:
        _hand_over(delivery_id)
    return len(stalled)
