"""Parity: the memory engine and the database replay through the live services, over the same 2,100 five-minute bars
(eight trading days: daily breaks, a weekend, a holiday, a price gap at an open), leave the same records, field by
field: every recommendation (side, contracts, Kelly, risk, state, reasons), order, fill, equity snapshot, the position,
the account's breaker and the audit trail. Configurations: auto-approval with the daily breaker policy, auto-approval
holding a tripped breaker, and record-only (nothing approved, everything expires); limits tight enough that sizes
are reduced by the position limit and the loss budget and the daily loss breaker trips.

The model is planted (its probabilities a fixed function of the bar, some of them confident just before a gap, so an
approved entry meets the gap): the engines, not the model, are compared here; that the batched prediction equals the
one-bar prediction bit for bit is mlcore/tests/test_predict_frame.py's. A planted difference in one engine's rules
is caught by the same comparison.
"""
import hashlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from mlcore.models import ModelVersion
from trading import backtest, services
from trading.domain import engine
from trading.domain.synthetic import DEMO_SIGNAL, SyntheticParams, generate_bars, session_timestamps
from trading.models import Account, AuditEvent, EquitySnapshot, Fill, Order, Position, Recommendation, TradingConfig
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

TIMEFRAME = "5m"
STEP = timedelta(minutes=5)
WARMUP_BARS = 40
WINDOW_BARS = 2100
SERIES_START = datetime(2024, 6, 30, 22, 0, tzinfo=UTC)  # Sunday evening: the week of July 4th (a holiday)
LABEL = {"tp_atr": 1.5, "sl_atr": 1.0, "horizon": 12}
JUMP_AT = pd.Timestamp("2024-07-01 23:30", tz="UTC")  # 19:30 New York, early in the trading day
OUTAGE_AT = pd.Timestamp("2024-07-01 04:00", tz="UTC")  # midnight New York, in session

RECOMMENDATION_FIELDS = ("bar_timestamp", "side", "probability", "payoff_ratio", "confidence", "agreement",
                         "reference_price", "atr", "stop_distance", "take_profit_distance", "horizon_bars", "kelly",
                         "kelly_contracts", "risk", "risk_decision", "contracts", "reasons", "state", "expires_after",
                         "executed_at")
ORDER_FIELDS = ("kind", "side", "quantity", "status", "after_bar_timestamp", "take_profit", "stop_loss",
                "horizon_bars", "bars_held", "last_bar_timestamp", "closed")
FILL_FIELDS = ("side", "quantity", "price", "commission", "timestamp")
EQUITY_FIELDS = ("timestamp", "equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown")
POSITION_FIELDS = ("quantity", "average_price", "realized_pnl", "commissions", "fills", "cost_basis", "mark_price",
                   "unrealized_pnl")
ACCOUNT_FIELDS = ("peak_equity", "trading_state", "circuit_breaker_reason")
TIGHT = {"max_contracts": 6, "max_position_contracts": 4, "max_total_contracts": 5, "daily_loss_limit": "3000",
         "min_confidence": 0.6, "recommendation_ttl_bars": 2}
# name -> (the run's policies, the bars of the window it runs): the whole window with auto-approval and the daily
# breaker policy; the held breaker differs from it only once tripped, so it runs up to a day past the trip (at the
# gap); record-only has no trades, and its expiries repeat every bar (the database replay costs tens of ms a bar, and
# the suite has to stay under 20 minutes).
CONFIGURATIONS = {
    "approve, daily breaker policy": ({"approval": "approve", "breaker": backtest.BREAKER_DAILY}, WINDOW_BARS),
    "record only": ({"approval": "record", "breaker": backtest.BREAKER_HOLD}, 1000),
    "approve, breaker held": ({"approval": "approve", "breaker": backtest.BREAKER_HOLD}, 700),
}


def _bars() -> pd.DataFrame:
    stamps = session_timestamps(SERIES_START, WARMUP_BARS + WINDOW_BARS + 300, timeframe=TIMEFRAME)
    frame = generate_bars(stamps, seed=5, start_price=18000.0, tick_size=0.25,
                          params=SyntheticParams(**DEMO_SIGNAL), timeframe=TIMEFRAME)
    # A holiday: July 4th's session is closed (its bars are taken out).
    local = frame.timestamp.dt.tz_convert("America/New_York")
    frame = frame[~((local.dt.month == 7) & (local.dt.day == 4) & (local.dt.hour < 17))].reset_index(drop=True)
    # A feed outage in session: three bars missing (an entry approved before it is not taken after it).
    frame = frame[~frame.timestamp.between(OUTAGE_AT, OUTAGE_AT + 2 * STEP)].reset_index(drop=True)
    # A gap: everything from JUMP_AT on moves up 500 points.
    jump = frame.index[frame.timestamp >= JUMP_AT][0]
    for column in ("open", "high", "low", "close"):
        frame.loc[jump:, column] += 500.0
    return frame.iloc[:WARMUP_BARS + WINDOW_BARS].reset_index(drop=True)


class Planted:
    """A model whose answer is a fixed function of the bar: confident on a seeded third of the bars and on every bar
    before a gap, unsure otherwise; the side and the ATR vary with the bar too."""

    def __init__(self, version_id: int, before_gaps: set, before_jump: set, quiet: set):
        self.version_id = version_id
        self.quiet = quiet  # unsure: no trade open when the feed outage comes
        self.bars_needed = WARMUP_BARS
        self.before_gaps = before_gaps
        self.before_jump = before_jump  # confident shorts: the jump up hits them beyond their stops (the breaker)

    def predict(self, window: pd.DataFrame) -> dict:
        last = window.iloc[-1]
        stamp = last.timestamp
        digest = hashlib.sha256(stamp.isoformat().encode()).digest()
        confident = digest[0] % 3 == 0 or stamp in self.before_gaps
        p = 0.62 + (digest[1] / 255) * 0.3 if confident else 0.45 + (digest[1] / 255) * 0.12
        side = "long" if digest[2] % 2 else "short"
        atr = 6.0 + digest[3] / 32.0
        if stamp in self.before_jump:
            confident, p, side, atr = True, 0.9, "short", 40.0
        elif stamp in self.quiet:
            confident, p = False, 0.5
        p_long, p_short = (p, 1 - p) if side == "long" else (1 - p, p)
        return {"p_long": p_long, "p_short": p_short, "side": side, "confidence": p, "agreement": 0.75,
                "members": {"long": {"m": p_long}, "short": {"m": p_short}}, "meta_raw": {"long": p_long,
                                                                                      "short": p_short},
                "member_ms": {"m": 0.0}, "latency_ms": 0.5, "atr": atr, "atr_reference": 9.0}

    def predict_frame(self, frame: pd.DataFrame, *, first: int = 0) -> list:
        return [self.predict(frame.iloc[:index + 1]) for index in range(first, len(frame))]


@pytest.fixture
def market(monkeypatch):
    nq = InstrumentFactory(symbol="NQP")
    frame = _bars()
    services.bars_ingest(instrument=nq, timeframe=TIMEFRAME, frame=frame)
    window = frame.iloc[WARMUP_BARS:].reset_index(drop=True)
    version = ModelVersion.objects.create(
        instrument=nq, timeframe=TIMEFRAME, status=ModelVersion.Status.CANDIDATE, preset="fast", seed=0,
        data_start=frame.timestamp.iloc[0], data_end=frame.timestamp.iloc[WARMUP_BARS - 1], n_bars=WARMUP_BARS,
        feature_names=["x"], feature_window=WARMUP_BARS - 9, sequence_length=10, hyperparameters={},
        label_settings=LABEL, payoff_ratio=1.5, health_score=90.0, has_edge=True)
    stamps = list(window.timestamp)
    before_gaps = {a for a, b in zip(stamps, stamps[1:]) if b - a > STEP}
    before_jump = {t for t in stamps if JUMP_AT - 3 * STEP <= t < JUMP_AT - STEP}
    quiet = {t for t in stamps if OUTAGE_AT - 4 * STEP * 12 <= t < OUTAGE_AT - STEP}
    planted = Planted(version.pk, before_gaps, before_jump, quiet)
    monkeypatch.setattr("mlcore.services._pinned_model", lambda version_id: planted)
    return nq, version, window


def run_with(nq, version, window, engine_name, *, approval, breaker):
    account = Account.objects.create(name=f"parity-{engine_name}-{Account.objects.count()}")
    config = services.trading_config_get(account=account, instrument=nq)
    TradingConfig.objects.filter(pk=config.pk).update(**TIGHT)
    run = backtest.backtest_create(symbol=nq.symbol, timeframe=TIMEFRAME, start=window.timestamp.iloc[0],
                                   end=window.timestamp.iloc[-1], version_id=version.pk, account_name=account.name,
                                   engine=engine_name, breaker=breaker, approval=approval)
    return backtest.backtest_execute(run_id=run.pk)


def records(run) -> dict:
    account = run.account
    recommendations = list(Recommendation.objects.filter(account=account).order_by("bar_timestamp"))
    ids = {r.pk: i for i, r in enumerate(recommendations)}
    orders = list(Order.objects.filter(account=account).order_by("recommendation__bar_timestamp", "parent_id", "id"))
    return {
        "recommendations": [tuple(getattr(r, f) for f in RECOMMENDATION_FIELDS) for r in recommendations],
        "orders": [(ids[o.recommendation_id], *(getattr(o, f) for f in ORDER_FIELDS)) for o in orders],
        "fills": [(ids[f.order.recommendation_id], f.order.kind, *(getattr(f, n) for n in FILL_FIELDS))
                  for f in Fill.objects.filter(account=account).select_related("order").order_by("timestamp", "id")],
        "equity": list(EquitySnapshot.objects.filter(account=account).order_by("timestamp")
                       .values_list(*EQUITY_FIELDS)),
        "position": list(Position.objects.filter(account=account).values_list(*POSITION_FIELDS)),
        "account": [tuple(_run_free(v) if isinstance(v, str) else v for v in row)
                    for row in Account.objects.filter(pk=account.pk).values_list(*ACCOUNT_FIELDS)],
        "audit": sorted((a.action, a.state_before, a.state_after, _audit_details(a, ids))
                        for a in AuditEvent.objects.filter(account=account)),
    }


def _audit_details(event: AuditEvent, ids: dict) -> str:
    details = dict(event.details)
    details.pop("order", None)  # a row id
    return _run_free(f"{ids.get(event.recommendation_id)} {sorted(details.items())}")


def _run_free(text: str) -> str:
    """Each run trades its own private market (BT<run>.<symbol>), named in the breaker's reasons: the run aside."""
    return re.sub(r"BT\d+\.", "BT#.", re.sub(r"backtest #\d+", "backtest #", text))


def differences(a: dict, b: dict) -> list[str]:
    found = []
    for name in a:
        if len(a[name]) != len(b[name]):
            found.append(f"{name}: {len(a[name])} rows against {len(b[name])}")
        found += [f"{name}[{i}]: {x!r} != {y!r}" for i, (x, y) in enumerate(zip(a[name], b[name])) if x != y]
    return found


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_the_memory_engine_and_the_database_replay_leave_the_same_records(market, name):
    nq, version, window = market
    policies, bars = CONFIGURATIONS[name]
    window = window.iloc[:bars]
    db = run_with(nq, version, window, backtest.ENGINE_DB, **policies)
    memory = run_with(nq, version, window, backtest.ENGINE_MEMORY, **policies)
    assert (db.report["engine"]["name"], memory.report["engine"]["name"]) == ("db", "memory")
    found = differences(records(db), records(memory))
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:30])
    # What the window exercised (so a parity of empty records cannot pass).
    made = Recommendation.objects.filter(account=memory.account)
    assert made.count() >= min(bars, 2000) - 200  # a prediction every bar but those outside the session
    failed = {c["name"] for r in made.values_list("risk", flat=True) for c in r["checks"] if not c["passed"]}
    assert {"min_confidence", "trading_session"} <= failed, failed
    orders = Order.objects.filter(account=memory.account)
    if policies["approval"] == "record":
        assert not orders.exists()
        assert made.filter(state="expired").count() > 100 and not made.filter(state="pending").count() > 2
        return
    assert made.filter(risk_decision="reduce").exists()
    assert {"loss_budget", "position_limit", "daily_loss_limit"} <= failed, failed
    trips = AuditEvent.objects.filter(account=memory.account, action=AuditEvent.Action.CIRCUIT_BREAKER_TRIP)
    assert trips.exists()
    exits = set(orders.filter(parent__isnull=False).values_list("kind", flat=True))
    assert {"take_profit", "stop_loss"} <= exits, exits
    gap_stop = [f for f in Fill.objects.filter(account=memory.account, order__kind="stop_loss").select_related("order")
                if (f.price > f.order.stop_loss) == (f.side == "buy") and f.price != f.order.stop_loss]
    assert gap_stop, "no stop was filled beyond its level (a gap through it)"
    assert made.filter(reasons__icontains="entry not taken").exists()  # an approval met a gap: not taken
    resets = AuditEvent.objects.filter(account=memory.account, action=AuditEvent.Action.CIRCUIT_BREAKER_RESET)
    if policies["breaker"] == backtest.BREAKER_DAILY:
        assert resets.exists()
    else:
        assert not resets.exists() and Account.objects.get(pk=memory.account_id).circuit_breaker_tripped


def test_a_planted_difference_in_one_engine_is_caught(market, monkeypatch):
    nq, version, window = market
    window = window.iloc[150:450]  # the gap, its breaker trip and the trades before it
    db = run_with(nq, version, window, backtest.ENGINE_DB, approval="approve", breaker=backtest.BREAKER_HOLD)
    real = engine.Config.costs

    def one_more_tick(self, market):  # a rule changed in the memory run only: one more tick of slippage
        costs = real(self, market)
        return type(costs)(tick_size=costs.tick_size, slippage_ticks=costs.slippage_ticks + 1,
                           commission_per_contract=costs.commission_per_contract)

    monkeypatch.setattr(engine.Config, "costs", one_more_tick)
    memory = run_with(nq, version, window, backtest.ENGINE_MEMORY, approval="approve", breaker=backtest.BREAKER_HOLD)
    found = differences(records(db), records(memory))
    assert any(line.startswith("fills[") for line in found), found[:5]
    assert any(line.startswith("equity[") for line in found), found[:5]
