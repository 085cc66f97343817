"""The workflow drives the decision path: a settled bar's prediction is sized, a closed bar runs the broker (tasks
inline)."""
import pytest

from mlcore import selectors as ml_selectors
from trading import services, workflow
from trading.domain.bars import BarData
from trading.models import BarWorkflow, Fill, Recommendation
from trading.tests.decisions import close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def test_a_settled_bar_is_predicted_and_its_prediction_becomes_a_recommendation(nq, eager_celery, monkeypatch):
    bars = flat_bars(nq, 3)
    made = prediction(bars[-1], model_version(nq))
    # The model is the test's: its stored prediction stands in for inference.
    monkeypatch.setattr(workflow.ml_services, "prediction_create",
                        lambda bar_id: ml_selectors.prediction_facts(prediction_id=made.pk))
    # Sizing reads the wall clock for data freshness; these bars are from 2024, so stop it at their close.
    monkeypatch.setattr("django.utils.timezone.now", lambda: close_time(bars[-1]))
    workflow.settle(bars[-1].pk)
    recommendation = Recommendation.objects.get(prediction=made)
    assert recommendation.state == Recommendation.State.PENDING
    progress = BarWorkflow.objects.get(pk=bars[-1].pk)
    assert (progress.stage, progress.prediction_id, progress.recommendations) == ("done", made.pk, 1)
    assert progress.settled_at <= progress.decide_started_at <= progress.predicted_at <= progress.decided_at


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
