"""The figures of a trading record against values computed by hand."""
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.domain import performance as perf

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def trade(net_gross: str, commission: str = "4.50", *, side="long", contracts=1, p=None, kelly=None, slippage="5"):
    return perf.TradeRecord(side=side, contracts=contracts, entry_at=T0, exit_at=T0 + MINUTE,
                            gross_pnl=Decimal(net_gross), commission=Decimal(commission), slippage=Decimal(slippage),
                            probability=p, kelly_fraction=kelly)


def test_returns_sharpe_and_sortino_by_hand():
    equity = [100.0, 110.0, 99.0, 108.9]  # +10 %, -10 %, +10 %
    r = perf.bar_returns(equity)
    assert r == pytest.approx([0.1, -0.1, 0.1])
    mean, sd = 0.1 / 3, math.sqrt(((0.1 - 0.1 / 3) ** 2 * 2 + (-0.1 - 0.1 / 3) ** 2) / 2)
    assert perf.sharpe(r, 252) == pytest.approx(mean / sd * math.sqrt(252))
    downside = math.sqrt(0.01 / 3)
    assert perf.sortino(r, 252) == pytest.approx(mean / downside * math.sqrt(252))
    assert perf.sortino([0.01, 0.02], 252) is None  # no losing bar: undefined, not infinite
    assert perf.sharpe([0.01, 0.01], 252) is None


def test_drawdown_depth_money_and_longest_duration_by_hand():
    times = [T0 + i * MINUTE for i in range(7)]
    equity = [100, 120, 90, 110, 121, 100, 105]
    dd = perf.drawdown(times, equity)
    assert dd.max_fraction == pytest.approx(0.25)  # 120 -> 90
    assert dd.max_money == pytest.approx(30.0)
    assert (dd.peak_at, dd.trough_at) == (times[1], times[2])
    # 120 at t1 is regained at t4 (3 minutes); 121 at t4 is still not regained at t6 (2 minutes, open).
    assert dd.longest == 3 * MINUTE and dd.longest_from == times[1] and dd.recovered


def test_an_unrecovered_drawdown_counts_to_the_end():
    times = [T0 + i * MINUTE for i in range(5)]
    dd = perf.drawdown(times, [100, 101, 100, 99, 100])
    assert dd.longest == 3 * MINUTE and not dd.recovered


def test_calmar_is_the_annualised_return_over_the_drawdown():
    equity = [100.0, 90.0, 121.0]
    annual = (1.21) ** (252 / 2) - 1
    assert perf.annualised_return(equity, 252) == pytest.approx(annual)
    assert perf.calmar(equity, 252, 0.10) == pytest.approx(annual / 0.10)
    assert perf.calmar(equity, 252, 0.0) is None


def test_trade_figures_hit_rate_profit_factor_expectancy_and_money_by_hand():
    trades = [trade("104.50"), trade("-45.50"), trade("54.50", contracts=2), trade("-95.50", side="short")]
    figures = perf.trade_figures(trades)
    # net: 100, -50, 50, -100
    assert figures["hit_rate"] == 0.5 and (figures["wins"], figures["losses"]) == (2, 2)
    assert figures["profit_factor"] == pytest.approx(150 / 150)
    assert figures["expectancy"] == Decimal("0")
    assert figures["net_pnl"] == Decimal("0.00") and figures["gross_pnl"] == Decimal("18.00")
    assert figures["commissions"] == Decimal("18.00") and figures["slippage"] == Decimal("20")
    assert figures["sizes"] == {1: 3, 2: 1}
    sides = perf.per_side(trades)
    assert sides["short"]["trades"] == 1 and sides["long"]["net_pnl"] == Decimal("100.00")


def test_without_a_losing_trade_the_profit_factor_is_undefined_and_no_trade_gives_none():
    assert perf.trade_figures([trade("10")])["profit_factor"] is None
    empty = perf.trade_figures([])
    assert (empty["hit_rate"], empty["expectancy"], empty["net_pnl"]) == (None, None, Decimal(0))


def test_exposure_and_trades_per_day():
    assert perf.exposure([True, False, False, True]) == 0.5
    assert perf.trades_per_day([trade("1")] * 6, days=3) == 2


def test_the_calibration_table_puts_each_traded_probability_in_its_bucket():
    trades = [trade("10", p=0.52, kelly=0.01), trade("-10", p=0.54, kelly=0.03), trade("20", p=0.61, kelly=0.05),
              trade("20", p=1.0, kelly=0.2)]
    rows = perf.calibration_table(trades)
    assert [r["bucket"] for r in rows] == ["0.50–0.55", "0.60–0.65", "0.90–1.00"]
    first = rows[0]
    assert first["n"] == 2 and first["predicted"] == pytest.approx(0.53)
    assert first["realised"] == 0.5 and first["kelly_fraction"] == pytest.approx(0.02)
    assert rows[-1]["n"] == 1  # p = 1.0 falls in the closed last bucket


def test_bad_equity_is_refused():
    with pytest.raises(ValueError, match="positive"):
        perf.bar_returns([100.0, 0.0, 5.0])
    with pytest.raises(ValueError, match="times"):
        perf.drawdown([T0], [1.0, 2.0])
    assert len(perf.bar_returns([100.0])) == 0


def test_a_short_gain_compounded_over_a_year_gives_no_figure_rather_than_infinity():
    # +10 % over 10 one-minute bars, compounded over ~348,000 bars a year, overflows a float: the backtest report
    # could not be stored (JSON has no infinity) and the run failed.
    equity = [100.0 + i for i in range(11)]
    assert perf.annualised_return(equity, 347_760) is None
    assert perf.calmar(equity, 347_760, 0.01) is None
    assert perf.annualised_return([100.0, 110.0], 1.0) == pytest.approx(0.10)


# --- what a window can estimate ----------------------------------------------------------------------------------

MINUTE_BARS_PER_YEAR = 252 * 23 * 60  # periods_per_year("1m"): 23-hour sessions, 252 days


def rising(points: int, step: float = 0.001) -> list[float]:
    """Equity with a loss every third bar, so every ratio is defined: +2 steps, -1 step."""
    equity = [100_000.0]
    for i in range(points - 1):
        equity.append(equity[-1] * (1 - step if i % 3 == 2 else 1 + 2 * step))
    return equity


def test_a_two_day_window_of_minute_bars_gives_no_annual_return_nor_calmar_and_says_why():
    equity = rising(2 * 23 * 60 + 1)  # two 23-hour sessions of one-minute bars
    assert perf.annualised_return(equity, MINUTE_BARS_PER_YEAR) > 1e9  # the formula alone: a ten-digit figure

    figures = perf.ratio_figures(equity, MINUTE_BARS_PER_YEAR, max_drawdown=0.001)

    assert figures["annualised_return"] is None and figures["calmar"] is None
    assert figures["calmar_na"] == figures["annualised_return_na"] == (
        "the window is 2 trading days of bars; an annual figure needs at least 63 (a quarter); its return would be "
        "raised to the power 126")
    # 2,760 returns are plenty for Sharpe and Sortino, which scale by a square root and cannot blow up.
    assert figures["sharpe"] == pytest.approx(perf.sharpe(perf.bar_returns(equity), MINUTE_BARS_PER_YEAR))
    assert figures["sortino"] is not None and figures["sharpe_na"] is None and figures["sortino_na"] is None


def test_a_quarter_of_daily_bars_is_long_enough_for_the_annual_return_and_calmar():
    equity = rising(64)  # 63 daily returns

    figures = perf.ratio_figures(equity, 252, max_drawdown=0.02)

    annual = (equity[-1] / equity[0]) ** (252 / 63) - 1
    assert figures["annualised_return"] == pytest.approx(annual) and figures["annualised_return_na"] is None
    assert figures["calmar"] == pytest.approx(annual / 0.02) and figures["calmar_na"] is None
    short = perf.ratio_figures(equity[:63], 252, max_drawdown=0.02)  # 62 returns: one day short
    assert short["calmar"] is None and short["calmar_na"].startswith("the window is 62 trading days of bars")


def test_sharpe_and_sortino_need_thirty_returns():
    equity = rising(31)
    assert perf.sharpe_estimate(perf.bar_returns(equity), 252).value is not None
    short = perf.sharpe_estimate(perf.bar_returns(equity[:30]), 252)
    assert short == perf.Estimate(None, "the window has 29 bar returns; the ratio needs at least 30")
    assert perf.sortino_estimate(perf.bar_returns(equity[:30]), 252).reason == short.reason
    assert perf.sharpe_estimate([], 252).reason == "the window has 0 bar returns; the ratio needs at least 30"


def test_a_flat_or_never_losing_or_never_falling_record_names_the_missing_ingredient():
    flat = perf.ratio_figures([100.0] * 100, 252, max_drawdown=0.0)
    assert flat["sharpe"] is None and flat["sharpe_na"] == "the returns never vary (the equity did not move)"
    gains = [100.0 * 1.001 ** i * (1.0005 if i % 2 else 1.0) for i in range(100)]
    assert perf.sortino_estimate(perf.bar_returns(gains), 252) == perf.Estimate(
        None, "no bar lost money: the downside deviation is zero")
    no_drawdown = perf.Estimate(None, "no drawdown: the equity never fell below a peak")
    assert perf.calmar_estimate(gains, 252, 0.0) == no_drawdown


def test_the_window_rule_refuses_an_unknown_figure_or_a_period_count_that_means_nothing():
    with pytest.raises(ValueError, match="unknown figure 'omega'"):
        perf.window_reason("omega", periods=100, periods_per_year=252)
    with pytest.raises(ValueError, match="periods per year must be positive"):
        perf.window_reason("calmar", periods=100, periods_per_year=0)


@given(st.lists(st.floats(-0.05, 0.05), min_size=63, max_size=400))
def test_an_annual_figure_never_magnifies_the_windows_growth_beyond_its_fourth_power(returns):
    equity = [100.0]
    for r in returns:
        equity.append(equity[-1] * (1 + r))
    growth = equity[-1] / equity[0]

    annual = perf.annualised_return_estimate(equity, 252)

    assert annual.reason is None
    low, high = sorted((1.0, growth ** 4))
    assert low * (1 - 1e-9) <= annual.value + 1 <= high * (1 + 1e-9)
