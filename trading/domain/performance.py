"""The figures of a trading record (pure): what a backtest report and the paper account's record are judged by.

Inputs are plain values: an equity curve (one point per bar, oldest first, money) and closed trades (`TradeRecord`).
Money stays Decimal where it is summed from fills (net and gross P&L, commissions, slippage); ratios are floats.

Definitions (each function says its own):
- returns      per bar, r_t = E_t / E_{t-1} - 1 over the equity curve;
- Sharpe       mean(r) / sd(r) * sqrt(periods per year), sd with ddof 1 (no risk-free rate: futures margin earns it);
- Sortino      mean(r) / downside deviation * sqrt(periods per year), the downside deviation
               sqrt(mean(min(r, 0)^2)) over all bars;
- drawdown     1 - E_t / max(E_0..E_t); the maximum, and its duration: the longest time from a peak to the first
               point back at or above it (or to the end, still under water);
- Calmar       annualised return / maximum drawdown, the annualised return (E_end / E_0)^(periods per year / n) - 1;
- hit rate     share of closed trades whose net P&L is > 0; profit factor gross wins / gross losses of net P&L
               (None without a losing trade); expectancy the mean net P&L per trade;
- exposure     share of bars with a position open at the bar's close.

The formulas above answer wherever they are defined; whether a window can *estimate* a ratio is a separate rule,
written once here (`window_reason`, the `*_estimate` functions, `ratio_figures`): a figure it cannot estimate is
None with the reason, which the report keeps beside the figure as `<name>_na`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

CALIBRATION_BUCKETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)  # upper edges; a traded p is >= 0.5

TRADING_DAYS_PER_YEAR = 252  # as periods_per_year counts them (trading/backtest.py)
# Sharpe and Sortino scale by sqrt(periods per year), which cannot blow up; what limits them is the sample. The
# per-bar ratio's standard error is about sqrt((1 + SR^2 / 2) / n) (Lo, 2002) and the sample deviation's own
# relative error about 1 / sqrt(2 (n - 1)): with fewer than 30 returns the deviation is off by more than 13 %, and the
# normal approximation behind both is not yet usable. 30 is the usual floor for a mean and a deviation.
MIN_RETURNS = 30
# The annual return raises the window's growth to the power periods_per_year / n: over 2 trading days that is the
# 126th power, and +18 % becomes +10^9 %. Over a quarter the power is at most 4, so the window's own noise is
# magnified at most about fourfold; below it the figure says more about the exponent than about the strategy.
# (GIPS forbids annualising under a year; a quarter is the shortest window a desk would still quote one for.)
MIN_ANNUAL_TRADING_DAYS = 63
ANNUAL_FIGURES = ("annualised_return", "calmar")
RATIO_FIGURES = ("sharpe", "sortino", *ANNUAL_FIGURES)


@dataclass(frozen=True)
class TradeRecord:
    side: str  # long | short
    contracts: int
    entry_at: datetime
    exit_at: datetime
    gross_pnl: Decimal  # before commissions (slippage is inside the fill prices)
    commission: Decimal
    slippage: Decimal  # what slippage cost, in money (the gap between the fill and the bar's price)
    probability: float | None = None  # the calibrated p the trade was sized on
    kelly_fraction: float | None = None  # the fraction of equity Kelly bet

    @property
    def net_pnl(self) -> Decimal:
        return self.gross_pnl - self.commission


def bar_returns(equity) -> np.ndarray:
    e = np.asarray(equity, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2:
        return np.empty(0)
    if (e <= 0).any() or not np.isfinite(e).all():
        raise ValueError("equity must be finite and positive at every point")
    return e[1:] / e[:-1] - 1.0


def sharpe(returns, periods_per_year: float) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    sd = r.std(ddof=1)
    return None if sd == 0 else float(r.mean() / sd * math.sqrt(periods_per_year))


def sortino(returns, periods_per_year: float) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return None if downside == 0 else float(r.mean() / downside * math.sqrt(periods_per_year))


@dataclass(frozen=True)
class Drawdown:
    max_fraction: float  # 0.1 = 10 % under the peak
    max_money: float
    peak_at: datetime | None
    trough_at: datetime | None
    longest: timedelta  # peak to recovery (or to the end)
    longest_from: datetime | None
    recovered: bool  # the longest one ended back at the peak


def drawdown(times, equity) -> Drawdown:
    e = np.asarray(equity, dtype=np.float64)
    if len(e) == 0:
        return Drawdown(0.0, 0.0, None, None, timedelta(0), None, True)
    if len(times) != len(e):
        raise ValueError(f"{len(times)} times for {len(e)} equity points")
    peaks = np.maximum.accumulate(e)
    under = 1.0 - e / peaks
    money = peaks - e
    worst = int(np.argmax(under))
    peak_index = int(np.flatnonzero(e[:worst + 1] == peaks[worst])[-1]) if under[worst] > 0 else worst
    longest, longest_from, recovered = timedelta(0), None, True
    start = None
    for i in range(len(e)):
        if e[i] < peaks[i]:
            if start is None:
                start = i - 1
        elif start is not None:
            span = times[i] - times[start]
            if span > longest:
                longest, longest_from, recovered = span, times[start], True
            start = None
    if start is not None:
        span = times[-1] - times[start]
        if span > longest:
            longest, longest_from, recovered = span, times[start], False
    return Drawdown(float(under[worst]), float(money[worst]), times[peak_index] if under[worst] > 0 else None,
                    times[worst] if under[worst] > 0 else None, longest, longest_from, recovered)


def annualised_return(equity, periods_per_year: float) -> float | None:
    e = np.asarray(equity, dtype=np.float64)
    if len(e) < 2 or e[0] <= 0:
        return None
    periods = len(e) - 1
    with np.errstate(over="ignore"):
        annual = float((e[-1] / e[0]) ** (periods_per_year / periods) - 1.0)
    # A short stretch compounded over a year can exceed any float: no figure rather than infinity.
    return annual if math.isfinite(annual) else None


def calmar(equity, periods_per_year: float, max_drawdown: float) -> float | None:
    annual = annualised_return(equity, periods_per_year)
    if annual is None or max_drawdown <= 0:
        return None
    return float(annual / max_drawdown)


@dataclass(frozen=True)
class Estimate:
    """A figure the window can estimate (reason None), or None and why not."""
    value: float | None
    reason: str | None = None


def _days(days: float) -> str:
    shown = f"{days:,.0f}" if days >= 10 else f"{days:.2g}"
    return f"{shown} trading day{'' if shown == '1' else 's'}"


def window_reason(figure: str, *, periods: int, periods_per_year: float) -> str | None:
    """Why a window of `periods` returns (bars) is too short to estimate `figure` (one of RATIO_FIGURES); None when it
    is long enough. The only place the thresholds are applied."""
    if figure not in RATIO_FIGURES:
        raise ValueError(f"unknown figure {figure!r}; use one of {', '.join(RATIO_FIGURES)}")
    if periods_per_year <= 0:
        raise ValueError(f"periods per year must be positive, not {periods_per_year}")
    if figure in ANNUAL_FIGURES:
        days = periods / periods_per_year * TRADING_DAYS_PER_YEAR
        if days < MIN_ANNUAL_TRADING_DAYS:
            power = f"; its return would be raised to the power {periods_per_year / periods:,.0f}" if periods else ""
            return (f"the window is {_days(days)} of bars; an annual figure needs at least "
                    f"{MIN_ANNUAL_TRADING_DAYS} (a quarter){power}")
        return None
    if periods < MIN_RETURNS:
        returns = f"{periods} bar return{'' if periods == 1 else 's'}"
        return f"the window has {returns}; the ratio needs at least {MIN_RETURNS}"
    return None


def _returns_ratio_estimate(name: str, ratio, returns, periods_per_year: float, undefined: str) -> Estimate:
    """A ratio of the bar returns, or why not: the window too short for it, or `undefined` (its denominator is 0)."""
    r = np.asarray(returns, dtype=np.float64)
    reason = window_reason(name, periods=len(r), periods_per_year=periods_per_year)
    if reason:
        return Estimate(None, reason)
    value = ratio(r, periods_per_year)
    return Estimate(value, None if value is not None else undefined)


def sharpe_estimate(returns, periods_per_year: float) -> Estimate:
    return _returns_ratio_estimate("sharpe", sharpe, returns, periods_per_year,
                                   "the returns never vary (the equity did not move)")


def sortino_estimate(returns, periods_per_year: float) -> Estimate:
    return _returns_ratio_estimate("sortino", sortino, returns, periods_per_year,
                                   "no bar lost money: the downside deviation is zero")


def annualised_return_estimate(equity, periods_per_year: float) -> Estimate:
    periods = max(len(equity) - 1, 0)
    reason = window_reason("annualised_return", periods=periods, periods_per_year=periods_per_year)
    if reason:
        return Estimate(None, reason)
    value = annualised_return(equity, periods_per_year)
    return Estimate(value, None if value is not None else "compounded over a year the return exceeds any number")


def calmar_estimate(equity, periods_per_year: float, max_drawdown: float) -> Estimate:
    annual = annualised_return_estimate(equity, periods_per_year)
    if annual.value is None:
        return annual
    if max_drawdown <= 0:
        return Estimate(None, "no drawdown: the equity never fell below a peak")
    return Estimate(float(annual.value / max_drawdown))


def ratio_figures(equity, periods_per_year: float, max_drawdown: float) -> dict:
    """Sharpe, Sortino, the annual return and Calmar of an equity curve (one point per bar, the starting equity first),
    each beside its `<name>_na` reason: {"calmar": None, "calmar_na": "the window is 2 trading days…", …}."""
    returns = bar_returns(equity)
    estimates = {"sharpe": sharpe_estimate(returns, periods_per_year),
                 "sortino": sortino_estimate(returns, periods_per_year),
                 "annualised_return": annualised_return_estimate(equity, periods_per_year),
                 "calmar": calmar_estimate(equity, periods_per_year, max_drawdown)}
    figures = {}
    for name, estimate in estimates.items():
        figures[name], figures[f"{name}_na"] = estimate.value, estimate.reason
    return figures


def trade_figures(trades: list[TradeRecord]) -> dict:
    """Counts, hit rate, profit factor, expectancy and the money totals of closed trades."""
    n = len(trades)
    net = [t.net_pnl for t in trades]
    wins = [p for p in net if p > 0]
    losses = [p for p in net if p < 0]
    gross_win, gross_loss = sum(wins, Decimal(0)), -sum(losses, Decimal(0))
    return {
        "trades": n,
        "wins": len(wins),
        "losses": len(losses),
        "hit_rate": len(wins) / n if n else None,
        "profit_factor": float(gross_win / gross_loss) if gross_loss > 0 else None,
        "expectancy": sum(net, Decimal(0)) / n if n else None,
        "net_pnl": sum(net, Decimal(0)),
        "gross_pnl": sum((t.gross_pnl for t in trades), Decimal(0)),
        "commissions": sum((t.commission for t in trades), Decimal(0)),
        "slippage": sum((t.slippage for t in trades), Decimal(0)),
        "sizes": dict(sorted(Counter(t.contracts for t in trades).items())),
    }


def exposure(in_position) -> float | None:
    flags = np.asarray(in_position, dtype=bool)
    return float(flags.mean()) if len(flags) else None


def trades_per_day(trades: list[TradeRecord], days: float) -> float | None:
    return len(trades) / days if days > 0 else None


def calibration_table(trades: list[TradeRecord], edges=CALIBRATION_BUCKETS) -> list[dict]:
    """Per bucket of the traded probability: count, mean predicted p, realised hit rate (net P&L > 0) and the mean
    Kelly fraction bet; buckets without a trade are left out. The lower edge is inclusive, the upper exclusive (the
    last one closed)."""
    rows = []
    lower = 0.0
    for upper in edges:
        last = upper == edges[-1]
        chosen = [t for t in trades if t.probability is not None
                  and lower <= t.probability and (t.probability <= upper if last else t.probability < upper)]
        if chosen:
            kelly = [t.kelly_fraction for t in chosen if t.kelly_fraction is not None]
            rows.append({
                "bucket": f"{lower:.2f}–{upper:.2f}", "n": len(chosen),
                "predicted": float(np.mean([t.probability for t in chosen])),
                "realised": sum(1 for t in chosen if t.net_pnl > 0) / len(chosen),
                "kelly_fraction": float(np.mean(kelly)) if kelly else None,
            })
        lower = upper
    return rows


def per_side(trades: list[TradeRecord]) -> dict:
    return {side: trade_figures([t for t in trades if t.side == side]) for side in ("long", "short")}
