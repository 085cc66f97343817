"""The pages' controls take each field once: a form that sends one twice (`symbol=NQ&symbol=ES`) is a 400 naming it,
changes nothing and is audited as a refused attempt, as the API answers a repeated field. Django's forms read the last
value, so the page acted on a value the form did not show."""
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlcore.models import Retraining
from monitoring.models import Alert, MetricSnapshot
from monitoring.tests.edges.test_page_controls_audit import ACTIONS, rows  # noqa: F401 (the fixture)
from trading.models import AuditEvent, BacktestRun

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _doubled(body: dict) -> tuple[str, dict]:
    """The body with its first field sent twice (a field of no meaning to the action when it takes none)."""
    name = next(iter(body), "next")
    return name, {**body, name: [body.get(name, "/monitoring/"), "ES" if name == "symbol" else "/elsewhere/"]}


@pytest.mark.parametrize("control, url, body", ACTIONS)
def test_a_field_sent_twice_to_a_page_control_is_a_400_naming_it(rows, control, url, body):  # noqa: F811
    admin = get_user_model().objects.create_superuser("root", password="pw-root-1")
    client = Client()
    client.force_login(admin)
    retrainings = Retraining.objects.count()
    name, doubled = _doubled(body)

    response = client.post(url.format(**rows), doubled)

    assert response.status_code == 400, (url, response.status_code)
    assert response.content.decode() == f"{name}: sent 2 times; send it once."
    assert Alert.objects.get(pk=rows["alert"]).status == "open"
    assert Retraining.objects.count() == retrainings
    assert Retraining.objects.get(pk=rows["retraining"]).status == Retraining.Status.PROPOSED
    assert not MetricSnapshot.objects.exists() and not BacktestRun.objects.exists()
    [refused] = AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED)
    assert refused.details["control"] == control and "400" in refused.details["reason"]


@pytest.mark.parametrize("control, url", [("alert_acknowledge", "/monitoring/alerts/{alert}/acknowledge/"),
                                          ("retraining_reject", "/monitoring/retrainings/{retraining}/reject/")])
@pytest.mark.parametrize("note", ["seen\u0000", "seen \u001b[2J"])
def test_a_pages_note_with_a_control_character_is_refused_with_a_message_and_changes_nothing(rows, control, url,  # noqa: F811
                                                                                            note):
    admin = get_user_model().objects.create_superuser("root", password="pw-root-1")
    client = Client()
    client.force_login(admin)

    response = client.post(url.format(**rows), {"note": note}, follow=True)

    assert response.status_code == 200  # back on the page, which says why (a NUL was a 500 from PostgreSQL)
    assert "Control character U+00" in response.content.decode()
    assert Alert.objects.get(pk=rows["alert"]).status == "open"
    assert Retraining.objects.get(pk=rows["retraining"]).status == Retraining.Status.PROPOSED
    [refused] = AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED)
    assert refused.details["control"] == control and "Control character" in refused.details["reason"]
