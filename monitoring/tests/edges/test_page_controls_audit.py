"""The pages' controls (acknowledge an alert, take a snapshot, start, approve or reject a retraining, roll back, start
a backtest): every refused attempt is audited exactly once: a read-only user's (403), one not logged in (sent to the
login page), and one the page refuses with a message (an unknown alert, a market it cannot snapshot)."""
import pytest
from django.test import Client
from django.utils import timezone

from mlcore.models import Retraining
from monitoring.models import Alert, AlertRule
from monitoring.tests.snapshots import active_version
from trading.models import AuditEvent
from trading.tests.decisions import user_with

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ADDRESS = "192.0.2.44"


@pytest.fixture
def rows(nq):
    version = active_version(nq)
    rule = AlertRule.objects.get_or_create(code="drift", defaults={"name": "Drift", "threshold": 0.25})[0]
    now = timezone.now()
    alert = Alert.objects.create(rule=rule, cause="drift:NQ 1m", instrument=nq, timeframe="1m", version=version,
                                 severity="warning", message="drifted", value=0.3, threshold=0.25, opened_at=now,
                                 last_seen_at=now)
    retraining = Retraining.objects.create(instrument=nq, timeframe="1m", trigger="manual", requested_by="lead",
                                           requested_at=now, status=Retraining.Status.PROPOSED, champion=version,
                                           challenger=version)
    return {"alert": alert.pk, "retraining": retraining.pk}


ACTIONS = [
    ("alert_acknowledge", "/monitoring/alerts/{alert}/acknowledge/", {"note": "seen"}),
    ("snapshot", "/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "1m"}),
    ("retraining_start", "/monitoring/retrain/", {"symbol": "NQ", "timeframe": "1m"}),
    ("retraining_approve", "/monitoring/retrainings/{retraining}/approve/", {}),
    ("retraining_reject", "/monitoring/retrainings/{retraining}/reject/", {"note": "no"}),
    ("model_rollback", "/monitoring/rollback/", {"symbol": "NQ", "timeframe": "1m"}),
    ("backtest_start", "/backtests/", {"symbol": "NQ", "timeframe": "1m", "from": "2024-05-07", "to": "2024-05-08"}),
]


def _refusals():
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).select_related("user"))


@pytest.mark.parametrize("control, url, body", ACTIONS)
def test_a_read_only_users_attempt_at_each_page_control_is_refused_and_audited_once(rows, control, url, body):
    reader = user_with("reader")
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(reader)
    response = client.post(url.format(**rows), body)
    assert response.status_code == 403, (url, response.status_code)
    [event] = _refusals()
    assert event.user == reader and event.client_address == ADDRESS
    assert event.details["control"] == control and "permission" in event.details["reason"], event.details


@pytest.mark.parametrize("control, url, body", ACTIONS)
def test_an_attempt_at_each_page_control_without_a_login_is_refused_and_audited_once(rows, control, url, body):
    response = Client(REMOTE_ADDR=ADDRESS).post(url.format(**rows), body)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    [event] = _refusals()
    assert event.user is None and event.client_address == ADDRESS
    assert event.details["control"] == control and event.details["reason"] == "Not logged in."


@pytest.mark.parametrize("control, url, body, reason", [
    ("alert_acknowledge", "/monitoring/alerts/999999/acknowledge/", {}, "no alert #999999"),
    ("snapshot", "/monitoring/snapshot/", {"symbol": "NOPE", "timeframe": "1m"}, "unknown symbol"),
])
def test_a_refusal_a_page_shows_as_a_message_is_audited_once(rows, control, url, body, reason):
    operator = user_with("operator", "monitoring.acknowledge_alert")
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(operator)
    assert client.post(url, body).status_code == 302
    [event] = _refusals()
    assert event.user == operator and event.details["control"] == control and reason in event.details["reason"]


def test_a_retraining_refusal_is_audited_by_the_service_whichever_door(rows, nq):
    """Approving twice: the second is refused (not proposed any more), and recorded once, by the service."""
    from mlcore import retraining

    lead = user_with("lead", "mlcore.promote_modelversion")
    Retraining.objects.filter(pk=rows["retraining"]).update(status=Retraining.Status.REJECTED)
    with pytest.raises(retraining.RetrainingRefused):
        retraining.retraining_approve(retraining_id=rows["retraining"], user=lead, via="admin",
                                      client_address=ADDRESS)
    [event] = _refusals()
    assert event.details["control"] == "retraining_approve" and "nothing to approve" in event.details["reason"]
    assert event.details["retraining"] == rows["retraining"] and event.details["via"] == "admin"


def test_attempts_without_a_login_are_limited_as_the_apis_so_the_audit_trail_grows_at_the_limit_at_most(rows,
                                                                                                        settings):
    """Each refused attempt writes an audit record, and the pages had no limit: anyone could add rows at will."""
    settings.MINHOS_THROTTLE_RATES = {**settings.MINHOS_THROTTLE_RATES, "anon": "3/minute"}
    client = Client(REMOTE_ADDR=ADDRESS)

    answers = [client.post("/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "1m"}) for _ in range(6)]

    assert [a.status_code for a in answers] == [302] * 3 + [429] * 3
    assert int(answers[-1]["Retry-After"]) >= 1
    assert len(_refusals()) == 3
    other = Client(REMOTE_ADDR="192.0.2.45")  # per address
    assert other.post("/monitoring/snapshot/", {"symbol": "NQ", "timeframe": "1m"}).status_code == 302
