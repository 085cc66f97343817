"""The admin of the model registry: pages render, and promote / roll back work as actions."""
import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from mlcore.models import ModelVersion, Prediction, TrainingRun
from mlcore.registry import model_version_promote
from trading.models import AuditEvent
from trading.tests.factories import BarFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]

CHANGELIST = "/admin/mlcore/modelversion/"


def status_of(version) -> str:
    return ModelVersion.objects.get(pk=version.pk).status


def run_action(client, action: str, *versions):
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [v.pk for v in versions]}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def prediction(register, nq) -> Prediction:
    bar = BarFactory(instrument=nq)
    return Prediction.objects.create(instrument=nq, bar=bar, version=register(), p_long=0.6, p_short=0.4, side="long",
                                     confidence=0.6, agreement=1.0, members={}, latency_ms=2.0)


def test_version_changelist_renders_for_a_superuser(admin_client, register):
    version = register()

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert f'value="{version.pk}"' in response.content.decode()


def test_version_page_shows_the_out_of_sample_report(admin_client, register):
    version = register()

    response = admin_client.get(f"{CHANGELIST}{version.pk}/change/")

    assert response.status_code == 200
    assert "Out-of-sample report" in response.content.decode()
    assert "evaluation_bars" in response.content.decode()


def test_prediction_and_training_run_changelists_render_for_a_superuser(admin_client, prediction, nq):
    TrainingRun.objects.create(instrument=nq, timeframe="1m", preset="fast")

    predictions = admin_client.get("/admin/mlcore/prediction/")
    runs = admin_client.get("/admin/mlcore/trainingrun/")

    assert predictions.status_code == 200
    assert f'value="{prediction.pk}"' in predictions.content.decode()
    assert runs.status_code == 200


def test_versions_cannot_be_added_by_hand(admin_client):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_the_promote_action_makes_the_selected_version_active(admin_client, register):
    previous, version = register(), register()
    model_version_promote(version_id=previous.pk)

    messages = run_action(admin_client, "promote", version)

    assert messages == [f"v{version.pk} is now active for NQ 1m."]
    assert (status_of(previous), status_of(version)) == ("retired", "active")


def test_the_promote_action_refuses_more_than_one_version(admin_client, register):
    first, second = register(), register()

    messages = run_action(admin_client, "promote", first, second)

    assert messages == ["Select exactly one version to promote."]
    assert (status_of(first), status_of(second)) == ("candidate", "candidate")


def test_the_promote_action_reports_a_corrupted_version_and_the_active_one_stays(admin_client, register,
                                                                                 corrupt_artifact):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    corrupt_artifact(broken)

    messages = run_action(admin_client, "promote", broken)

    assert len(messages) == 1 and "is corrupted" in messages[0]
    assert (status_of(serving), status_of(broken)) == ("active", "candidate")


def test_the_roll_back_action_reactivates_the_previous_version(admin_client, register):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)

    messages = run_action(admin_client, "roll_back", second)

    assert messages == [f"v{first.pk} is active again for NQ 1m."]
    assert (status_of(first), status_of(second)) == ("active", "retired")


def test_promote_and_roll_back_actions_are_audited_as_the_admin_user(admin_client, admin_user, register,
                                                                     corrupt_artifact):
    first, second, broken = register(), register(), register()
    model_version_promote(version_id=first.pk)
    corrupt_artifact(broken)

    run_action(admin_client, "promote", second)
    run_action(admin_client, "roll_back", second)
    run_action(admin_client, "promote", broken)

    promote = AuditEvent.objects.get(action="model_promote", user=admin_user)
    rollback = AuditEvent.objects.get(action="model_rollback")
    refused = AuditEvent.objects.get(action="refused")
    assert (promote.state_before, promote.state_after, promote.client_address, promote.details["via"]) == (
        f"v{first.pk}", f"v{second.pk}", "127.0.0.1", "admin")
    assert (rollback.user, rollback.state_before, rollback.state_after) == (admin_user, f"v{second.pk}",
                                                                             f"v{first.pk}")
    assert (refused.user, refused.details["control"], refused.details["version_after"]) == (
        admin_user, "model_promote", broken.pk)


def test_staff_without_the_permission_cannot_run_the_promote_action(client, django_user_model, register):
    staff = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(staff)
    version = register()

    response = client.post(CHANGELIST, {"action": "promote", "_selected_action": [version.pk]}, follow=True)

    assert response.status_code == 200
    assert 'value="promote"' not in response.content.decode()
    assert status_of(version) == "candidate"
