"""Limits hold with entries still working: approvals that have not filled yet count for the position, total,
trades-per-day and loss-budget limits, and a prediction sized after a newer bar is never offered."""
from decimal import Decimal

import pytest

from trading import services
from trading.models import Account, Order, Position, Recommendation, TradingConfig
from trading.services.recommendations import RecommendationRefusedByRisk
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _pending(bar, version, *, side="long") -> Recommendation:
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bar, version, side=side, p=0.7).pk, now=close_time(bar))
    return recommendation


def _two_pending_in_one_bar(nq, *, side2="long", **config):
    """Recommendations on bars 1 and 2, both pending (time to live 2 bars) and sized before either is approved."""
    bars = flat_bars(nq, 2)
    version = model_version(nq)
    first = _pending(bars[1], version)
    TradingConfig.objects.filter(pk=TradingConfig.objects.get().pk).update(**config)
    latest = bar_at(nq, 2)
    second = _pending(latest, version, side=side2)
    assert first.state == second.state == Recommendation.State.PENDING
    assert first.contracts == second.contracts == 5
    return first, second, close_time(latest)


def test_two_approvals_in_one_bar_cannot_stack_beyond_the_position_limit(nq, trader):
    first, second, now = _two_pending_in_one_bar(nq)
    services.recommendation_approve(recommendation_id=first.pk, user=trader, now=now)
    with pytest.raises(RecommendationRefusedByRisk, match="position limit 5 .*leaves no room"):
        services.recommendation_approve(recommendation_id=second.pk, user=trader, now=now)
    second.refresh_from_db()
    assert second.state == Recommendation.State.BLOCKED
    services.bar_settle(bar_id=bar_at(nq, 3).pk)
    assert Position.objects.get(instrument=nq).quantity == 5
    assert Order.objects.filter(kind="entry").count() == 1


def test_a_short_beside_a_working_long_is_held_to_the_limits_of_its_own_side(nq, trader):
    # Each trade exits on its own bracket: the short does not cancel the long, it is sized as a new position, and
    # the total limit counts the working long's 5 contracts as taken.
    first, second, now = _two_pending_in_one_bar(nq, side2="short", max_total_contracts=7)
    services.recommendation_approve(recommendation_id=first.pk, user=trader, now=now)
    approved = services.recommendation_approve(recommendation_id=second.pk, user=trader, now=now)
    assert approved.state == Recommendation.State.APPROVED
    assert approved.contracts == 2  # 7 - 5; the position limit of the short side (5) alone would allow 5
    assert any("total limit 7 (open contracts 5) leaves room for 2 of 5" in r for r in approved.reasons)


def test_working_entries_count_as_todays_trades(nq, trader):
    first, second, now = _two_pending_in_one_bar(nq, max_trades_per_day=1)
    services.recommendation_approve(recommendation_id=first.pk, user=trader, now=now)
    with pytest.raises(RecommendationRefusedByRisk, match="1 trades today reached the maximum 1"):
        services.recommendation_approve(recommendation_id=second.pk, user=trader, now=now)


def test_a_working_entrys_stop_out_is_taken_from_the_loss_budget(nq, trader):
    # One contract to the stop: (10 points + 1 tick) x $20 + 2 x $2.50 = $210; five = $1,050.
    first, second, now = _two_pending_in_one_bar(nq, daily_loss_limit=Decimal("1500"), max_position_contracts=10)
    services.recommendation_approve(recommendation_id=first.pk, user=trader, now=now)
    reduced = services.recommendation_approve(recommendation_id=second.pk, user=trader, now=now)
    assert reduced.contracts == 2  # (1500 - 1050) // 210
    assert any("after 1050.00 already at risk" in reason for reason in reduced.reasons)


def test_an_open_trades_distance_to_its_stop_is_taken_from_the_loss_budget(nq, trader):
    bars = flat_bars(nq, 2)
    version = model_version(nq)
    first = _pending(bars[1], version)
    TradingConfig.objects.update(daily_loss_limit=Decimal("1500"), max_position_contracts=10)
    services.recommendation_approve(recommendation_id=first.pk, user=trader, now=close_time(bars[1]))
    entry_bar = bar_at(nq, 2)  # fills at 18000.25, stop 17990.25, marked at 18000
    services.bar_settle(bar_id=entry_bar.pk)
    assert Position.objects.get(instrument=nq).quantity == 5
    second = _pending(entry_bar, version)
    # Marked 0.25 under the fill (-$25 today): 5 x ((9.75 + 0.25) x 20 + 2.50) = $1,012.50 to the stop.
    assert second.contracts == 2  # (1500 - 25 - 1012.50) // 210
    assert "after 1012.50 already at risk" in " ".join(second.reasons)


def test_a_prediction_sized_after_a_newer_bar_closed_is_recorded_expired_and_never_auto_approved(nq):
    bars = flat_bars(nq, 2)
    version = model_version(nq)
    Account.objects.update_or_create(name="paper", defaults={"auto_trading": True})
    late = prediction(bars[0], version, p=0.7)  # bar 1 has already closed
    [recommendation] = services.recommendations_create_for_prediction(prediction_id=late.pk,
                                                                      now=close_time(bars[1]))
    assert recommendation.state == Recommendation.State.EXPIRED
    assert recommendation.contracts == 0
    assert "expired before it was offered" in recommendation.reasons[0]
    assert not Order.objects.exists()
    # The prediction of the latest bar is still taken (auto-approved).
    [current] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[1], version, p=0.7).pk, now=close_time(bars[1]))
    assert current.state == Recommendation.State.APPROVED and Order.objects.count() == 1


def test_a_backlog_of_auto_approved_predictions_cannot_exceed_the_limits(nq):
    """A worker that was down comes back to a backlog: only the latest bar's prediction may trade, and the
    limits count what it approved before."""
    bars = flat_bars(nq, 6)
    version = model_version(nq)
    Account.objects.update_or_create(name="paper", defaults={"auto_trading": True})
    backlog = [prediction(bar, version, side="short", p=0.7) for bar in bars]
    made = [services.recommendations_create_for_prediction(prediction_id=p.pk, now=close_time(bars[-1]))[0]
            for p in backlog]
    assert [r.state for r in made] == [Recommendation.State.EXPIRED] * 5 + [Recommendation.State.APPROVED]
    # And again for the same latest bar from a second model: no room left on the short side.
    other = model_version(nq)
    [again] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], other, side="short", p=0.7).pk, now=close_time(bars[-1]))
    assert again.state == Recommendation.State.BLOCKED
    services.bar_settle(bar_id=bar_at(nq, 6).pk)
    assert Position.objects.get(instrument=nq).quantity == -5
