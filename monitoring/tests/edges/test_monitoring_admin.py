"""Monitoring in the admin: every page loads; alert rules are editable but their code is fixed once made; alerts
are acknowledged by an action that goes through the service (audited, permission-checked); snapshots, webhook
deliveries are read-only."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from monitoring import services
from monitoring.models import Alert, AlertRule, MetricSnapshot, WebhookDelivery
from monitoring.tests.snapshots import active_version, make_snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def rows(nq):
    version = active_version(nq)
    snapshot = make_snapshot(nq, version)
    rule = AlertRule.objects.get_or_create(code="drift", defaults={"name": "Drift", "threshold": 0.25})[0]
    now = timezone.now()
    alert = Alert.objects.create(rule=rule, cause="drift:NQ 1m", instrument=nq, timeframe="1m", version=version,
                                 severity="warning", message="NQ 1m: 2 input(s) drifted", value=0.3, threshold=0.25,
                                 opened_at=now - timedelta(minutes=3), last_seen_at=now)
    delivery = WebhookDelivery.objects.create(alert=alert, event="opened", url="https://hooks.example/x")
    return {"snapshot": snapshot, "rule": rule, "alert": alert, "delivery": delivery}


MODELS = {"snapshot": "metricsnapshot", "rule": "alertrule", "alert": "alert", "delivery": "webhookdelivery"}


@pytest.mark.parametrize("name", list(MODELS))
def test_each_admin_page_loads(admin_client, rows, name):
    model = MODELS[name]

    changelist = admin_client.get(f"/admin/monitoring/{model}/")
    change = admin_client.get(f"/admin/monitoring/{model}/{rows[name].pk}/change/")

    assert changelist.status_code == 200 and change.status_code == 200
    assert f"/admin/monitoring/{model}/{rows[name].pk}/change/" in changelist.content.decode()


@pytest.mark.parametrize("name", ["snapshot", "alert", "delivery"])
def test_monitorings_own_records_are_read_only(admin_client, rows, name):
    model = MODELS[name]

    page = admin_client.get(f"/admin/monitoring/{model}/{rows[name].pk}/change/").content.decode()

    assert 'name="_save"' not in page
    assert admin_client.get(f"/admin/monitoring/{model}/add/").status_code == 403
    assert admin_client.post(f"/admin/monitoring/{model}/{rows[name].pk}/delete/", {"post": "yes"}).status_code == 403


def test_alert_filters_by_status_severity_and_rule(admin_client, rows):
    page = admin_client.get("/admin/monitoring/alert/?status=open&severity=warning&rule__id__exact="
                            f"{rows['rule'].pk}").content.decode()

    assert f"/admin/monitoring/alert/{rows['alert'].pk}/change/" in page
    assert admin_client.get("/admin/monitoring/alert/?status=resolved").content.decode().count(
        f"/admin/monitoring/alert/{rows['alert'].pk}/change/") == 0


def test_a_rule_is_edited_but_its_code_stays(admin_client, rows):
    rule = rows["rule"]
    url = f"/admin/monitoring/alertrule/{rule.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="code"' not in page  # shown, not editable

    response = admin_client.post(url, {
        "code": "renamed", "name": rule.name, "description": rule.description, "severity": "critical",
        "threshold": "0.4", "enabled": "on", "queue_retraining": "on"})

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.code, rule.severity, rule.threshold, rule.enabled, rule.queue_retraining) == (
        "drift", "critical", 0.4, True, True)


def test_a_new_rule_takes_its_code(admin_client, db):
    assert 'name="code"' in admin_client.get("/admin/monitoring/alertrule/add/").content.decode()


def test_the_acknowledge_action_goes_through_the_service(admin_client, admin_user, rows):
    alert = rows["alert"]

    response = admin_client.post("/admin/monitoring/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]},
                                 follow=True)

    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by == admin_user and alert.acknowledged_at is not None
    assert f"Acknowledged: #{alert.pk}." in response.content.decode()


def test_acknowledging_twice_keeps_the_first_and_says_so(admin_client, rows, django_user_model):
    alert = rows["alert"]
    first = django_user_model.objects.create_superuser("first", password="x")
    services.alert_acknowledge(alert_id=alert.pk, user=first, note="mine")

    response = admin_client.post("/admin/monitoring/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]},
                                 follow=True)

    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.acknowledgement_note) == (first, "mine")
    assert re.search(rf"Not open, left as they were: #{alert.pk} \(acknowledged\)", response.content.decode())


def test_staff_without_the_permission_is_not_offered_the_action_and_cannot_run_it(rows, django_user_model):
    alert = rows["alert"]
    staff = django_user_model.objects.create_user("looker", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client = Client()
    client.force_login(staff)

    assert 'value="acknowledge"' not in client.get("/admin/monitoring/alert/").content.decode()
    client.post("/admin/monitoring/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})

    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN and alert.acknowledged_by is None


def test_snapshots_are_listed_with_their_score(admin_client, rows):
    snapshot = rows["snapshot"]

    page = admin_client.get("/admin/monitoring/metricsnapshot/").content.decode()

    assert f"{snapshot.health_score}" in page
    assert MetricSnapshot.objects.count() == 1
