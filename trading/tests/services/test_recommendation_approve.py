"""Approve and reject: exactly once, audited, refused when not pending, stale, unpermitted or now blocked by risk."""
import threading
from datetime import timedelta

import pytest
from django.db import connection

from trading import services
from trading.models import AuditEvent, KillSwitch, Order, Recommendation
from trading.tests.decisions import bar_at, close_time, flat_bars, model_version, prediction

State = Recommendation.State
pytestmark = pytest.mark.embedded


def pending(nq, *, p=0.7, bars=3):
    made = flat_bars(nq, bars)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(made[-1], model_version(nq), p=p).pk, now=close_time(made[-1]))
    assert recommendation.state == State.PENDING
    return recommendation, close_time(made[-1])


@pytest.mark.django_db
def test_approve_moves_pending_to_approved_places_one_entry_order_and_audits_who_when_and_where(nq, trader):
    recommendation, now = pending(nq)
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, client_address="192.0.2.10",
                                    now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == State.APPROVED and recommendation.decided_by == trader
    order = Order.objects.get(recommendation=recommendation)
    assert (order.kind, order.side, order.quantity, order.status) == ("entry", "buy", recommendation.contracts,
                                                                      "pending")
    audit = AuditEvent.objects.get(recommendation=recommendation)
    assert (audit.action, audit.user, audit.state_before, audit.state_after, audit.client_address) == (
        "approve", trader, "pending", "approved", "192.0.2.10")


@pytest.mark.django_db
def test_a_short_recommendation_places_a_sell_entry(nq, trader):
    made = flat_bars(nq, 3)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(made[-1], model_version(nq), side="short", p=0.72).pk, now=close_time(made[-1]))
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(made[-1]))
    assert Order.objects.get(recommendation=recommendation).side == "sell"


@pytest.mark.django_db
def test_approving_twice_is_refused_and_leaves_one_order(nq, trader):
    recommendation, now = pending(nq)
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=now)
    with pytest.raises(services.RecommendationNotPending, match="is approved: only a pending one can be approved"):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=now)
    assert Order.objects.filter(recommendation=recommendation).count() == 1


@pytest.mark.django_db
def test_approve_without_the_permission_is_refused_and_changes_nothing(nq, viewer):
    recommendation, now = pending(nq)
    with pytest.raises(services.PermissionRefused, match="trading.approve_recommendation"):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=viewer, now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == State.PENDING
    assert not Order.objects.exists()
    refused = AuditEvent.objects.get()  # the attempt is on record, not a decision
    assert (refused.action, refused.user) == ("refused", viewer)


@pytest.mark.django_db
def test_reject_without_the_permission_is_refused(nq, viewer):
    recommendation, now = pending(nq)
    with pytest.raises(services.PermissionRefused):
        services.recommendation_reject(recommendation_id=recommendation.pk, user=viewer, now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == State.PENDING


@pytest.mark.django_db
def test_approve_after_the_time_to_live_is_refused_as_stale_and_the_recommendation_expires(nq, trader):
    recommendation, now = pending(nq)  # made on bar 2; lives through bar 4 (two bars)
    bar_at(nq, 3), bar_at(nq, 4)
    late = bar_at(nq, 5)
    with pytest.raises(services.RecommendationStale, match="is stale"):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(late))
    recommendation.refresh_from_db()
    assert recommendation.state == State.EXPIRED
    assert not Order.objects.exists()
    audit = AuditEvent.objects.get(recommendation=recommendation)
    assert (audit.action, audit.state_after, audit.user) == ("refused", "expired", trader)


@pytest.mark.django_db
def test_approve_within_the_time_to_live_is_accepted(nq, trader):
    recommendation, _ = pending(nq)
    bar_at(nq, 3)
    last = bar_at(nq, 4)
    services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=close_time(last))
    recommendation.refresh_from_db()
    assert recommendation.state == State.APPROVED


@pytest.mark.django_db
def test_approve_is_refused_when_the_last_bar_is_stale_by_the_wall_clock(nq, trader):
    recommendation, now = pending(nq)
    with pytest.raises(services.RecommendationRefusedByRisk, match="last bar is 600s old"):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader,
                                        now=now + timedelta(minutes=10))
    recommendation.refresh_from_db()
    assert recommendation.state == State.BLOCKED and not Order.objects.exists()


@pytest.mark.django_db
def test_approve_is_refused_when_the_kill_switch_was_engaged_after_the_recommendation(nq, trader):
    recommendation, now = pending(nq)
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    with pytest.raises(services.RecommendationRefusedByRisk, match="(?i)kill switch"):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == State.BLOCKED
    assert AuditEvent.objects.get(recommendation=recommendation).state_after == "blocked"


@pytest.mark.django_db
def test_reject_moves_pending_to_rejected_and_audits_it(nq, trader):
    recommendation, now = pending(nq)
    services.recommendation_reject(recommendation_id=recommendation.pk, user=trader, client_address="::1", now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == State.REJECTED
    audit = AuditEvent.objects.get(recommendation=recommendation)
    assert (audit.action, audit.state_before, audit.state_after, audit.client_address) == (
        "reject", "pending", "rejected", "::1")


@pytest.mark.django_db
@pytest.mark.parametrize("state", [State.APPROVED, State.EXECUTED, State.REJECTED, State.EXPIRED, State.BLOCKED])
def test_only_a_pending_recommendation_can_be_approved_or_rejected(nq, trader, state):
    recommendation, now = pending(nq)
    Recommendation.objects.filter(pk=recommendation.pk).update(state=state)
    with pytest.raises(services.RecommendationNotPending):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=now)
    with pytest.raises(services.RecommendationNotPending):
        services.recommendation_reject(recommendation_id=recommendation.pk, user=trader, now=now)
    recommendation.refresh_from_db()
    assert recommendation.state == state and not Order.objects.exists()


@pytest.mark.django_db
def test_an_unknown_recommendation_is_named_in_the_error(trader):
    with pytest.raises(services.RecommendationError, match="no recommendation #999999"):
        services.recommendation_approve(recommendation_id=999999, user=trader)


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_approvals_give_exactly_one_order(nq, trader):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    recommendation, now = pending(nq)
    barrier = threading.Barrier(50)
    outcomes = []

    def click():
        try:
            barrier.wait()
            services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, now=now)
            outcomes.append("approved")
        except services.RecommendationNotPending:
            outcomes.append("not pending")
        except Exception as exc:  # anything else is a failure the assertion below shows
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved"] + ["not pending"] * 49
    assert Order.objects.filter(recommendation=recommendation).count() == 1
    assert AuditEvent.objects.filter(recommendation=recommendation, action="approve").count() == 1


def test_approving_or_rejecting_a_decided_or_unknown_recommendation_leaves_a_refused_audit_row(nq, trader):
    from trading.models import AuditEvent
    from trading.services.recommendations import RecommendationError, RecommendationNotPending
    from trading.tests.decisions import close_time, flat_bars, model_version, prediction

    bars = flat_bars(nq, 2)
    [recommendation] = services.recommendations_create_for_prediction(
        prediction_id=prediction(bars[-1], model_version(nq), p=0.7).pk, now=close_time(bars[-1]))
    services.recommendation_reject(recommendation_id=recommendation.pk, user=trader, client_address="10.0.0.9")
    with pytest.raises(RecommendationNotPending):
        services.recommendation_approve(recommendation_id=recommendation.pk, user=trader, client_address="10.0.0.9")
    with pytest.raises(RecommendationNotPending):
        services.recommendation_reject(recommendation_id=recommendation.pk, user=trader)
    with pytest.raises(RecommendationError):
        services.recommendation_approve(recommendation_id=987654, user=trader)
    refused = list(AuditEvent.objects.filter(action=AuditEvent.Action.REFUSED).order_by("id"))
    assert [(r.details["control"], r.details["recommendation"]) for r in refused] == [
        ("approve", recommendation.pk), ("reject", recommendation.pk), ("approve", 987654)]
    assert "rejected: only a pending one can be approved" in refused[0].details["reason"]
    assert refused[0].account_id == recommendation.account_id and refused[0].client_address == "10.0.0.9"
    assert refused[0].user == trader
