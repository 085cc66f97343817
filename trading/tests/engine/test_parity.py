"""Parity: the memory engine and the database replay through the live services, over the same bars, leave the same
records, field by field: every recommendation (side, contracts, Kelly, risk, state, reasons), order, fill, equity
snapshot, the position and the account's breaker. Several accounts' configurations are exercised over one window."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from mlcore import services as ml_services
from trading import backtest, services
from trading.domain.synthetic import DEMO_SIGNAL, SyntheticParams, generate_bars, session_timestamps
from trading.models import Account, AuditEvent, EquitySnapshot, Fill, Order, Position, Recommendation
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

TIMEFRAME = "5m"
HISTORY_BARS = 1500
WINDOW_BARS = 2100  # over a week: weekend, daily breaks, rollovers
SERIES_START = datetime(2024, 3, 4, tzinfo=UTC)
PLANTED = SyntheticParams(**{**DEMO_SIGNAL, "signal_edge": 0.8, "signal_persist": 20})

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
AUDIT_FIELDS = ("action", "state_before", "state_after")


@pytest.fixture(scope="module")
def market(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        nq = InstrumentFactory(symbol="NQP")
        stamps = session_timestamps(SERIES_START, HISTORY_BARS + WINDOW_BARS, timeframe=TIMEFRAME)
        frame = generate_bars(stamps, seed=11, start_price=18000.0, tick_size=0.25, params=PLANTED,
                              timeframe=TIMEFRAME)
        services.bars_ingest(instrument=nq, timeframe=TIMEFRAME, frame=frame)
        version = ml_services.model_version_train(symbol="NQP", timeframe=TIMEFRAME, preset="fast", seed=0,
                                                  promote=False, until=frame.timestamp.iloc[HISTORY_BARS - 1])
        yield nq, version, frame.iloc[HISTORY_BARS:].reset_index(drop=True)


def records(run):
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
        "account": list(Account.objects.filter(pk=account.pk).values_list(*ACCOUNT_FIELDS)),
        "audit": sorted(AuditEvent.objects.filter(account=account).values_list(*AUDIT_FIELDS)),
    }


def differences(a: dict, b: dict) -> list[str]:
    found = []
    for name in a:
        left, right = a[name], b[name]
        if len(left) != len(right):
            found.append(f"{name}: {len(left)} rows against {len(right)}")
        for i, (x, y) in enumerate(zip(left, right)):
            if x != y:
                found.append(f"{name}[{i}]: {x!r} != {y!r}")
    return found


def run_with(nq, version, window, engine, *, breaker=backtest.BREAKER_HOLD, approval="approve", **config):
    account = Account.objects.create(name=f"parity-{engine}-{len(config)}-{Account.objects.count()}",
                                     starting_equity=Decimal("100000"))
    services.trading_config_get(account=account, instrument=nq)
    if config:
        from trading.models import TradingConfig

        TradingConfig.objects.filter(account=account, instrument=nq).update(**config)
    run = backtest.backtest_create(symbol=nq.symbol, timeframe=TIMEFRAME, start=window.timestamp.iloc[0].to_pydatetime(),
                                   end=window.timestamp.iloc[-1].to_pydatetime(), version_id=version.pk,
                                   account_name=account.name, engine=engine, breaker=breaker, approval=approval)
    return backtest.backtest_execute(run_id=run.pk)


def test_memory_and_database_engines_leave_the_same_records(market):
    nq, version, window = market
    db = run_with(nq, version, window, "db")
    memory = run_with(nq, version, window, "memory")
    a, b = records(db), records(memory)
    assert len(a["recommendations"]) > 2000
    found = differences(a, b)
    assert not found, "\n".join(found[:30])
