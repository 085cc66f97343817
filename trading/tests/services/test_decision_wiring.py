"""The events drive the decision path: a new prediction is sized, a closed bar runs the broker (tasks inline)."""
import pytest

from mlcore.events import prediction_created
from mlcore.models import Prediction
from trading import services
from trading.domain.bars import BarData
from trading.models import Fill, Recommendation
from trading.tests.decisions import close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def test_a_new_prediction_becomes_a_recommendation_through_the_event(nq, eager_celery, monkeypatch):
    bars = flat_bars(nq, 3)
    made = prediction(bars[-1], model_version(nq))
    # The event's receiver sizes with the wall clock; these bars are from 2024, so stop the clock at their close.
    monkeypatch.setattr("django.utils.timezone.now", lambda: close_time(bars[-1]))
    prediction_created.send_robust(sender=Prediction, prediction=made)
    recommendation = Recommendation.objects.get(prediction=made)
    assert recommendation.state == Recommendation.State.PENDING


def test_a_closed_bar_fills_an_approved_entry_through_the_event(nq, trader, eager_celery, monkeypatch):
    bars = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq)).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(bars[-1]))
    next_bar = BarData(timestamp=close_time(bars[-1]), open=18002.0, high=18003.0, low=18001.0, close=18002.5,
                       volume=10.0)
    services.feed_publish_bar(instrument=nq, timeframe="1m", bar=next_bar, already_stored=False)
    fill = Fill.objects.get()
    assert fill.price == pytest.approx(18002.25) and fill.order.recommendation_id == recommendation.pk
    recommendation.refresh_from_db()
    assert recommendation.state == Recommendation.State.EXECUTED
