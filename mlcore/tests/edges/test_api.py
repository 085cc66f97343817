"""The ML REST API: model versions (list, detail, promote, roll back behind a permission) and predictions."""
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from mlcore.models import ModelVersion, Prediction
from mlcore.registry import model_version_promote
from trading.models import AuditEvent
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="analyst", password="a-long-test-password-7")


@pytest.fixture
def promoter(django_user_model):
    user = django_user_model.objects.create_user(username="ml-lead", password="a-long-test-password-7")
    user.user_permissions.add(Permission.objects.get(codename="promote_modelversion", content_type__app_label="mlcore"))
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def status_of(version) -> str:
    return ModelVersion.objects.get(pk=version.pk).status


def make_prediction(version, bar, p_long: float) -> Prediction:
    return Prediction.objects.create(
        instrument=bar.instrument, bar=bar, version=version, p_long=p_long, p_short=1 - p_long,
        side="long" if p_long >= 0.5 else "short", confidence=max(p_long, 1 - p_long), agreement=0.8,
        members={"members": {"long": {}, "short": {}}, "meta_raw": {}}, latency_ms=1.5,
    )


# --- authentication and permission -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/model-versions/", "/api/model-versions/1/", "/api/predictions/?symbol=NQ"])
def test_anonymous_reads_are_refused(url):
    response = APIClient().get(url)

    assert response.status_code in (401, 403)
    assert response.json()["detail"] == "Authentication credentials were not provided."


def test_anonymous_promote_and_rollback_are_refused_and_change_nothing(register):
    version = register()

    assert APIClient().post(f"/api/model-versions/{version.pk}/promote/").status_code in (401, 403)
    assert APIClient().post("/api/model-versions/rollback/", {"symbol": "NQ"}).status_code in (401, 403)
    assert status_of(version) == "candidate"


def test_promote_without_the_permission_is_403_naming_it_and_changes_nothing(register, user):
    version = register()

    response = client_for(user).post(f"/api/model-versions/{version.pk}/promote/")

    assert response.status_code == 403
    assert "mlcore.promote_modelversion" in response.json()["detail"]
    assert status_of(version) == "candidate"
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.user, refused.details["control"], refused.details["via"]) == (
        "refused", user, "model_promote", "api")


def test_rollback_without_the_permission_is_403_and_changes_nothing(register, user):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)

    response = client_for(user).post("/api/model-versions/rollback/", {"symbol": "NQ"}, format="json")

    assert response.status_code == 403
    assert (status_of(first), status_of(second)) == ("retired", "active")


# --- listing and detail ----------------------------------------------------------------------------------------


def test_version_list_is_newest_first_with_metrics_and_artifacts(register, user):
    first, second = register(), register()

    response = client_for(user).get("/api/model-versions/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [v["id"] for v in results] == [second.pk, first.pk]
    listed = results[1]
    assert (listed["symbol"], listed["timeframe"], listed["status"], listed["preset"]) == ("NQ", "1m", "candidate",
                                                                                          "fast")
    assert listed["metrics"]["long"]["meta"]["log_loss"] == first.metrics["long"]["meta"]["log_loss"]
    assert set(listed["metrics"]["short"]) >= {"members", "meta", "baselines", "calibration", "verdict"}
    assert listed["artifacts"] == first.artifacts
    assert listed["edge_statement"] == first.edge_statement


def test_version_list_filters_by_symbol_and_status(register, user):
    es = InstrumentFactory(symbol="ES")
    active, candidate, other_market = register(), register(), register(instrument=es)
    model_version_promote(version_id=active.pk)
    client = client_for(user)

    def ids(**query):
        response = client.get("/api/model-versions/", query)
        assert response.status_code == 200
        return [v["id"] for v in response.json()["results"]]

    assert ids(symbol="NQ") == [candidate.pk, active.pk]
    assert ids(symbol="ES") == [other_market.pk]
    assert ids(status="active") == [active.pk]
    assert ids(symbol="NQ", status="candidate") == [candidate.pk]
    assert ids(symbol="ZZZ") == []


def test_an_unknown_status_filter_is_a_400_naming_the_field(user):
    response = client_for(user).get("/api/model-versions/", {"status": "shiny"})

    assert response.status_code == 400
    assert "status" in response.json()


def test_version_detail_shows_one_version_with_its_report(register, user):
    version = register()

    response = client_for(user).get(f"/api/model-versions/{version.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == version.pk
    assert body["feature_names"] == version.feature_names
    assert body["label_settings"] == version.label_settings
    assert body["metrics"]["long"]["verdict"] == version.metrics["long"]["verdict"]


def test_version_detail_of_an_unknown_id_is_404_naming_it(user):
    response = client_for(user).get("/api/model-versions/424242/")

    assert response.status_code == 404
    assert "424242" in response.json()["detail"]


# --- promote and roll back -------------------------------------------------------------------------------------


def test_promote_with_the_permission_makes_the_version_active(register, promoter):
    previous, version = register(), register()
    model_version_promote(version_id=previous.pk)

    response = client_for(promoter).post(f"/api/model-versions/{version.pk}/promote/")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (version.pk, "active")
    assert response.json()["promoted_at"] is not None
    assert (status_of(previous), status_of(version)) == ("retired", "active")


def test_promote_with_a_token_of_a_user_with_the_permission_works(register, promoter):
    version = register()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=promoter).key}")

    response = client.post(f"/api/model-versions/{version.pk}/promote/")

    assert response.status_code == 200
    assert status_of(version) == "active"


def test_a_superuser_may_promote(register, admin_user):
    version = register()

    assert client_for(admin_user).post(f"/api/model-versions/{version.pk}/promote/").status_code == 200


def test_promote_of_a_corrupted_version_is_409_with_the_reason_and_the_active_version_stays(register, promoter,
                                                                                           corrupt_artifact):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    corrupt_artifact(broken, "long/catboost/model.cbm")

    response = client_for(promoter).post(f"/api/model-versions/{broken.pk}/promote/")

    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        f"model version {broken.pk}: artifact long/catboost/model.cbm is corrupted")
    assert (status_of(serving), status_of(broken)) == ("active", "candidate")


def test_promote_of_an_unknown_version_is_404(promoter):
    response = client_for(promoter).post("/api/model-versions/424242/promote/")

    assert response.status_code == 404
    assert "424242" in response.json()["detail"]


def test_rollback_with_the_permission_reactivates_the_previous_version(register, promoter):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)

    response = client_for(promoter).post("/api/model-versions/rollback/", {"symbol": "NQ"}, format="json")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (first.pk, "active")
    assert (status_of(first), status_of(second)) == ("active", "retired")


def test_rollback_with_nothing_before_is_409_with_the_reason(register, promoter):
    model_version_promote(version_id=register().pk)

    response = client_for(promoter).post("/api/model-versions/rollback/", {"symbol": "NQ"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "NQ 1m: no earlier active version to roll back to"}


def test_rollback_of_an_unknown_symbol_is_400_naming_it(promoter):
    response = client_for(promoter).post("/api/model-versions/rollback/", {"symbol": "NOPE"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"symbol": ["unknown instrument symbol 'NOPE'"]}
    refused = AuditEvent.objects.get()
    assert (refused.action, refused.details["control"]) == ("refused", "model_rollback")
    assert "unknown instrument symbol 'NOPE'" in refused.details["reason"]


def test_promote_and_rollback_through_the_api_are_audited_with_the_user_and_the_address(register, promoter):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    client = APIClient(REMOTE_ADDR="203.0.113.5")
    client.force_login(promoter)

    assert client.post(f"/api/model-versions/{second.pk}/promote/").status_code == 200
    assert client.post("/api/model-versions/rollback/", {"symbol": "NQ"}, format="json").status_code == 200

    promote = AuditEvent.objects.filter(action="model_promote", user=promoter).get()
    rollback = AuditEvent.objects.get(action="model_rollback")
    assert (promote.client_address, promote.state_before, promote.state_after, promote.details["via"]) == (
        "203.0.113.5", f"v{first.pk}", f"v{second.pk}", "api")
    assert (rollback.user, rollback.client_address, rollback.state_before, rollback.state_after) == (
        promoter, "203.0.113.5", f"v{second.pk}", f"v{first.pk}")
    # The audit trail's API lists them like every other control.
    listed = client.get("/api/audit-events/", {"action": "model_rollback"}).json()["results"]
    assert [(e["user"], e["details"]["symbol"]) for e in listed] == [("ml-lead", "NQ")]


# --- predictions -----------------------------------------------------------------------------------------------


def test_predictions_of_a_symbol_are_listed_newest_bar_first(register, user):
    version = register()
    nq_bars = BarFactory.create_series(3, start=T0, instrument__symbol="NQ")
    es_bar = BarFactory(instrument=InstrumentFactory(symbol="ES"), timestamp=T0)
    # Created out of time order: the list follows the bars, not the rows.
    for bar, p_long in ((nq_bars[1], 0.61), (nq_bars[2], 0.42), (nq_bars[0], 0.55)):
        make_prediction(version, bar, p_long)
    make_prediction(version, es_bar, 0.5)

    response = client_for(user).get("/api/predictions/", {"symbol": "NQ"})

    assert response.status_code == 200
    results = response.json()["results"]
    expected_times = [(T0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (2, 1, 0)]
    assert [p["bar_timestamp"] for p in results] == expected_times
    assert [p["p_long"] for p in results] == [0.42, 0.61, 0.55]
    first = results[0]
    assert (first["symbol"], first["timeframe"], first["version"], first["side"]) == ("NQ", "1m", version.pk, "short")
    assert first["confidence"] == pytest.approx(0.58)
    assert set(first) >= {"p_short", "agreement", "members", "latency_ms", "created_at"}


def test_predictions_without_a_symbol_list_every_market(register, user):
    version = register()
    make_prediction(version, BarFactory(instrument=InstrumentFactory(symbol="NQ")), 0.6)
    make_prediction(version, BarFactory(instrument=InstrumentFactory(symbol="ES")), 0.6)

    response = client_for(user).get("/api/predictions/")

    assert response.status_code == 200
    assert sorted(p["symbol"] for p in response.json()["results"]) == ["ES", "NQ"]
