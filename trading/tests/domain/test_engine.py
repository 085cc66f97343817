"""The per-bar engine's own rules, on plain state (no database): settle and decide."""
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.domain import engine
from trading.domain.broker import BarPrices

STEP = timedelta(minutes=1)
T0 = datetime(2024, 1, 3, 15, 0, tzinfo=UTC)  # a Wednesday, in session; the trading day began at 23:00 UTC before
CONFIG = engine.Config(kelly_fraction=0.25, min_confidence=0.6, max_contracts=5, max_position_contracts=5,
                       max_total_contracts=10, daily_loss_limit=Decimal("2000"), max_drawdown=0.1,
                       max_trades_per_day=20, stale_after_seconds=180.0, health_floor=0.4,
                       health_full_size_floor=0.7, recommendation_ttl_bars=2, slippage_ticks=1,
                       commission_per_contract=Decimal("2.50"))

pytestmark = [pytest.mark.embedded]


class Facts:
    """What a decision reads of a prediction (mlcore.facts.PredictionFacts' fields)."""

    def __init__(self, at, *, side="long", p=0.7, atr=10.0, **changes):
        self.bar_timestamp, self.side, self.confidence = at, side, p
        self.p_long, self.p_short = (p, 1 - p) if side == "long" else (1 - p, p)
        self.atr, self.atr_reference, self.payoff_ratio = atr, atr, 1.5
        self.take_profit_atr, self.stop_loss_atr, self.horizon_bars = 1.5, 1.0, 5
        self.model_health, self.version_has_edge, self.health_reason = 90.0, True, ""
        self.__dict__.update(changes)

    @property
    def probability(self):
        return self.p_long if self.side == "long" else self.p_short


def state(**account):
    return engine.State(market=engine.Market(instrument_id=1, symbol="NQ", timeframe="1m",
                                             tick_size=Decimal("0.25"), point_value=Decimal("20")),
                        account=engine.AccountFigures(starting_equity=Decimal("100000"),
                                                      peak_equity=Decimal("100000"), **account))


def bar(i, open_="18000", high=None, low=None, close=None):
    o = Decimal(open_)
    c = Decimal(close) if close else o
    return BarPrices(timestamp=T0 + i * STEP, open=o, high=Decimal(high) if high else max(o, c) + 1,
                     low=Decimal(low) if low else min(o, c) - 1, close=c)


def clock(i, close="18000", latest=None):
    at = T0 + i * STEP
    return engine.Clock(market_now=at + STEP, wall_now=at + STEP, bar_close=Decimal(close),
                        latest_bar_timestamp=at if latest is None else latest)


def test_an_auto_approved_entry_fills_at_the_next_open_runs_its_bracket_and_stops_out():
    s = state(auto_trading=True)
    s, events = engine.settle(s, bar(0), CONFIG)
    s, made, events = engine.decide(s, Facts(T0), CONFIG, clock(0), key=7)
    assert made.state == engine.APPROVED and made.contracts > 0
    assert [type(e) for e in events] == [engine.Approved] and 7 in s.entries
    s, events = engine.settle(s, bar(1, "18001"), CONFIG)
    fill = next(e for e in events if isinstance(e, engine.Filled))
    assert fill.price == Decimal("18001.25") and fill.exit_reason == "" and fill.commission == Decimal(made.contracts
                                                                                                       * 2.5)
    assert fill.stop_loss == Decimal("18001.25") - 10 and fill.take_profit == Decimal("18016.25")
    s, events = engine.settle(s, bar(2, "17990", low="17980", close="17985"), CONFIG)
    exit_ = next(e for e in events if isinstance(e, engine.Filled))
    # The bar opened beyond the stop (a gap through it): the open, less a tick of slippage.
    assert exit_.exit_reason == "stop_loss" and exit_.price == Decimal("17989.75")
    assert not s.entries and s.position.ledger.quantity == 0
    snapshot = next(e for e in events if isinstance(e, engine.Snapshot))
    loss = (Decimal("18001.25") - Decimal("17989.75")) * 20 * made.contracts + 5 * made.contracts
    assert snapshot.equity == Decimal("100000") - loss


def test_an_entry_that_meets_a_gap_is_not_taken_and_its_recommendation_expires():
    s = state(auto_trading=True)
    s, made, _ = engine.decide(s, Facts(T0), CONFIG, clock(0), key=1)
    s, events = engine.settle(s, bar(3), CONFIG)  # two bars missing
    [cancelled] = [e for e in events if isinstance(e, engine.EntryCancelled)]
    assert "entry not taken" in cancelled.reason and "0:03:00" in cancelled.reason and not s.entries


def test_a_prediction_sized_after_a_newer_bar_closed_is_recorded_expired_never_approved():
    s = state(auto_trading=True)
    s, made, events = engine.decide(s, Facts(T0), CONFIG, clock(0, latest=T0 + STEP), key=1)
    assert made.state == engine.EXPIRED and made.contracts == 0 and not events and not s.entries
    assert made.reasons[0].startswith("expired before it was offered")


def test_pending_recommendations_expire_after_their_time_to_live():
    s = state()
    s, made, _ = engine.decide(s, Facts(T0), CONFIG, clock(0), key=1)
    assert made.state == engine.PENDING and s.pending == {1: T0 + 2 * STEP}
    s, events = engine.settle(s, bar(2), CONFIG)
    assert not any(isinstance(e, engine.RecommendationsExpired) for e in events)
    s, events = engine.settle(s, bar(3), CONFIG)
    assert engine.RecommendationsExpired((1,)) in events and not s.pending


def test_the_daily_loss_trips_the_breaker_and_the_daily_policy_resets_it_on_the_next_trading_day():
    s = state()
    s.position = engine.Position(ledger=engine.PositionState(quantity=2, average_price=Decimal("18000")))
    daily = replace(CONFIG, breaker_resets_daily=True)
    s, events = engine.settle(s, bar(0, "17940", close="17940"), daily)  # 2 x 60 x 20 = 2,400 lost
    [trip] = [e for e in events if isinstance(e, engine.BreakerTripped)]
    assert trip.reason.startswith("daily loss 2400.00 reached the limit 2000.00 (NQ, bar 2024-01-03 15:00")
    assert s.account.trading_state == "HALTED"
    s, events = engine.settle(s, bar(60, "17940"), daily)  # later the same trading day: held
    assert s.account.breaker_tripped and not any(isinstance(e, engine.BreakerReset) for e in events)
    next_day = int((datetime(2024, 1, 3, 23, 5, tzinfo=UTC) - T0) / STEP)
    s, events = engine.settle(s, bar(next_day, "17940", close="17940"), daily)
    assert any(isinstance(e, engine.BreakerReset) for e in events) and not s.account.breaker_tripped
    held = state()
    held.position = engine.Position(ledger=engine.PositionState(quantity=2, average_price=Decimal("18000")))
    held, _ = engine.settle(held, bar(0, "17940", close="17940"), CONFIG)
    held, _ = engine.settle(held, bar(next_day, "17940", close="17940"), CONFIG)
    assert held.account.breaker_tripped  # live and "hold": until a person resets it


def test_the_day_opens_at_the_last_snapshot_before_it_and_counts_its_own_entries():
    s = state(auto_trading=True)
    s, _ = engine.settle(s, bar(0, "18000"), CONFIG)
    first_day = engine.figures(s, T0 + STEP)
    assert first_day.daily_pnl == 0 and first_day.trades_today == 0
    s, _, _ = engine.decide(s, Facts(T0), CONFIG, clock(0), key=1)
    s, _ = engine.settle(s, bar(1, "18000"), CONFIG)
    assert engine.figures(s, T0 + 2 * STEP).trades_today == 1
    evening = T0 + timedelta(hours=8, minutes=30)  # 23:30 UTC: the next trading day
    assert engine.figures(s, evening).trades_today == 0
    assert engine.opening_equity(s, engine.trading_day_start(evening)) == s.last_snapshot[1]


def test_values_are_kept_at_the_precision_their_column_stores():
    facts = Facts(T0, atr=10.123456789)
    s, made, _ = engine.decide(state(), facts, CONFIG, clock(0))
    assert made.atr == Decimal("10.123457") and made.stop_distance == Decimal("10.123457")
    assert made.take_profit_distance == Decimal("15.185185")  # 15.1851851835 rounded half up
    assert engine.cents(Decimal("0.005")) == Decimal("0.01") and engine.cents(Decimal("-0.005")) == Decimal("-0.01")


def test_a_decision_without_a_key_leaves_the_state_as_it_was():
    s = state(auto_trading=True)
    s, made, events = engine.decide(s, Facts(T0), CONFIG, clock(0))
    assert made.state == engine.APPROVED and isinstance(events[0], engine.Approved)
    assert not s.entries and not s.pending


def test_a_settlement_fault_of_this_market_is_cleared_by_its_next_bar_not_by_another_markets():
    s = state(settlement_fault="bar ES 1m 2024-01-03 14:59 UTC: RuntimeError: boom")
    s, events = engine.settle(s, bar(0), CONFIG)
    assert s.account.settlement_fault and not any(isinstance(e, engine.FaultCleared) for e in events)
    s.account.settlement_fault = "bar NQ 1m 2024-01-03 14:59 UTC: RuntimeError: boom"
    s, events = engine.settle(s, bar(1), CONFIG)
    assert not s.account.settlement_fault and any(isinstance(e, engine.FaultCleared) for e in events)


def test_a_bracket_catches_up_on_the_bars_it_missed():
    s = state(auto_trading=True)
    s, made, _ = engine.decide(s, Facts(T0), CONFIG, clock(0), key=1)
    s, _ = engine.settle(s, bar(1, "18000"), CONFIG)
    missed = (bar(2, "18000", low="17980", close="17990"),)  # its stop was touched while settlement was down
    s, events = engine.settle(s, bar(3, "18005"), CONFIG, missed=missed)
    exit_ = next(e for e in events if isinstance(e, engine.Filled))
    assert exit_.exit_reason == "stop_loss" and exit_.timestamp == T0 + 2 * STEP
