"""The backtesting.py peer on hand-built NQ bar paths: its trades, MinhOS's (trading.domain.broker) on the same
signals, and every difference between them explained by a rule. Money worked out by hand in each test."""
import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import pytest

pytest.importorskip("backtesting")

from trading.peer_backtest import (  # noqa: E402
    RULE_NAMES,
    RULES,
    PeerSignal,
    minhos_trades,
    peer_run,
    trades_compare,
)

D = Decimal
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)
NQ = dict(tick_size=D("0.25"), point_value=D("20"), commission_per_contract=D("2.25"), slippage_ticks=1)
COMPARE = dict(tick_size=D("0.25"), point_value=D("20"), slippage_ticks=1)
FILLER = (20000, 20001, 19999, 20000)


def bars(*rows) -> pd.DataFrame:
    index = pd.DatetimeIndex([T0 + timedelta(minutes=i) for i in range(len(rows))])
    frame = pd.DataFrame([list(map(float, r)) for r in rows], columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 100.0
    return frame


def signal(row: int, side: str, stop: str, take: str, horizon: int = 10, contracts: int = 1) -> PeerSignal:
    return PeerSignal(signal_at=T0 + timedelta(minutes=row), side=side, contracts=contracts,
                      stop_distance=D(stop), take_profit_distance=D(take), horizon_bars=horizon)


def both(frame, signals):
    ours = minhos_trades(frame, signals, **NQ)
    peer = peer_run(frame, signals, cash=D("100000"), **NQ)
    return ours, peer.trades, trades_compare(ours, peer.trades, bars=frame, signals=signals, **COMPARE)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def fields(report):
    return {(d["field"], d["rule"]) for d in report["differences"]}


def test_long_take_profit():
    frame = bars(
        FILLER,
        (20000, 20001, 19999.5, 20000.5),      # signal bar
        (20000.75, 20002, 20000.25, 20001.5),  # entry: ours 20001.00, stop 19999.00, take-profit 20004.00
        (20001.5, 20005, 20001, 20004.5),      # touches the take-profit
        (20004.5, 20005, 20004, 20004.5),
    )
    ours, peer, report = both(frame, [signal(1, "long", "2", "3")])
    [o], [p] = ours, peer
    assert (o.entry_at, o.entry_price, o.exit_at, o.exit_price, o.exit_reason) == (
        at(2), D("20001.00"), at(3), D("20004.00"), "take_profit")
    assert o.net_pnl == D("55.50")  # 3.00 points x 20 - 2 x 2.25
    assert (p.entry_at, p.entry_price, p.exit_at, p.exit_price, p.exit_reason) == (
        at(2), D("20000.75"), at(3), D("20004.00"), "take_profit")
    assert p.net_pnl == D("50.50")  # 3.25 points x 20 - 2 x (2.25 + one tick's 5.00 of slippage)
    assert report["matched"] == 1 and report["unexplained"] == 0
    assert fields(report) == {("entry_price", "slippage_as_commission"), ("net_pnl", "slippage_as_commission")}


def test_short_stop_loss():
    frame = bars(
        FILLER,
        (20000, 20000.5, 19999, 19999.5),        # signal bar
        (19999.25, 20000, 19998.5, 19999.75),    # entry: ours 19999.00, stop 20001.00, take-profit 19995.00
        (19999.75, 20001.5, 19999.5, 20001.25),  # touches the stop
        FILLER,
    )
    ours, peer, report = both(frame, [signal(1, "short", "2", "4")])
    [o], [p] = ours, peer
    assert (o.entry_price, o.exit_at, o.exit_price, o.exit_reason, o.net_pnl) == (
        D("19999.00"), at(3), D("20001.25"), "stop_loss", D("-49.50"))  # -2.25 x 20 - 4.50
    assert (p.entry_price, p.exit_at, p.exit_price, p.exit_reason, p.net_pnl) == (
        D("19999.25"), at(3), D("20001.00"), "stop_loss", D("-49.50"))  # -1.75 x 20 - 14.50
    assert report["unexplained"] == 0
    assert fields(report) == {("entry_price", "slippage_as_commission"), ("exit_price", "slippage_as_commission")}


def test_time_exit():
    frame = bars(
        FILLER,
        (20000, 20000.5, 19999.5, 20000),        # signal bar
        (20000.25, 20001, 19999.75, 20000.75),   # entry, bars_held 1: ours 20000.50
        (20000.75, 20002, 20000.5, 20001.5),     # bars_held 2 = horizon: ours exits at 20001.50 - 0.25
        (20001.75, 20002, 20001, 20001.5),       # the peer's close fills at this open
        FILLER,
    )
    ours, peer, report = both(frame, [signal(1, "long", "10", "10", horizon=2, contracts=2)])
    [o], [p] = ours, peer
    assert (o.entry_price, o.exit_at, o.exit_price, o.exit_reason, o.net_pnl) == (
        D("20000.50"), at(3), D("20001.25"), "time", D("21.00"))  # 0.75 x 20 x 2 - 2 x 2 x 2.25
    assert (p.entry_price, p.exit_at, p.exit_price, p.exit_reason, p.net_pnl) == (
        D("20000.25"), at(4), D("20001.75"), "time", D("31.00"))  # 1.50 x 20 x 2 - 2 x 2 x 7.25
    assert report["unexplained"] == 0
    assert fields(report) == {("entry_price", "slippage_as_commission"), ("exit_at", "time_exit_next_open"),
                              ("exit_price", "time_exit_next_open"), ("net_pnl", "time_exit_next_open")}


def test_gap_through_the_stop():
    frame = bars(
        FILLER,
        (20000, 20000.5, 19999.5, 20000),      # signal bar
        (20000, 20000.75, 19999.5, 20000.25),  # entry: ours 20000.25, stop 19998.25, take-profit 20004.25
        (19996, 19997, 19995, 19996.5),        # opens below the stop
        FILLER,
    )
    ours, peer, report = both(frame, [signal(1, "long", "2", "4")])
    [o], [p] = ours, peer
    assert (o.exit_at, o.exit_price, o.exit_reason, o.net_pnl) == (
        at(3), D("19995.75"), "stop_loss", D("-94.50"))  # the open less a tick: -4.50 x 20 - 4.50
    assert (p.exit_at, p.exit_price, p.exit_reason, p.net_pnl) == (
        at(3), D("19996.00"), "stop_loss", D("-94.50"))  # the open: -4.00 x 20 - 14.50
    assert report["unexplained"] == 0
    assert fields(report) == {("entry_price", "slippage_as_commission"), ("exit_price", "slippage_as_commission")}


BOTH_LEVELS = (
    FILLER,
    (20000, 20000.5, 19999.5, 20000),      # signal bar
    (20000, 20000.75, 19999.5, 20000.5),   # entry: ours 20000.25, stop 19999.25, take-profit 20001.25
    (20000.5, 20001.5, 19999, 20000),      # touches both
    FILLER,
)


def test_bar_touching_both_levels_takes_the_stop_on_both_sides():
    frame = bars(*BOTH_LEVELS)
    ours, peer, report = both(frame, [signal(1, "long", "1", "1")])
    [o], [p] = ours, peer
    assert (o.exit_at, o.exit_price, o.exit_reason, o.net_pnl) == (
        at(3), D("19999.00"), "stop_loss", D("-29.50"))  # -1.25 x 20 - 4.50
    # backtesting.py processes stop-loss orders first (see RULES, same_bar_both_levels): the stop, not the target.
    assert (p.exit_at, p.exit_price, p.exit_reason, p.net_pnl) == (
        at(3), D("19999.25"), "stop_loss", D("-29.50"))  # -0.75 x 20 - 14.50
    assert report["unexplained"] == 0
    assert fields(report) == {("entry_price", "slippage_as_commission"), ("exit_price", "slippage_as_commission")}


def test_a_take_profit_against_a_stop_on_a_bar_touching_both_is_the_same_bar_rule():
    frame = bars(*BOTH_LEVELS)
    signals = [signal(1, "long", "1", "1")]
    ours = minhos_trades(frame, signals, **NQ)
    # A peer that took the take-profit on that bar (what a take-profit-first reading would give).
    peer = [dataclasses.replace(ours[0], exit_price=D("20001.25"), exit_reason="take_profit", net_pnl=D("15.50"))]
    report = trades_compare(ours, peer, bars=frame, signals=signals, **COMPARE)
    assert {d["rule"] for d in report["differences"]} == {"same_bar_both_levels"}
    assert {d["field"] for d in report["differences"]} == {"exit_reason", "exit_price", "net_pnl"}
    assert report["unexplained"] == 0
    # The same disagreement on a bar that touched one level only is not explained.
    frame.iloc[3] = [20000.5, 20001.5, 20000, 20001, 100.0]
    report = trades_compare(ours, peer, bars=frame, signals=signals, **COMPARE)
    assert report["unexplained"] == 3


def test_the_entry_bar_itself_is_checked_on_both_sides():
    frame = bars(
        FILLER,
        (20000, 20000.5, 19999.5, 20000),   # signal bar
        (20000, 20002, 20000, 20001.5),     # entry bar reaches ours' take-profit 20001.25
        FILLER,
    )
    ours, peer, report = both(frame, [signal(1, "long", "1", "1")])
    assert [(t.exit_at, t.exit_price, t.exit_reason) for t in ours] == [(at(2), D("20001.25"), "take_profit")]
    assert [(t.exit_at, t.exit_price, t.exit_reason) for t in peer] == [(at(2), D("20001.25"), "take_profit")]
    assert report["unexplained"] == 0


def test_unmatched_trades_are_classified():
    frame = bars(
        (20000, 20000.5, 19999.5, 20000),      # signal bar 0: backtesting.py never runs next() on it
        (20000, 20000.5, 19999.5, 20000),      # signal bar 1: close 20000
        (20003, 20003.5, 20002.5, 20003),      # opens 3 points up: a 2-point stop from it is above that close
        (20003, 20003.5, 20002.5, 20003),      # signal bar 3: its horizon runs past the last bar
        (20003, 20003.5, 20002.5, 20003),
        (20003, 20003.5, 20002.5, 20003),
    )
    signals = [signal(0, "long", "10", "10", horizon=1), signal(1, "long", "2", "10", horizon=1),
               signal(3, "short", "10", "10", horizon=5)]
    ours, peer, report = both(frame, signals)
    assert [(t.entry_at, t.exit_reason) for t in ours] == [(at(1), "time"), (at(2), "time")]
    assert [(t.entry_at, t.exit_at, t.exit_reason) for t in peer] == [(at(4), at(5), "end")]
    assert report["ours"] == 2 and report["peer"] == 1 and report["matched"] == 0
    assert [(d["entry_at"], d["rule"]) for d in report["differences"]] == [
        (at(1).isoformat(), "first_bar"), (at(2).isoformat(), "bracket_outside_signal_close"),
        (at(4).isoformat(), "open_at_end")]
    assert report["unexplained"] == 0


def test_every_rule_names_its_evidence():
    assert len(RULE_NAMES) == len(set(RULE_NAMES)) == len(RULES)
    assert "unexplained" not in RULE_NAMES
    for rule in RULES:
        name, text = rule.split(": ", 1)
        assert name.isidentifier() and text
