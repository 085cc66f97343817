"""The recommendation life cycle: a prediction sized by Kelly and checked by risk, then approved exactly once,
rejected, expired or blocked.

    proposed -> pending approval -> approved -> executed          (the broker fills it when the next bar settles)
             -> blocked by risk            pending -> rejected | expired (time to live) | blocked (risk says no now)

"Proposed" lasts while Kelly and risk run, inside the transaction that stores the recommendation: it is committed
as pending (or, with auto-trading on, approved) or as blocked.

Approval locks the recommendation's row, checks its state and only then places the one entry order (whose
idempotency key is unique as well), so fifty concurrent clicks give one order. Every person's decision is audited
in the same transaction as the decision.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from mlcore import selectors as ml_selectors
from mlcore.facts import PredictionFacts

from .. import realtime, selectors
from ..domain import engine
from ..domain.risk import Decision, Proposal, RiskVerdict, assess
from ..domain.sides import Side
from ..domain.timeframes import timeframe_delta
from ..events import order_placed
from ..models import Account, AuditEvent, Bar, Instrument, Order, Recommendation, TradingConfig
from . import engine_state
from .accounts import (
    _require,
    account_default_get,
    audit_record,
    audit_refusal_record,
    circuit_breaker_trip,
    trading_config_get,
)

logger = logging.getLogger(__name__)
State = Recommendation.State


class RecommendationError(Exception):
    """A decision on a recommendation that cannot be taken; the message says why."""


class RecommendationNotPending(RecommendationError):
    pass


class RecommendationStale(RecommendationError):
    pass


class RecommendationRefusedByRisk(RecommendationError):
    pass


def recommendations_create(*, facts: PredictionFacts, now: datetime | None = None) -> list[Recommendation]:
    """Size a prediction for every account that trades its instrument (the default paper account if none does).

    Idempotent: a retried step finds the recommendation it made before.
    """
    bar = Bar.objects.select_related("instrument").only(
        "id", "timeframe", "timestamp", "close", "instrument__id", "instrument__symbol", "instrument__tick_size",
        "instrument__point_value", "instrument__backtest").get(pk=facts.bar_id)
    configs = list(TradingConfig.objects.raw("SELECT * FROM trading_tradingconfig WHERE instrument_id = %s",
                                             [facts.instrument_id]))
    if not configs:
        configs = [trading_config_get(account=account_default_get(), instrument=bar.instrument)]
    return [_recommend(facts, bar, config, now=now or timezone.now()) for config in configs]


def recommendations_create_for_prediction(*, prediction_id: int, now: datetime | None = None) -> list[Recommendation]:
    """`recommendations_create` for a stored prediction (by hand, in tests and benchmarks)."""
    return recommendations_create(facts=ml_selectors.prediction_facts(prediction_id=prediction_id, created=False),
                                  now=now)


def _decision_state(account: Account, day: selectors.DayFigures, instrument: Instrument, timeframe: str,
                    market_now: datetime):
    """The engine's state for a decision: `account` and `day` come from selectors.account_lock_for_decision (locked,
    read in one query); positions and entries here, and the other markets' working entries and open trades (every
    limit counts them, each side at its worst: domain.exposure)."""
    state, _ = engine_state.state_load(account=account, instrument=instrument, timeframe=timeframe, at=market_now,
                                       opening=(day.day_start, day.opening_equity), entries_today=day.trades_today,
                                       exposure_elsewhere=True)
    return state


def _recommend(facts: PredictionFacts, bar: Bar, config: TradingConfig, *, now: datetime) -> Recommendation:
    """The live shell of `engine.decide`: lock and load the account, decide, store the recommendation (and its
    entry order when the account auto-approves)."""
    instrument = bar.instrument
    market_now = bar.timestamp + timeframe_delta(bar.timeframe)
    with transaction.atomic():
        # One sizing at a time per account, so each one sees the exposure the previous one left.
        account, day = selectors.account_lock_for_decision(account_id=config.account_id, instrument=instrument,
                                                           timeframe=bar.timeframe, at=market_now,
                                                           prediction_id=facts.prediction_id)
        if day.existing_recommendation_id is not None:
            return Recommendation.objects.get(pk=day.existing_recommendation_id)
        state = _decision_state(account, day, instrument, bar.timeframe, market_now)
        clock = engine.Clock(market_now=market_now, wall_now=now, bar_close=bar.close,
                             latest_bar_timestamp=day.latest_bar_timestamp, bar_received_at=day.bar_received_at,
                             kill_switch=day.kill_switch)
        state, made, events = engine.decide(state, facts, engine_state.config_of(config), clock)
        approved = None
        for event in events:
            if isinstance(event, engine.BreakerTripped):
                account = circuit_breaker_trip(account_id=account.pk, reason=event.reason)
            elif isinstance(event, engine.Approved):
                approved = event
        recommendation = Recommendation.objects.create(
            account=account, instrument=instrument, timeframe=bar.timeframe, prediction_id=facts.prediction_id,
            model_version_id=facts.version_id, bar=bar, bar_timestamp=bar.timestamp, side=made.side,
            probability=facts.probability, payoff_ratio=facts.payoff_ratio, confidence=facts.confidence,
            agreement=facts.agreement, reference_price=made.reference_price, atr=made.atr,
            stop_distance=made.stop_distance, take_profit_distance=made.take_profit_distance,
            horizon_bars=made.horizon_bars, kelly=made.kelly, kelly_contracts=made.kelly_contracts, risk=made.risk,
            risk_decision=made.risk_decision, contracts=made.contracts, reasons=made.reasons,
            # Committed as approved only with its order (below): pending until then.
            state=State.PENDING if approved else made.state, expires_after=made.expires_after)
        if approved is not None:
            _approve_locked(recommendation, user=None, contracts=approved.contracts, reasons=(),
                            risk_decision=approved.risk_decision, client_address=None,
                            action=AuditEvent.Action.AUTO_APPROVE)
        _push_on_commit(recommendation)
    return recommendation


def recommendation_approve(*, recommendation_id: int, user, client_address: str | None = None,
                           now: datetime | None = None) -> Recommendation:
    """Approve a pending recommendation once: refused if it is no longer pending, stale, or risk now says no."""
    _require(user, "trading.approve_recommendation", "Approving a recommendation", control=AuditEvent.Action.APPROVE,
             client_address=client_address, details={"recommendation": recommendation_id})
    now = now or timezone.now()
    with _decision_refusals_audited(AuditEvent.Action.APPROVE, recommendation_id, user=user,
                                    client_address=client_address), transaction.atomic():
        recommendation = _lock(recommendation_id)
        refusal = _refusal(recommendation, user=user, client_address=client_address, now=now)
        if isinstance(refusal, RecommendationNotPending):
            raise _RefusedDecision(refusal)  # nothing to keep of this transaction; audited once it is rolled back
        if refusal is None:
            config = trading_config_get(account=recommendation.account, instrument=recommendation.instrument)
            # Risk again, with the exposure, P&L and data freshness of now rather than of the prediction.
            verdict = _reassess(recommendation, config=config, now=now)
            if verdict.trip_circuit_breaker:
                circuit_breaker_trip(account_id=recommendation.account_id, reason=engine.breaker_reason(verdict))
            if verdict.decision == Decision.BLOCK or verdict.contracts <= 0:
                recommendation.risk = verdict.as_dict()
                recommendation.risk_decision = verdict.decision.value
                refusal = _close(recommendation, State.BLOCKED, user=user, client_address=client_address, now=now,
                                 reasons=list(verdict.reasons), error=RecommendationRefusedByRisk(
                                     f"Recommendation #{recommendation.pk} was not approved: the risk manager now "
                                     f"blocks it ({'; '.join(verdict.reasons)})."))
            else:
                _approve_locked(recommendation, user=user, contracts=verdict.contracts, reasons=verdict.reasons,
                                risk_decision=verdict.decision.value, client_address=client_address,
                                action=AuditEvent.Action.APPROVE)
        _push_on_commit(recommendation)
    if refusal is not None:
        raise refusal
    return recommendation


def recommendation_reject(*, recommendation_id: int, user, client_address: str | None = None,
                          now: datetime | None = None) -> Recommendation:
    _require(user, "trading.approve_recommendation", "Rejecting a recommendation", control=AuditEvent.Action.REJECT,
             client_address=client_address, details={"recommendation": recommendation_id})
    now = now or timezone.now()
    with _decision_refusals_audited(AuditEvent.Action.REJECT, recommendation_id, user=user,
                                    client_address=client_address), transaction.atomic():
        recommendation = _lock(recommendation_id)
        if recommendation.state != State.PENDING:
            raise _RefusedDecision(_not_pending(recommendation, "rejected"))
        _close(recommendation, State.REJECTED, user=user, client_address=client_address, now=now,
               action=AuditEvent.Action.REJECT)
        _push_on_commit(recommendation)
    return recommendation


def recommendations_expire(*, instrument: Instrument, timeframe: str, latest_bar_timestamp: datetime) -> int:
    """Pending recommendations whose time to live has passed (a later bar than `expires_after` exists) expire."""
    pending = Recommendation.objects.filter(instrument=instrument, timeframe=timeframe, state=State.PENDING)
    due = engine.expire(dict(pending.values_list("pk", "expires_after")), latest_bar_timestamp)
    if not due:
        return 0  # the common bar: one read, no transaction
    with transaction.atomic():
        stale = list(Recommendation.objects.select_for_update().filter(pk__in=due, state=State.PENDING))
        for recommendation in stale:
            recommendation.state = State.EXPIRED
            recommendation.save(update_fields=["state"])
            _push_on_commit(recommendation)
    return len(stale)


class _RefusedDecision(Exception):
    """Carries a not-pending refusal out of the decision's transaction, so it is audited after the rollback."""

    def __init__(self, refusal: RecommendationNotPending):
        super().__init__(str(refusal))
        self.refusal = refusal


@contextmanager
def _decision_refusals_audited(control: str, recommendation_id, *, user, client_address: str | None):
    """Audit an approve or reject refused because the recommendation does not exist or is no longer pending (stale
    and risk refusals are recorded on the recommendation itself, in its transaction); entered outside it."""
    try:
        yield
    except _RefusedDecision as wrapped:
        recommendation = Recommendation.objects.filter(pk=wrapped.refusal.recommendation_id).first()
        audit_refusal_record(control=control, user=user, reason=str(wrapped.refusal), client_address=client_address,
                             account_id=recommendation.account_id if recommendation else None,
                             details={"recommendation": recommendation_id})
        raise wrapped.refusal from None
    except RecommendationError as exc:  # there is no such recommendation
        audit_refusal_record(control=control, user=user, reason=str(exc), client_address=client_address,
                             details={"recommendation": recommendation_id})
        raise


def _lock(recommendation_id: int) -> Recommendation:
    try:
        # A backtest's recommendations are its run's: no person decides them (its own policy does).
        return (Recommendation.objects.select_for_update(of=("self",)).filter(account__backtest=False)
                .select_related("account", "instrument").get(pk=recommendation_id))
    except Recommendation.DoesNotExist:
        raise RecommendationError(f"There is no recommendation #{recommendation_id}.") from None


def _not_pending(recommendation: Recommendation, verb: str) -> RecommendationNotPending:
    refusal = RecommendationNotPending(
        f"Recommendation #{recommendation.pk} is {recommendation.get_state_display().lower()}: "
        f"only a pending one can be {verb}.")
    refusal.recommendation_id = recommendation.pk
    return refusal


def _refusal(recommendation: Recommendation, *, user, client_address, now) -> RecommendationError | None:
    """Why the recommendation cannot be approved now (state, time to live), recording an expiry; None if it can."""
    if recommendation.state != State.PENDING:
        return _not_pending(recommendation, "approved")
    latest = selectors.bar_latest(instrument=recommendation.instrument, timeframe=recommendation.timeframe)
    if latest is not None and latest.timestamp > recommendation.expires_after:
        return _close(recommendation, State.EXPIRED, user=user, client_address=client_address, now=now,
                      error=RecommendationStale(
                          f"Recommendation #{recommendation.pk} is stale: it was made on the bar of "
                          f"{recommendation.bar_timestamp:%Y-%m-%d %H:%M} UTC and lives until the bar of "
                          f"{recommendation.expires_after:%H:%M}; the market is now at {latest.timestamp:%H:%M}."))
    return None


def _close(recommendation: Recommendation, state: str, *, user, client_address, now, reasons=None,
           error: RecommendationError | None = None, action: str = AuditEvent.Action.REFUSED):
    before = recommendation.state
    recommendation.state = state
    recommendation.decided_at = now
    recommendation.decided_by = user
    if reasons is not None:
        recommendation.reasons = reasons
    recommendation.save()
    audit_record(action=action, user=user, account=recommendation.account, recommendation=recommendation,
                 state_before=before, state_after=state, client_address=client_address,
                 details={"reason": str(error)} if error else {})
    return error


def _reassess(recommendation: Recommendation, *, config: TradingConfig, now: datetime) -> RiskVerdict:
    """Risk again at approval, by the engine's rules, with the exposure, P&L and data freshness of now."""
    latest = selectors.bar_latest(instrument=recommendation.instrument, timeframe=recommendation.timeframe)
    market_now = (latest.timestamp if latest else recommendation.bar_timestamp) + timeframe_delta(recommendation.timeframe)
    account, day = selectors.account_lock_for_decision(account_id=recommendation.account_id,
                                                       instrument=recommendation.instrument,
                                                       timeframe=recommendation.timeframe, at=market_now)
    state = _decision_state(account, day, recommendation.instrument, recommendation.timeframe, market_now)
    settings = engine_state.config_of(config)
    clock = engine.Clock(market_now=market_now, wall_now=now, bar_close=recommendation.reference_price,
                         latest_bar_timestamp=day.latest_bar_timestamp, bar_received_at=day.bar_received_at,
                         kill_switch=day.kill_switch)
    _, context = engine.risk_context(
        state, settings, clock, side=recommendation.side,
        model_health=engine.health(*ml_selectors.model_version_health(version_id=recommendation.model_version_id)))
    return assess(Proposal(side=recommendation.side, contracts=recommendation.contracts,
                           confidence=recommendation.confidence,
                           risk_per_contract=engine.stop_out_cost(recommendation.stop_distance, state.market,
                                                                  settings)),
                  context, settings.limits())


def _approve_locked(recommendation: Recommendation, *, user, contracts: int, reasons, risk_decision: str,
                    client_address: str | None, action: str) -> Order:
    """Approve (the row is locked and pending) and place the one entry order; it fills at the next bar's open."""
    before = recommendation.state
    latest = selectors.bar_latest(instrument=recommendation.instrument, timeframe=recommendation.timeframe)
    recommendation.state = State.APPROVED
    recommendation.decided_at = timezone.now()
    recommendation.decided_by = user if user is not None and user.is_authenticated else None
    if contracts != recommendation.contracts:
        recommendation.reasons = [*recommendation.reasons, *reasons]
        recommendation.contracts = contracts
    recommendation.save()
    order, _ = Order.objects.get_or_create(
        idempotency_key=f"recommendation-{recommendation.pk}-entry",
        defaults={
            "account": recommendation.account,
            "instrument": recommendation.instrument,
            "timeframe": recommendation.timeframe,
            "recommendation": recommendation,
            "kind": Order.Kind.ENTRY,
            "side": Side(recommendation.side).order_side,
            "quantity": contracts,
            "after_bar_timestamp": latest.timestamp if latest else recommendation.bar_timestamp,
            "horizon_bars": recommendation.horizon_bars,
        },
    )
    audit_record(action=action, user=user, account=recommendation.account, recommendation=recommendation,
                 state_before=before, state_after=State.APPROVED, client_address=client_address,
                 details={"contracts": contracts, "order": order.pk, "risk": risk_decision})
    # The broker hears of the order only once it is committed (a task on the trading queue submits it).
    transaction.on_commit(lambda: order_placed.send_robust(sender=Order, order_id=order.pk), robust=True)
    return order


def _push_on_commit(recommendation: Recommendation) -> None:
    if recommendation.instrument.backtest:
        return  # no dashboard shows a backtest's private market
    symbol, timeframe = recommendation.instrument.symbol, recommendation.timeframe
    payload = selectors.recommendation_payload(recommendation)
    transaction.on_commit(lambda: realtime.broadcast(symbol, timeframe, "recommendation.updated", payload),
                          robust=True)
