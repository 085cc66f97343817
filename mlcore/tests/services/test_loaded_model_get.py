"""The inference cache: the active version loaded once, reloaded on a change, the old one kept on bad artifacts."""
import logging

import pytest
from django.core.files.storage import default_storage

from mlcore import services
from mlcore.inference import LoadedModel
from mlcore.models import Prediction
from mlcore.registry import model_version_promote
from trading.models import Bar

pytestmark = [pytest.mark.django_db, pytest.mark.embedded, pytest.mark.usefixtures("model_cache")]


@pytest.fixture
def load_calls(monkeypatch) -> list[int]:
    """The version ids `services._load` was called with (it still loads)."""
    calls, real_load = [], services._load

    def counting_load(version):
        calls.append(version.pk)
        return real_load(version)

    monkeypatch.setattr(services, "_load", counting_load)
    return calls


def last_bars(instrument, n: int) -> list[Bar]:
    return list(Bar.objects.filter(instrument=instrument, timeframe="1m").order_by("-timestamp")[:n])[::-1]


def damage(version, how: str, corrupt_artifact) -> None:
    if how == "corrupted":
        corrupt_artifact(version, "long/lstm/model.keras")
    else:
        default_storage.delete(f"{version.artifact_root}/long/lstm/model.keras")


def test_the_active_version_is_loaded_once_for_many_predictions(register, nq, stored_bars, load_calls):
    version = model_version_promote(version_id=register().pk)

    predictions = [services.prediction_create(bar_id=bar.pk) for bar in last_bars(nq, 3)]

    assert load_calls == [version.pk]
    assert [p.version_id for p in predictions] == [version.pk] * 3
    assert services.loaded_model_get(instrument=nq, timeframe="1m").version_id == version.pk
    assert load_calls == [version.pk]


def test_the_model_is_reloaded_after_another_version_is_promoted(register, nq, stored_bars, load_calls):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    bars = last_bars(nq, 2)
    services.prediction_create(bar_id=bars[0].pk)

    model_version_promote(version_id=second.pk)
    prediction = services.prediction_create(bar_id=bars[1].pk)

    assert load_calls == [first.pk, second.pk]
    assert prediction.version_id == second.pk


def test_no_active_version_means_no_model_and_nothing_loaded(nq, register, load_calls):
    register()  # a candidate does not serve

    assert services.loaded_model_get(instrument=nq, timeframe="1m") is None
    assert load_calls == []


@pytest.mark.parametrize("how", ["corrupted", "missing"])
def test_bad_artifacts_of_a_newly_promoted_version_leave_the_previous_version_serving(
    register, nq, stored_bars, corrupt_artifact, caplog, how
):
    serving, broken = register(), register()
    model_version_promote(version_id=serving.pk)
    bars = last_bars(nq, 2)
    services.prediction_create(bar_id=bars[0].pk)
    model_version_promote(version_id=broken.pk)  # artifacts still intact here: the check passes
    damage(broken, how, corrupt_artifact)

    with caplog.at_level(logging.ERROR, logger="mlcore.services"):
        prediction = services.prediction_create(bar_id=bars[1].pk)

    assert prediction is not None
    assert prediction.version_id == serving.pk
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "mlcore.services"]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert f"cannot load active model version {broken.pk}" in message
    assert how in message
    assert f"v{serving.pk} keeps serving" in message


@pytest.mark.parametrize("how", ["corrupted", "missing"])
def test_bad_artifacts_with_nothing_loaded_before_give_no_model_and_an_error(
    register, nq, stored_bars, corrupt_artifact, caplog, how
):
    broken = model_version_promote(version_id=register().pk)
    damage(broken, how, corrupt_artifact)

    with caplog.at_level(logging.ERROR, logger="mlcore.services"):
        model = services.loaded_model_get(instrument=nq, timeframe="1m")
        prediction = services.prediction_create(bar_id=last_bars(nq, 1)[0].pk)

    assert model is None
    assert prediction is None
    assert not Prediction.objects.exists()
    assert any(f"cannot load active model version {broken.pk}" in r.getMessage() and "no model serves" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


def test_loading_leaves_no_scratch_files_behind(register, nq, storage, settings):
    model_version_promote(version_id=register().pk)

    assert services.loaded_model_get(instrument=nq, timeframe="1m") is not None

    cache_root = settings.VAR_DIR / "model-cache"
    assert cache_root.is_dir()
    assert list(cache_root.iterdir()) == []


# --- round trip ------------------------------------------------------------------------------------------------


def test_a_version_loaded_from_storage_predicts_exactly_what_the_trained_model_predicts(register, trained,
                                                                                        training_bars):
    version = register()
    from_storage = services._load(version)
    in_memory = LoadedModel(version_id=version.pk, sides=trained.sides, seq_len=trained.seq_len)
    assert from_storage.bars_needed == in_memory.bars_needed

    for end in (len(training_bars), len(training_bars) - 1, len(training_bars) // 2):
        window = training_bars.iloc[end - in_memory.bars_needed:end].reset_index(drop=True)
        loaded, original = from_storage.predict(window), in_memory.predict(window)
        for key in ("p_long", "p_short", "side", "confidence", "agreement", "members", "meta_raw"):
            assert loaded[key] == original[key], key
