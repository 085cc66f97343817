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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from mlcore import selectors as ml_selectors
from mlcore.facts import PredictionFacts

from .. import realtime, selectors
from ..domain.kelly import KellyConfig, KellyInputs, kelly_size
from ..domain.risk import Decision, Proposal, RiskContext, RiskLimits, RiskVerdict, TradingState, assess
from ..domain.sides import Side
from ..domain.timeframes import timeframe_delta
from ..events import order_placed
from ..models import Account, AuditEvent, Bar, Instrument, Order, Recommendation, TradingConfig
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
        "instrument__point_value").get(pk=facts.bar_id)
    configs = list(TradingConfig.objects.raw("SELECT * FROM trading_tradingconfig WHERE instrument_id = %s",
                                             [facts.instrument_id]))
    if not configs:
        configs = [trading_config_get(account=account_default_get(), instrument=bar.instrument)]
    return [_recommend(facts, bar, config, now=now or timezone.now()) for config in configs]


def recommendations_create_for_prediction(*, prediction_id: int, now: datetime | None = None) -> list[Recommendation]:
    """`recommendations_create` for a stored prediction (by hand, in tests and benchmarks)."""
    return recommendations_create(facts=ml_selectors.prediction_facts(prediction_id=prediction_id, created=False),
                                  now=now)


@dataclass(frozen=True)
class _Bracket:
    atr: Decimal
    stop_distance: Decimal
    take_profit_distance: Decimal
    horizon_bars: int


def _bracket(facts: PredictionFacts) -> _Bracket | None:
    """The bracket distances from the model's multiples and the predicted bar's ATR (None if the ATR is unknown)."""
    if facts.atr is None or not facts.atr > 0:
        return None
    atr = Decimal(repr(facts.atr))
    return _Bracket(atr=atr, stop_distance=atr * Decimal(repr(facts.stop_loss_atr)),
                    take_profit_distance=atr * Decimal(repr(facts.take_profit_atr)), horizon_bars=facts.horizon_bars)


def _health(score: float | None, has_edge: bool) -> float:
    """A version's health, 0..1, from its 0-100 score. Not scored yet (monitoring scores a version when it is
    promoted, so this is rare): full health only for a version with a validated out-of-sample edge, none otherwise:
    an unscored "No edge" version is never sized as if it were healthy."""
    if score is None:
        return 1.0 if has_edge else 0.0
    return max(0.0, min(1.0, score / 100.0))


def _health_note(facts: PredictionFacts, health: float, factor: float, config: TradingConfig) -> str | None:
    """What the card says when model health shrank or stopped the size, and why (monitoring's reason)."""
    if factor >= 1.0:
        return None
    why = f" ({facts.health_reason})" if facts.health_reason else (
        " (not scored yet and no validated edge)" if facts.model_health is None else "")
    if factor <= 0.0:
        return (f"model health {health * 100:.0f}/100 is at or under the blocking floor "
                f"{config.health_floor * 100:.0f}: no size{why}")
    return (f"model health {health * 100:.0f}/100 is under the full-size floor {config.health_full_size_floor * 100:.0f}:"
            f" size scaled x{factor:.2f}{why}")


def _volatility_ratio(facts: PredictionFacts) -> float:
    if not facts.atr or not facts.atr_reference:
        return 1.0
    return facts.atr / facts.atr_reference


def _limits(config: TradingConfig) -> RiskLimits:
    return RiskLimits(
        min_confidence=config.min_confidence,
        max_position_contracts=config.max_position_contracts,
        max_total_contracts=config.max_total_contracts,
        daily_loss_limit=config.daily_loss_limit,
        max_drawdown=config.max_drawdown,
        max_trades_per_day=config.max_trades_per_day,
        stale_after_seconds=config.stale_after_seconds,
        health_floor=config.health_floor,
    )


def _risk_context(*, account: Account, day: selectors.DayFigures, timeframe: str, market_now: datetime,
                  wall_now: datetime, health: float, instrument: Instrument, side: str):
    """`account` and `day` come from selectors.account_lock_for_decision (locked, read in one query).

    Exposure for every limit counts working entries (approved, not filled yet) as well as open trades, each side
    at its worst (see domain.exposure); the entries of today include the working ones.
    """
    state = selectors.account_state(account=account, at=market_now, day=day)
    exposure = selectors.account_exposure(account_id=account.pk, positions=state.positions)
    context = RiskContext(
        now=market_now,
        trading_state=TradingState(account.trading_state),
        kill_switch=day.kill_switch,
        circuit_breaker_tripped=account.circuit_breaker_tripped,
        position_contracts=exposure.position_for(instrument.pk, side),
        total_contracts=exposure.total,
        daily_pnl=state.daily_pnl,
        drawdown=state.drawdown,
        trades_today=state.trades_today + exposure.working_entries,
        last_bar_age_seconds=selectors.bar_age_seconds(received_at=day.bar_received_at,
                                                       latest_timestamp=day.latest_bar_timestamp,
                                                       timeframe=timeframe, now=wall_now),
        model_health=health,
        settlement_fault=account.settlement_fault,
        committed_risk=exposure.committed_risk,
    )
    return state, context


def _recommend(facts: PredictionFacts, bar: Bar, config: TradingConfig, *, now: datetime) -> Recommendation:
    instrument = bar.instrument
    market_now = bar.timestamp + timeframe_delta(bar.timeframe)
    bracket = _bracket(facts)
    health = _health(facts.model_health, facts.version_has_edge)
    probability = facts.probability
    with transaction.atomic():
        # One sizing at a time per account, so each one sees the exposure the previous one left.
        account, day = selectors.account_lock_for_decision(account_id=config.account_id, instrument=instrument,
                                                           timeframe=bar.timeframe, at=market_now,
                                                           prediction_id=facts.prediction_id)
        if day.existing_recommendation_id is not None:
            return Recommendation.objects.get(pk=day.existing_recommendation_id)
        state, context = _risk_context(account=account, day=day, instrument=instrument, timeframe=bar.timeframe,
                                       market_now=market_now, wall_now=now, health=health, side=facts.side)
        kelly = kelly_size(
            KellyInputs(
                probability=probability,
                payoff_ratio=facts.payoff_ratio,
                confidence=facts.confidence,
                drawdown=state.drawdown,
                model_health=health,
                volatility_ratio=_volatility_ratio(facts),
                equity=state.equity,
                stop_distance=bracket.stop_distance if bracket else Decimal(0),
                point_value=instrument.point_value,
            ),
            KellyConfig(kelly_fraction=config.kelly_fraction, confidence_threshold=config.min_confidence,
                        max_contracts=config.max_contracts, max_drawdown=config.max_drawdown,
                        health_full_at=config.health_full_size_floor, health_zero_at=config.health_floor),
        )
        verdict = assess(Proposal(side=facts.side, contracts=kelly.contracts, confidence=facts.confidence,
                                  risk_per_contract=_stop_out_cost(bracket.stop_distance if bracket else None,
                                                                   instrument, config)),
                         context, _limits(config))
        if verdict.trip_circuit_breaker:
            account = circuit_breaker_trip(account_id=account.pk, reason=_breaker_reason(verdict))
        blocked = verdict.decision == Decision.BLOCK or verdict.contracts <= 0
        reasons = list(verdict.reasons)
        if kelly.contracts == 0 and kelly.reason and kelly.reason not in reasons:
            reasons.insert(0, kelly.reason)
        health_note = _health_note(facts, health, kelly.health_factor, config)
        if health_note:
            reasons.append(health_note)
        # A prediction sized after a newer bar has closed (a worker backlog, a retry) is about a market that has
        # moved on: it is recorded, never offered or auto-approved.
        superseded = day.latest_bar_timestamp is not None and day.latest_bar_timestamp > bar.timestamp
        if superseded:
            reasons.insert(0, f"expired before it was offered: the bar of {day.latest_bar_timestamp:%Y-%m-%d %H:%M} "
                              f"UTC had already closed when this prediction of {bar.timestamp:%H:%M} UTC was sized")
        recommendation = Recommendation.objects.create(
            account=account,
            instrument=instrument,
            timeframe=bar.timeframe,
            prediction_id=facts.prediction_id,
            model_version_id=facts.version_id,
            bar=bar,
            bar_timestamp=bar.timestamp,
            side=facts.side,
            probability=probability,
            payoff_ratio=facts.payoff_ratio,
            confidence=facts.confidence,
            agreement=facts.agreement,
            reference_price=bar.close,
            atr=bracket.atr if bracket else Decimal(0),
            stop_distance=bracket.stop_distance if bracket else Decimal(0),
            take_profit_distance=bracket.take_profit_distance if bracket else Decimal(0),
            horizon_bars=facts.horizon_bars,
            kelly={**kelly.as_dict(), "max_contracts": config.max_contracts,
                   "confidence_threshold": config.min_confidence, "max_drawdown": config.max_drawdown},
            kelly_contracts=kelly.contracts,
            risk=verdict.as_dict(),
            risk_decision=verdict.decision.value,
            contracts=0 if blocked or superseded else verdict.contracts,
            reasons=reasons,
            state=State.EXPIRED if superseded else State.BLOCKED if blocked else State.PENDING,
            expires_after=bar.timestamp + config.recommendation_ttl_bars * timeframe_delta(bar.timeframe),
        )
        if not blocked and not superseded and account.auto_trading:
            _approve_locked(recommendation, user=None, contracts=verdict.contracts, verdict=verdict,
                            client_address=None, action=AuditEvent.Action.AUTO_APPROVE)
        _push_on_commit(recommendation)
    return recommendation


def _breaker_reason(verdict: RiskVerdict) -> str:
    failed = [check.message for check in verdict.checks if not check.passed and check.name == "daily_loss_limit"]
    return failed[0] if failed else "daily loss limit reached"


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
                circuit_breaker_trip(account_id=recommendation.account_id, reason=_breaker_reason(verdict))
            if verdict.decision == Decision.BLOCK or verdict.contracts <= 0:
                recommendation.risk = verdict.as_dict()
                recommendation.risk_decision = verdict.decision.value
                refusal = _close(recommendation, State.BLOCKED, user=user, client_address=client_address, now=now,
                                 reasons=list(verdict.reasons), error=RecommendationRefusedByRisk(
                                     f"Recommendation #{recommendation.pk} was not approved: the risk manager now "
                                     f"blocks it ({'; '.join(verdict.reasons)})."))
            else:
                _approve_locked(recommendation, user=user, contracts=verdict.contracts, verdict=verdict,
                                client_address=client_address, action=AuditEvent.Action.APPROVE)
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
    with transaction.atomic():
        stale = list(Recommendation.objects.select_for_update().filter(
            instrument=instrument, timeframe=timeframe, state=State.PENDING,
            expires_after__lt=latest_bar_timestamp))
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
    latest = selectors.bar_latest(instrument=recommendation.instrument, timeframe=recommendation.timeframe)
    market_now = (latest.timestamp if latest else recommendation.bar_timestamp) + timeframe_delta(recommendation.timeframe)
    account, day = selectors.account_lock_for_decision(account_id=recommendation.account_id,
                                                       instrument=recommendation.instrument,
                                                       timeframe=recommendation.timeframe, at=market_now)
    _, context = _risk_context(account=account, day=day, instrument=recommendation.instrument,
                               timeframe=recommendation.timeframe, market_now=market_now, wall_now=now,
                               health=_health(*ml_selectors.model_version_health(version_id=recommendation.model_version_id)),
                               side=recommendation.side)
    return assess(Proposal(side=recommendation.side, contracts=recommendation.contracts,
                           confidence=recommendation.confidence,
                           risk_per_contract=_stop_out_cost(recommendation.stop_distance, recommendation.instrument,
                                                            config)),
                  context, _limits(config))


def _stop_out_cost(stop_distance: Decimal | None, instrument: Instrument, config: TradingConfig) -> Decimal | None:
    """What one contract loses if its stop fills: the distance plus the stop's slippage, in money, plus the
    commissions of entry and exit (a gap through the stop can cost more; the loss limit's breaker covers that)."""
    if stop_distance is None or stop_distance <= 0:
        return None
    slippage = config.slippage_ticks * instrument.tick_size
    return (stop_distance + slippage) * instrument.point_value + 2 * config.commission_per_contract


def _approve_locked(recommendation: Recommendation, *, user, contracts: int, verdict: RiskVerdict,
                    client_address: str | None, action: str) -> Order:
    """Approve (the row is locked and pending) and place the one entry order; it fills at the next bar's open."""
    before = recommendation.state
    latest = selectors.bar_latest(instrument=recommendation.instrument, timeframe=recommendation.timeframe)
    recommendation.state = State.APPROVED
    recommendation.decided_at = timezone.now()
    recommendation.decided_by = user if user is not None and user.is_authenticated else None
    if contracts != recommendation.contracts:
        recommendation.reasons = [*recommendation.reasons, *verdict.reasons]
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
                 details={"contracts": contracts, "order": order.pk, "risk": verdict.decision.value})
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
