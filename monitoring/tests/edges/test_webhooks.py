"""Alert webhooks against a real local HTTP server: the JSON body and its HMAC signature, retries with backoff on a
failing answer, giving up after the last try, sent once only; and queueing that never waits for the webhook."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.exceptions import Retry
from django.db import transaction
from django.utils import timezone

from minhos_site.celery import app
from monitoring import tasks, webhooks
from monitoring.models import Alert, AlertRule, WebhookDelivery
from trading.tests.decisions import model_version, user_with

SECRET = "a-shared-secret-for-the-test"


class Receiver:
    """A webhook receiver on a free local port: answers each POST with the next scripted status (the last one
    repeats), records what it got; `hold` makes it wait for `release` before answering."""

    def __init__(self, statuses=(200,), hold: bool = False):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.received = threading.Event()
        self.release = threading.Event()
        self.answered = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                receiver.received.set()
                receiver.release.wait(timeout=30)
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.answered.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/minhos"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory(settings):
    made = []

    def make(statuses=(200,), hold=False):
        receiver = Receiver(statuses, hold=hold)
        made.append(receiver)
        settings.MINHOS_ALERT_WEBHOOK_URL = receiver.url
        settings.MINHOS_ALERT_WEBHOOK_SECRET = SECRET
        settings.MINHOS_ALERT_WEBHOOK_TIMEOUT = 5.0
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def alert(nq):
    rule = AlertRule.objects.get(code="drift")
    now = timezone.now()
    return Alert.objects.create(rule=rule, cause="drift:NQ:1m", instrument=nq, timeframe="1m",
                                version=model_version(nq), severity="warning", message="PSI 0.41 on ret_1",
                                value=0.41, threshold=0.25, opened_at=now, last_seen_at=now)


@pytest.fixture
def deployment_celery():
    """Tasks queued for workers, as in deployment (the suite otherwise runs them inline)."""
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = previous


def delivery_for(alert, event="opened", url="http://127.0.0.1:9/unused") -> WebhookDelivery:
    return WebhookDelivery.objects.create(alert=alert, event=event, url=url)


def fresh(delivery) -> WebhookDelivery:
    return WebhookDelivery.objects.get(pk=delivery.pk)


pytestmark = pytest.mark.embedded


# --- one try: the body, the signature, the answer -------------------------------------------------------------

@pytest.mark.django_db
def test_a_notice_is_posted_signed_and_recorded_as_sent(receiver_factory, alert):
    receiver = receiver_factory()
    delivery = delivery_for(alert, url=receiver.url)

    attempt = webhooks.webhook_deliver(delivery.pk)

    assert attempt == webhooks.Attempt("sent")
    [request] = receiver.requests
    assert request["path"] == "/hooks/minhos"
    headers, raw = request["headers"], request["body"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-MinHOS-Event"] == "opened"
    assert headers["X-MinHOS-Delivery"] == str(delivery.pk)
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-MinHOS-Signature"], expected)
    body = json.loads(raw)
    assert (body["event"], body["delivery_id"]) == ("opened", delivery.pk)
    assert body["alert"] | {"opened_at": None, "last_seen_at": None} == {
        "id": alert.pk, "rule": "drift", "cause": "drift:NQ:1m", "severity": "warning", "status": "open",
        "message": "PSI 0.41 on ret_1", "value": 0.41, "threshold": 0.25, "instrument": "NQ", "timeframe": "1m",
        "version": alert.version_id, "opened_at": None, "last_seen_at": None, "times_seen": 1,
        "resolved_at": None, "resolution": "", "acknowledged_by": None, "acknowledged_at": None,
        "acknowledgement_note": ""}
    assert body["alert"]["opened_at"] == alert.opened_at.isoformat().replace("+00:00", "Z")
    assert body["sent_at"].endswith("Z")
    row = fresh(delivery)
    assert (row.status, row.attempts, row.response_status, row.last_error) == ("sent", 1, 200, "")
    assert row.sent_at is not None


@pytest.mark.django_db
def test_a_resolved_notice_says_who_acknowledged_and_when_it_resolved(receiver_factory, alert):
    receiver = receiver_factory()
    now = timezone.now()
    Alert.objects.filter(pk=alert.pk).update(status="resolved", resolved_at=now, resolution="cleared",
                                             acknowledged_by=user_with("oncall"), acknowledged_at=now,
                                             acknowledgement_note="looking")

    webhooks.webhook_deliver(delivery_for(alert, "resolved", url=receiver.url).pk)

    [request] = receiver.requests
    assert request["headers"]["X-MinHOS-Event"] == "resolved"
    body = json.loads(request["body"])["alert"]
    assert (body["status"], body["resolution"], body["acknowledged_by"], body["acknowledgement_note"]) == (
        "resolved", "cleared", "oncall", "looking")
    assert body["resolved_at"] == body["acknowledged_at"] == now.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_without_a_secret_no_signature_is_sent(receiver_factory, alert, settings):
    receiver = receiver_factory()
    settings.MINHOS_ALERT_WEBHOOK_SECRET = ""

    assert webhooks.webhook_deliver(delivery_for(alert, url=receiver.url).pk).outcome == "sent"
    assert "X-MinHOS-Signature" not in receiver.requests[0]["headers"]


@pytest.mark.django_db
def test_a_sent_notice_is_never_sent_again(receiver_factory, alert):
    receiver = receiver_factory()
    delivery = delivery_for(alert, url=receiver.url)
    webhooks.webhook_deliver(delivery.pk)

    assert webhooks.webhook_deliver(delivery.pk) == webhooks.Attempt("skipped")
    assert len(receiver.requests) == 1
    assert fresh(delivery).attempts == 1


# --- failures: retries with backoff, then giving up -----------------------------------------------------------

@pytest.mark.django_db
def test_a_500_is_retried_with_growing_pauses_then_given_up_after_the_last_try(receiver_factory, alert):
    receiver = receiver_factory(statuses=(500,))
    delivery = delivery_for(alert, url=receiver.url)

    attempts = [webhooks.webhook_deliver(delivery.pk) for _ in range(webhooks.MAX_ATTEMPTS)]

    assert [a.retry_in for a in attempts] == [2, 4, 8, 16, 32, None]
    assert [a.outcome for a in attempts] == ["retry"] * 5 + ["failed"]
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS == 6
    row = fresh(delivery)
    assert (row.status, row.attempts, row.response_status, row.sent_at) == ("failed", 6, 500, None)
    assert row.last_error.startswith("HTTP 500")
    # Given up is final: a late retry message posts nothing.
    assert webhooks.webhook_deliver(delivery.pk) == webhooks.Attempt("skipped")
    assert len(receiver.requests) == 6


@pytest.mark.django_db
def test_a_retry_that_succeeds_is_sent_and_keeps_its_count(receiver_factory, alert):
    receiver = receiver_factory(statuses=(503, 502, 204))
    delivery = delivery_for(alert, url=receiver.url)

    outcomes = [webhooks.webhook_deliver(delivery.pk).outcome for _ in range(4)]

    assert outcomes == ["retry", "retry", "sent", "skipped"]
    row = fresh(delivery)
    assert (row.status, row.attempts, row.response_status, row.last_error) == ("sent", 3, 204, "")
    # Each try posts the same notice, signed afresh (sent_at changes).
    assert len({json.loads(r["body"])["delivery_id"] for r in receiver.requests}) == 1


@pytest.mark.django_db
def test_nobody_listening_is_a_failed_try_with_the_reason(alert, settings):
    settings.MINHOS_ALERT_WEBHOOK_TIMEOUT = 2.0
    delivery = delivery_for(alert, url="http://127.0.0.1:9/")  # the discard port: nothing listens

    attempt = webhooks.webhook_deliver(delivery.pk)

    assert (attempt.outcome, attempt.retry_in) == ("retry", 2)
    row = fresh(delivery)
    assert row.status == "pending" and row.attempts == 1 and row.response_status is None
    assert row.last_error.startswith("cannot connect:")


@pytest.mark.django_db
def test_a_webhook_that_does_not_answer_in_time_is_a_failed_try(receiver_factory, alert, settings):
    receiver = receiver_factory(hold=True)  # answers only when released, at teardown
    settings.MINHOS_ALERT_WEBHOOK_TIMEOUT = 0.3
    delivery = delivery_for(alert, url=receiver.url)

    attempt = webhooks.webhook_deliver(delivery.pk)

    assert attempt.outcome == "retry"
    assert fresh(delivery).last_error == "no answer within 0.3 s"
    assert receiver.received.is_set() and not receiver.answered.is_set()


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_counts_as_a_failed_try(receiver_factory, alert):
    receiver = receiver_factory(statuses=(302,))

    attempt = webhooks.webhook_deliver(delivery_for(alert, url=receiver.url).pk)

    assert attempt.outcome == "retry" and attempt.error.startswith("HTTP 302")
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_the_task_retries_after_the_backoff_and_returns_the_outcome(receiver_factory, alert, monkeypatch):
    receiver = receiver_factory(statuses=(500, 200))
    delivery = delivery_for(alert, url=receiver.url)
    countdowns = []

    def retry(countdown=None, **kwargs):
        countdowns.append(countdown)
        return Retry("retry", when=countdown)

    monkeypatch.setattr(tasks.alert_webhook_deliver, "retry", retry)

    with pytest.raises(Retry):
        tasks.alert_webhook_deliver.run(delivery.pk)
    assert tasks.alert_webhook_deliver.run(delivery.pk) == "sent"
    assert countdowns == [2]
    assert fresh(delivery).attempts == 2


# --- queueing: after commit, never in the caller's thread -----------------------------------------------------

@pytest.mark.django_db
def test_without_a_webhook_url_nothing_is_queued(alert, settings, django_capture_on_commit_callbacks):
    settings.MINHOS_ALERT_WEBHOOK_URL = ""

    with django_capture_on_commit_callbacks() as callbacks:
        assert webhooks.webhook_queue(alert_id=alert.pk, event="opened") is None

    assert callbacks == [] and not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_an_unknown_event_is_refused(alert, settings):
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/"

    with pytest.raises(ValueError, match="unknown webhook event 'closed'"):
        webhooks.webhook_queue(alert_id=alert.pk, event="closed")


@pytest.mark.django_db
def test_deployment_queues_the_task_on_the_monitoring_queue_after_commit(
        alert, settings, monkeypatch, deployment_celery, django_capture_on_commit_callbacks):
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **kwargs: sent.append((name, args)))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        delivery = webhooks.webhook_queue(alert_id=alert.pk, event="opened")
        again = webhooks.webhook_queue(alert_id=alert.pk, event="opened")
    assert sent == []  # nothing before the commit

    for callback in callbacks:
        callback()

    assert again.pk == delivery.pk and len(callbacks) == 1  # one delivery per alert and event, queued once
    assert sent == [("monitoring.tasks.alert_webhook_deliver", (delivery.pk,))]
    route = app.amqp.router.route({}, "monitoring.tasks.alert_webhook_deliver")
    assert route["queue"].name == "monitoring"
    assert (delivery.url, delivery.status, delivery.attempts) == ("http://127.0.0.1:9/hook", "pending", 0)


@pytest.mark.django_db
def test_a_broker_that_cannot_take_the_task_leaves_the_notice_pending_and_the_caller_unharmed(
        alert, settings, monkeypatch, deployment_celery, django_capture_on_commit_callbacks):
    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(app, "send_task", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.webhook_queue(alert_id=alert.pk, event="resolved")

    assert fresh(delivery).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_queueing_returns_before_a_hanging_webhook_answers(receiver_factory, settings):
    """Embedded mode (tasks inline): the notice goes out from a thread of its own, so the caller's transaction
    commits and returns while the webhook is still holding the request."""
    from trading.tests.factories import InstrumentFactory

    receiver = receiver_factory(hold=True)
    nq = InstrumentFactory(symbol="NQ")
    rule, _ = AlertRule.objects.get_or_create(code="drift", defaults={"name": "Drift", "threshold": 0.25})
    assert app.conf.task_always_eager  # as in embedded mode, and as the suite runs tasks

    with transaction.atomic():
        now = timezone.now()
        alert = Alert.objects.create(rule=rule, cause="drift:NQ:1m", instrument=nq, timeframe="1m",
                                     severity="warning", message="drift", opened_at=now, last_seen_at=now)
        delivery = webhooks.webhook_queue(alert_id=alert.pk, event="opened")
    # Returned, committed, and the webhook has not answered (it cannot: it waits for the release below).

    assert receiver.received.wait(timeout=30), "the notice was never posted"
    assert not receiver.answered.is_set()
    [worker] = [t for t in threading.enumerate() if t.name == f"minhos-webhook-{delivery.pk}"]
    assert worker is not threading.current_thread() and worker.daemon
    receiver.release.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    row = fresh(delivery)
    assert (row.status, row.attempts, row.response_status) == ("sent", 1, 200)


@pytest.mark.django_db
def test_a_notice_left_pending_by_a_broker_outage_is_handed_over_again_by_the_scheduled_snapshot(
        alert, settings, monkeypatch, deployment_celery):
    from datetime import timedelta

    settings.MINHOS_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    stalled, recent = delivery_for(alert, "opened"), delivery_for(alert, "resolved")
    WebhookDelivery.objects.filter(pk=stalled.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **kwargs: sent.append((name, args)))
    tasks.snapshot_all.run()
    assert sent == [("monitoring.tasks.alert_webhook_deliver", (stalled.pk,))]  # the fresh one is left alone
