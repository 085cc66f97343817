"""predictions_for_frame: a registered version's batch predictions of stored bars, equal to predict per bar, no writes."""
from mlcore import services
from mlcore.models import Prediction
from trading import selectors as trading_selectors


def test_a_registered_version_predicts_a_frame_of_stored_bars_as_predict_does_bar_by_bar(register, stored_bars, nq,
                                                                                         model_cache):
    version = register()
    frame = trading_selectors.bars_frame(instrument=nq, timeframe="1m")
    first = len(frame) - 120
    batch = services.predictions_for_frame(version_id=version.pk, frame=frame, first=first)

    assert len(batch) == 120
    model = services._pinned_model(version.pk)
    for k, got in enumerate(batch):
        i = first + k
        one = model.predict(frame.iloc[i - model.bars_needed + 1 : i + 1])
        for key in ("p_long", "p_short", "side", "confidence", "agreement", "members", "meta_raw", "atr",
                    "atr_reference"):
            assert got[key] == one[key], (i, key)
    assert not Prediction.objects.exists()
