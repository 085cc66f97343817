"""Predicting a closed bar: one Prediction per bar and version, made by the bar's decision workflow."""
import logging

import pytest

from mlcore.models import Prediction
from mlcore.predictors import MEMBER_ORDER
from mlcore.registry import model_version_promote
from mlcore.services import prediction_create
from trading import services as trading_services
from trading.tests.factories import BarFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded,
              pytest.mark.usefixtures("model_cache", "eager_celery")]


@pytest.fixture
def store_live_bar(nq, live_bar, django_capture_on_commit_callbacks):
    """Store the next bar as the feed does; the "bar closed" receivers run when the transaction commits."""

    def store():
        with django_capture_on_commit_callbacks(execute=True):
            return trading_services.bar_store_closed(instrument=nq, timeframe="1m", bar=live_bar)

    return store


def test_a_closed_bar_gets_one_prediction_from_the_active_version(register, stored_bars, store_live_bar):
    version = model_version_promote(version_id=register().pk)

    bar = store_live_bar()

    predictions = list(Prediction.objects.filter(bar=bar))
    assert len(predictions) == 1
    prediction = predictions[0]
    assert prediction.version_id == version.pk
    assert prediction.instrument_id == bar.instrument_id


def test_the_prediction_holds_consistent_probabilities_members_and_latency(register, stored_bars, store_live_bar):
    model_version_promote(version_id=register().pk)

    prediction = Prediction.objects.get(bar=store_live_bar())

    assert 0 < prediction.p_long < 1 and 0 < prediction.p_short < 1
    assert prediction.confidence == max(prediction.p_long, prediction.p_short)
    assert prediction.side == ("long" if prediction.p_long >= prediction.p_short else "short")
    assert 0 <= prediction.agreement <= 1
    assert prediction.latency_ms > 0
    members = prediction.members["members"]
    assert set(members) == {"long", "short"}
    for side in ("long", "short"):
        assert set(members[side]) == set(MEMBER_ORDER)  # PostgreSQL's jsonb keeps no key order
        assert all(0 <= p <= 1 for p in members[side].values())
        assert 0 < prediction.members["meta_raw"][side] < 1


def test_predicting_a_bar_again_does_not_create_a_second_prediction(register, stored_bars, store_live_bar):
    model_version_promote(version_id=register().pk)
    bar = store_live_bar()
    first = Prediction.objects.get(bar=bar)

    again = prediction_create(bar_id=bar.pk)

    assert again.prediction_id == first.pk and not again.created
    assert Prediction.objects.filter(bar=bar).count() == 1


def test_a_new_active_version_predicts_the_same_bar_again_under_its_own_id(register, stored_bars, store_live_bar):
    first, second = register(), register()
    model_version_promote(version_id=first.pk)
    bar = store_live_bar()

    model_version_promote(version_id=second.pk)
    prediction_create(bar_id=bar.pk)

    assert sorted(Prediction.objects.filter(bar=bar).values_list("version_id", flat=True)) == [first.pk, second.pk]


def test_with_no_active_version_a_closed_bar_is_stored_and_nothing_is_predicted(register, stored_bars, store_live_bar,
                                                                               caplog):
    register()  # a candidate only

    with caplog.at_level(logging.WARNING):
        bar = store_live_bar()

    assert bar is not None and bar.pk
    assert not Prediction.objects.exists()
    assert prediction_create(bar_id=bar.pk) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_bar_with_too_little_history_is_not_predicted_and_a_warning_says_why(register, nq, caplog):
    model_version_promote(version_id=register().pk)
    bars = BarFactory.create_series(10, instrument=nq)

    with caplog.at_level(logging.WARNING, logger="mlcore.services"):
        prediction = prediction_create(bar_id=bars[-1].pk)

    assert prediction is None
    assert not Prediction.objects.exists()
    assert any("too few bars" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
