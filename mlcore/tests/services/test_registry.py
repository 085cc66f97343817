"""The model registry: native-format artifacts and their SHA-256 in storage, promote, roll back, bad artifacts, and
the audit of every promotion, roll-back and refused attempt."""
import hashlib
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from mlcore.models import ModelVersion
from mlcore.predictors import MEMBER_ORDER
from mlcore.registry import ArtifactError, RegistryError, model_version_promote, model_version_rollback
from trading import services as trading_services
from trading.models import AuditEvent
from trading.services import PermissionRefused
from trading.tests.decisions import user_with
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]

ACTIVE, RETIRED, CANDIDATE = ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED, ModelVersion.Status.CANDIDATE


def statuses(*versions: ModelVersion) -> list[str]:
    return [ModelVersion.objects.get(pk=v.pk).status for v in versions]


def active_of(instrument, timeframe: str = "1m") -> list[int]:
    return list(ModelVersion.objects.filter(instrument=instrument, timeframe=timeframe, status=ACTIVE)
                .values_list("pk", flat=True))


# --- artifacts -------------------------------------------------------------------------------------------------


def test_a_registered_version_is_a_candidate_with_its_training_facts(register, trained):
    version = register()

    assert version.status == CANDIDATE
    assert version.promoted_at is None
    assert (version.preset, version.seed, version.sequence_length) == ("fast", 0, trained.seq_len)
    assert version.n_bars == trained.n_bars
    assert version.feature_names == list(trained.feature_names)
    assert version.has_edge == trained.has_edge
    assert set(version.metrics) >= {"long", "short", "label_settings"}
    assert version.payoff_ratio == pytest.approx(version.label_settings["tp_atr"] / version.label_settings["sl_atr"])


def test_artifacts_are_saved_in_each_librarys_native_format(register):
    version = register()

    names = set(version.artifacts)
    for side in ("long", "short"):
        assert f"{side}/side.json" in names
        assert f"{side}/lstm/model.keras" in names
        assert {f"{side}/xgboost/model.json", f"{side}/xgboost/model.ubj"} & names
        assert f"{side}/lightgbm/model.txt" in names
        assert f"{side}/catboost/model.cbm" in names
        assert f"{side}/random_forest/model.joblib" in names
    # Nothing but the two side bundles: every member's folder, no stray files.
    assert {name.split("/")[0] for name in names} == {"long", "short"}
    assert {name.split("/")[1] for name in names if name.count("/") == 2} == set(MEMBER_ORDER)


def test_recorded_sha256_equal_the_hashes_of_the_stored_files(register, storage):
    version = register()

    assert version.artifact_root.startswith("models/NQ/1m/")
    for relative, recorded in version.artifacts.items():
        name = f"{version.artifact_root}/{relative}"
        assert Path(default_storage.path(name)).is_relative_to(storage)  # the test's MEDIA_ROOT, never var/
        with default_storage.open(name, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == recorded


def test_two_versions_of_the_same_model_never_share_artifact_files(register):
    first, second = register(), register()

    assert first.artifact_root != second.artifact_root
    assert set(first.artifacts) == set(second.artifacts)
    # Same model, same bytes, but for the Keras archives, which record when they were saved.
    assert {k: v for k, v in first.artifacts.items() if not k.endswith(".keras")} == {
        k: v for k, v in second.artifacts.items() if not k.endswith(".keras")}


def test_a_storage_failure_while_saving_artifacts_leaves_no_version_and_no_files(register, storage, monkeypatch):
    real_save, saved = default_storage.save, []

    def save_then_fail(name, content, **kwargs):
        if len(saved) == 3:
            raise OSError("disk full")
        saved.append(real_save(name, content, **kwargs))
        return saved[-1]

    monkeypatch.setattr(default_storage, "save", save_then_fail)

    with pytest.raises(OSError, match="disk full"):
        register()

    assert ModelVersion.objects.count() == 0
    assert len(saved) == 3
    assert not [p for p in Path(storage).rglob("*") if p.is_file()]


# --- promote ---------------------------------------------------------------------------------------------------


def test_promote_makes_a_candidate_the_active_version(register, nq):
    version = register()

    promoted = model_version_promote(version_id=version.pk)

    assert promoted.pk == version.pk
    version.refresh_from_db()
    assert version.status == ACTIVE
    assert version.promoted_at is not None and version.retired_at is None
    assert active_of(nq) == [version.pk]


def test_a_promotion_is_logged_once_committed_and_not_at_all_when_the_callers_transaction_rolls_back(
        register, caplog, django_capture_on_commit_callbacks):
    version = register()
    with caplog.at_level("INFO", logger="mlcore.registry"), django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            model_version_promote(version_id=version.pk)
            raise RuntimeError("the caller's transaction fails after the promotion")
    assert statuses(version) == [CANDIDATE]
    assert "promoted" not in caplog.text

    with caplog.at_level("INFO", logger="mlcore.registry"), django_capture_on_commit_callbacks(execute=True):
        model_version_promote(version_id=version.pk, via="test")
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("promoted")] == [
        f"promoted {ModelVersion.objects.get(pk=version.pk)} (test)"]


def test_promote_retires_the_previously_active_version(register, nq):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)

    model_version_promote(version_id=second.pk)

    assert statuses(first, second) == [RETIRED, ACTIVE]
    first.refresh_from_db()
    assert first.retired_at is not None
    assert active_of(nq) == [second.pk]


def test_promote_leaves_the_active_versions_of_other_markets_alone(register, nq):
    es = InstrumentFactory(symbol="ES")
    nq_version, es_version, nq_5m = register(), register(instrument=es), register(timeframe="5m")
    for version in (nq_version, es_version, nq_5m):
        model_version_promote(version_id=version.pk)

    assert statuses(nq_version, es_version, nq_5m) == [ACTIVE, ACTIVE, ACTIVE]


def test_promoting_the_active_version_again_changes_nothing(register):
    version = model_version_promote(version_id=register().pk)
    promoted_at = version.promoted_at

    again = model_version_promote(version_id=version.pk)

    assert again.status == ACTIVE
    assert again.promoted_at == promoted_at


def test_promoting_an_unknown_version_raises_does_not_exist():
    with pytest.raises(ModelVersion.DoesNotExist):
        model_version_promote(version_id=987654)


def test_the_database_refuses_a_second_active_version_for_one_market(register):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status=ACTIVE)

    assert statuses(first, second) == [ACTIVE, CANDIDATE]


@pytest.mark.parametrize("damage", ["corrupted", "missing"])
def test_promote_refuses_a_version_with_a_bad_artifact_and_the_active_version_stays(register, nq, corrupt_artifact,
                                                                                     damage):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    if damage == "corrupted":
        corrupt_artifact(broken, "short/lightgbm/model.txt")
    else:
        default_storage.delete(f"{broken.artifact_root}/short/lightgbm/model.txt")

    with pytest.raises(ArtifactError) as refused:
        model_version_promote(version_id=broken.pk)

    assert f"model version {broken.pk}" in str(refused.value)
    assert "short/lightgbm/model.txt" in str(refused.value)
    assert damage in str(refused.value)
    assert statuses(serving, broken) == [ACTIVE, CANDIDATE]


def test_promote_refuses_a_version_with_no_artifacts_recorded(register):
    version = register()
    ModelVersion.objects.filter(pk=version.pk).update(artifacts={})

    with pytest.raises(ArtifactError, match="no artifacts"):
        model_version_promote(version_id=version.pk)

    assert statuses(version) == [CANDIDATE]


# --- roll back -------------------------------------------------------------------------------------------------


def test_rollback_reactivates_the_previous_version_and_retires_the_current_one(register, nq):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)

    restored = model_version_rollback(instrument=nq, timeframe="1m")

    assert restored.pk == first.pk
    assert statuses(first, second) == [ACTIVE, RETIRED]
    assert active_of(nq) == [first.pk]


def test_successive_rollbacks_walk_back_through_the_promotions_until_there_is_none(register, nq):
    versions = [register() for _ in range(3)]
    for version in versions:
        model_version_promote(version_id=version.pk)

    assert model_version_rollback(instrument=nq, timeframe="1m").pk == versions[1].pk
    assert model_version_rollback(instrument=nq, timeframe="1m").pk == versions[0].pk
    with pytest.raises(RegistryError, match="no earlier active version"):
        model_version_rollback(instrument=nq, timeframe="1m")
    assert statuses(*versions) == [ACTIVE, RETIRED, RETIRED]


def test_rollback_after_a_rollback_and_a_new_promotion_returns_to_the_version_active_before(register, nq):
    # v1 -> v2 (bad, rolled back) -> v1 -> v3: rolling back v3 restores v1, not the rejected v2.
    v1, v2, v3 = register(), register(), register()
    model_version_promote(version_id=v1.pk)
    model_version_promote(version_id=v2.pk)
    model_version_rollback(instrument=nq, timeframe="1m")
    model_version_promote(version_id=v3.pk)

    restored = model_version_rollback(instrument=nq, timeframe="1m")

    assert restored.pk == v1.pk
    assert statuses(v1, v2, v3) == [ACTIVE, RETIRED, RETIRED]


def test_rollback_with_no_earlier_version_raises_a_clear_error_and_changes_nothing(register, nq):
    only = model_version_promote(version_id=register().pk)
    register()  # a candidate never promoted is not "the previous version"

    with pytest.raises(RegistryError) as refused:
        model_version_rollback(instrument=nq, timeframe="1m")

    assert str(refused.value) == "NQ 1m: no earlier active version to roll back to"
    assert active_of(nq) == [only.pk]


def test_rollback_with_no_active_version_raises_a_clear_error(nq):
    with pytest.raises(RegistryError, match="NQ 1m: no active model version to roll back"):
        model_version_rollback(instrument=nq, timeframe="1m")


def test_rollback_refuses_a_previous_version_with_a_corrupted_artifact(register, nq, corrupt_artifact):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)
    corrupt_artifact(first)

    with pytest.raises(ArtifactError, match="corrupted"):
        model_version_rollback(instrument=nq, timeframe="1m")

    assert statuses(first, second) == [RETIRED, ACTIVE]


# --- audit -----------------------------------------------------------------------------------------------------


def audits(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_promote_is_audited_with_who_the_versions_before_and_after_the_market_and_the_address(register, nq):
    first, second = register(), register()
    promoter = user_with("ml-lead", "mlcore.promote_modelversion")
    model_version_promote(version_id=first.pk, via="training")

    model_version_promote(version_id=second.pk, user=promoter, client_address="192.0.2.7", via="api")

    system, person = audits("model_promote")
    assert (system.user, system.state_before, system.state_after, system.details["via"]) == (
        None, "", f"v{first.pk}", "training")
    assert (person.user, person.client_address, person.state_before, person.state_after) == (
        promoter, "192.0.2.7", f"v{first.pk}", f"v{second.pk}")
    assert person.details == {"symbol": "NQ", "timeframe": "1m", "version_before": first.pk,
                              "version_after": second.pk, "via": "api"}


def test_the_promotions_audit_record_is_written_in_the_promotions_transaction(register, monkeypatch):
    serving, candidate = register(), register()
    model_version_promote(version_id=serving.pk)

    def audit_fails(**kwargs):
        if not kwargs.get("refused"):
            raise RuntimeError("audit store down")
    monkeypatch.setattr(trading_services, "model_version_audit_record", audit_fails)

    with pytest.raises(RuntimeError):
        model_version_promote(version_id=candidate.pk)

    assert statuses(serving, candidate) == [ACTIVE, CANDIDATE]  # no change without its record


def test_promoting_the_active_version_again_records_nothing(register):
    version = model_version_promote(version_id=register().pk)

    model_version_promote(version_id=version.pk)

    assert len(audits("model_promote")) == 1 and not audits("refused")


def test_rollback_is_audited_with_the_version_rolled_back_from_and_the_one_restored(register, nq):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    model_version_promote(version_id=second.pk)
    promoter = user_with("ml-lead", "mlcore.promote_modelversion")

    model_version_rollback(instrument=nq, timeframe="1m", user=promoter, client_address="192.0.2.8", via="admin")

    [record] = audits("model_rollback")
    assert (record.user, record.client_address, record.state_before, record.state_after) == (
        promoter, "192.0.2.8", f"v{second.pk}", f"v{first.pk}")
    assert (record.details["symbol"], record.details["timeframe"], record.details["via"]) == ("NQ", "1m", "admin")


def test_a_refused_promote_is_audited_and_the_record_survives_the_rollback(register, nq, corrupt_artifact):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    corrupt_artifact(broken)

    with pytest.raises(ArtifactError):
        model_version_promote(version_id=broken.pk, via="command (OS user ops)")

    assert statuses(serving, broken) == [ACTIVE, CANDIDATE]
    [refused] = audits("refused")
    assert refused.details["control"] == "model_promote"
    assert (refused.details["version_before"], refused.details["version_after"]) == (serving.pk, broken.pk)
    assert (refused.details["symbol"], refused.details["via"]) == ("NQ", "command (OS user ops)")
    assert "corrupted" in refused.details["reason"]
    assert len(audits("model_promote")) == 1  # the first promotion only


def test_a_person_without_the_permission_cannot_promote_or_roll_back_and_the_attempts_are_audited(register, nq):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    analyst = user_with("analyst")

    with pytest.raises(PermissionRefused, match="mlcore.promote_modelversion"):
        model_version_promote(version_id=second.pk, user=analyst, client_address="192.0.2.9", via="api")
    with pytest.raises(PermissionRefused, match="mlcore.promote_modelversion"):
        model_version_rollback(instrument=nq, timeframe="1m", user=analyst, via="api")

    assert statuses(first, second) == [ACTIVE, CANDIDATE]
    promote, rollback = audits("refused")
    assert (promote.user, promote.client_address, promote.details["control"]) == (analyst, "192.0.2.9",
                                                                                   "model_promote")
    assert (rollback.user, rollback.details["control"], rollback.details["symbol"]) == (analyst, "model_rollback",
                                                                                        "NQ")


def test_a_refused_rollback_is_audited(register, nq):
    model_version_promote(version_id=register().pk)

    with pytest.raises(RegistryError):
        model_version_rollback(instrument=nq, timeframe="1m")

    [refused] = audits("refused")
    assert refused.details["control"] == "model_rollback"
    assert "no earlier active version" in refused.details["reason"]
    assert not audits("model_rollback")
