"""The broker interface: the paper broker implements it, the setting picks it, a non-broker is refused."""
import pytest

from trading.brokers import Broker, PaperBroker, broker_get

pytestmark = pytest.mark.embedded


def test_the_paper_broker_implements_the_broker_interface_and_is_the_default():
    broker_get.cache_clear()
    assert isinstance(PaperBroker(), Broker)
    assert isinstance(broker_get(), PaperBroker)


def test_a_setting_naming_something_that_is_not_a_broker_is_refused(settings):
    settings.MINHOS_BROKER = "decimal.Decimal"
    broker_get.cache_clear()
    try:
        with pytest.raises(TypeError, match="does not implement trading.brokers.Broker"):
            broker_get()
    finally:
        broker_get.cache_clear()


@pytest.mark.django_db
def test_cancel_cancels_only_a_pending_order(nq, trader):
    from trading import services
    from trading.models import Order
    from trading.tests.decisions import close_time, flat_bars, model_version, prediction

    bars = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq)).pk, now=close_time(bars[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(bars[-1]))
    order = Order.objects.get()
    PaperBroker().cancel(order)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
