"""Backtests through the live code, on hand-built bar paths whose P&L is worked out by hand.

The version is a row without artifacts: `bar_hook` stores the prediction of each bar the run copies before the run
decides it, and the live prediction step finds it (one prediction per bar and version), so the sizing, risk,
approval, broker and report are the live ones and the model's output is ours to choose. Terms: NQ, tick 0.25, $20 a
point, 1 tick of slippage against every market fill, $2.50 a contract a fill; ATR 10 with the 1.5 / 1.0 bracket:
take-profit 15 points and stop 10 points from the fill; horizon 30 bars.
"""
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from mlcore.models import Prediction
from mlcore import selectors as ml_selectors
from mlcore.selectors import prediction_list
from trading import backtest, services
from trading.models import (
    Account,
    AuditEvent,
    BacktestRun,
    Bar,
    EquitySnapshot,
    Fill,
    Instrument,
    KillSwitch,
    Recommendation,
    TradingConfig,
)
from trading.tests.decisions import SERIES_ORIGIN, bar_at, model_version, prediction

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]
MINUTE = timedelta(minutes=1)


def path(nq, rows, *, first: int = 0):
    """Bars `first`.. of the market from (open, high, low, close) strings; None for a flat bar at 18000."""
    return [bar_at(nq, i, open_=r[0], high=r[1], low=r[2], close=r[3]) if r else bar_at(nq, i)
            for i, r in enumerate(rows, start=first)]


def signals(version, calls: dict[int, str]):
    """The bar hook: bar i (by time) predicts `calls[i]` at p 0.70, every other bar 0.50 (under the confidence
    threshold: no trade)."""
    def hook(bar: Bar):
        i = round((bar.timestamp - SERIES_ORIGIN) / MINUTE)
        side = calls.get(i, "long")
        made = prediction(bar, version, side=side, p=0.70 if i in calls else 0.50, atr=10.0)
        Prediction.objects.filter(pk=made.pk).update(backtest=True)  # as the run's own prediction step marks it
    return hook


def run_backtest(nq, version, bars, calls, *, approval="approve", max_contracts=2):
    config = services.trading_config_get(account=services.account_default_get(), instrument=nq)
    TradingConfig.objects.filter(pk=config.pk).update(max_contracts=max_contracts)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                   version_id=version.pk, approval=approval)
    return backtest.backtest_execute(run_id=run.pk, bar_hook=signals(version, calls))


@pytest.fixture
def version(nq):
    v = model_version(nq)
    v.data_end = SERIES_ORIGIN - timedelta(days=1)  # trained before the window: out of sample
    v.save(update_fields=["data_end"])
    return v


def by_reason(report):
    return {t["exit_reason"]: t for t in report["trade_list"]}


def test_long_take_profit_short_stop_time_exit_and_a_gap_through_the_stop_are_paid_exactly(nq, version):
    rows = [None] * 120
    # 1. Long on bar 0: fills at bar 1's open 18000 + 0.25; take-profit 18015.25, touched by bar 2.
    rows[2] = ("18000", "18016", "17999", "18010")
    rows[3] = ("18010", "18011", "17999", "18000")
    # 2. Short on bar 5: fills at bar 6's open 18000 - 0.25 = 17999.75; stop 18009.75, touched by bar 7: bought
    #    back at 18009.75 + 0.25 = 18010.00.
    rows[7] = ("18000", "18010", "17999", "18005")
    rows[8] = ("18005", "18006", "17999", "18000")
    # 3. Long on bar 10: fills at bar 11's open 18000.25; flat bars (+-1) never reach a level; the 30th bar held
    #    (bar 40) exits at its close 18000 - 0.25 = 17999.75.
    # 4. Long on bar 50: fills at bar 51's open 18000.25, stop 17990.25; bar 52 opens at 17980, through the stop:
    #    sold at 17980 - 0.25 = 17979.75.
    rows[52] = ("17980", "17981", "17979", "17980")
    rows[53] = ("17980", "18000", "17979", "18000")
    bars = path(nq, rows)
    run = run_backtest(nq, version, bars, {0: "long", 5: "short", 10: "long", 50: "long"})
    assert run.status == BacktestRun.Status.DONE, run.error
    report = run.report
    trades = by_reason(report)
    assert [t["exit_reason"] for t in report["trade_list"]] == ["take_profit", "stop_loss", "time", "stop_loss"]
    assert all(t["contracts"] == 2 for t in report["trade_list"])  # Kelly's size capped by max_contracts
    tp, stop, time_exit, gap = report["trade_list"]
    assert (Decimal(tp["entry_price"]), Decimal(tp["exit_price"])) == (Decimal("18000.25"), Decimal("18015.25"))
    assert Decimal(tp["gross_pnl"]) == Decimal("15.00") * 20 * 2  # 600
    assert (Decimal(stop["entry_price"]), Decimal(stop["exit_price"])) == (Decimal("17999.75"), Decimal("18010.00"))
    assert Decimal(stop["gross_pnl"]) == Decimal("-10.25") * 20 * 2  # -410
    assert (Decimal(time_exit["entry_price"]), Decimal(time_exit["exit_price"])) == (Decimal("18000.25"),
                                                                                   Decimal("17999.75"))
    assert time_exit["exit_at"] == (SERIES_ORIGIN + 40 * MINUTE).isoformat().replace("+00:00", "Z")
    assert Decimal(time_exit["gross_pnl"]) == Decimal("-0.50") * 20 * 2  # -20
    assert (Decimal(gap["entry_price"]), Decimal(gap["exit_price"])) == (Decimal("18000.25"), Decimal("17979.75"))
    assert Decimal(gap["gross_pnl"]) == Decimal("-20.50") * 20 * 2  # -820: worse than the stop's -410
    gross = Decimal(600 - 410 - 20 - 820)
    commissions = Decimal("2.50") * 2 * 2 * 4  # 2 contracts, 2 fills, 4 trades
    assert Decimal(report["gross_pnl"]) == gross
    assert Decimal(report["commissions"]) == commissions
    assert Decimal(report["net_pnl"]) == gross - commissions
    # Slippage paid: 1 tick x $20 x 2 contracts on every market fill (4 entries, 3 market exits; the take-profit
    # is a resting limit).
    assert Decimal(report["slippage"]) == Decimal("0.25") * 20 * 2 * 7
    assert Decimal(report["ending_equity"]) == Decimal("100000") + gross - commissions
    assert report["trades"] == 4 and report["wins"] == 1 and report["losses"] == 3
    assert report["hit_rate"] == 0.25
    assert report["profit_factor"] == pytest.approx(float((600 - 10) / (410 + 10 + 20 + 10 + 820 + 10)))
    assert Decimal(report["expectancy"]) == (gross - commissions) / 4
    assert report["per_side"]["short"]["trades"] == 1 and report["per_side"]["long"]["trades"] == 3
    assert report["sizes"] == {"2": 4}
    # Every traded probability was 0.70: one bucket, realised 1 of 4, beside the mean fraction Kelly bet (it shrinks
    # after the losses: the drawdown factor).
    fractions = [t["kelly_fraction"] for t in report["trade_list"]]
    assert fractions[0] == pytest.approx(0.078125) and fractions[-1] < fractions[0]
    assert report["calibration"] == [{"bucket": "0.70–0.75", "n": 4, "predicted": 0.70, "realised": 0.25,
                                      "kelly_fraction": pytest.approx(sum(fractions) / 4)}]
    # Each trade came from its recommendation, kept with every Kelly factor and risk check.
    recommendation = Recommendation.objects.get(pk=tp["recommendation"])
    assert recommendation.account_id == run.account_id and recommendation.kelly["full_kelly"] == pytest.approx(0.5)
    # The other 116 bars' predictions were sized to nothing by Kelly: the blocks say why, by reason.
    assert report["recommendations"]["blocked"] == 116
    assert sum(b["count"] for b in report["risk_blocks"].values()) >= 116
    assert any("confidence threshold" in name for name in report["risk_blocks"])


def test_equity_drawdown_and_buy_and_hold_are_read_from_the_run_own_records(nq, version):
    rows = [None] * 12
    rows[2] = ("18000", "18001", "17985", "17990")  # the long of bar 0 is stopped: 17990.25 - 0.25
    rows[3] = ("17990", "17991", "17989", "17990")
    rows[11] = ("17990", "18021", "17989", "18020")
    bars = path(nq, rows)
    run = run_backtest(nq, version, bars, {0: "long"}, max_contracts=1)
    report = run.report
    snapshots = list(EquitySnapshot.objects.filter(account=run.account).order_by("timestamp"))
    assert len(snapshots) == 12  # one per bar: every bar settled
    assert report["equity"]["equity"] == [float(s.equity) for s in snapshots]
    # Stopped at 17990.00 after entering at 18000.25: -10.25 points x $20 - 2 x $2.50 = -210.
    assert Decimal(report["net_pnl"]) == Decimal("-210")
    assert report["max_drawdown"]["money"] == pytest.approx(210.0)
    assert report["max_drawdown"]["fraction"] == pytest.approx(210 / 100000)
    assert report["max_drawdown"]["recovered"] is False
    # Buy and hold one contract from the first bar's open to each close: the last close 18020 is +20 points.
    assert Decimal(report["buy_hold"]["net_pnl"]) == Decimal("400")
    assert report["equity"]["buy_hold"][-1] == 100400.0
    assert report["exposure"] == pytest.approx(1 / 12)  # open at the close of bar 1 only


def test_the_backtest_touches_no_live_account_and_monitoring_never_sees_its_predictions(nq, version):
    bars = path(nq, [None] * 6)
    paper = services.account_default_get()
    run = run_backtest(nq, version, bars, {0: "long"})
    assert not Recommendation.objects.filter(account=paper).exists()
    assert not EquitySnapshot.objects.filter(account=paper).exists()
    assert Recommendation.objects.filter(account=run.account).count() == 6
    market = Instrument.objects.get(pk=run.market_id)
    assert market.backtest and not market.active and run.account.backtest
    assert not prediction_list(symbol=market.symbol).exists()  # left out of the market's predictions
    # The figures monitoring scores a version by leave them out.
    assert not [t for t in ml_selectors.prediction_tallies() if t[0] == version.pk]
    # Every live list leaves the run's records out (they are its report's, reached through the run).
    from trading import selectors
    assert run.account not in selectors.account_list()
    assert market not in selectors.instrument_list()
    for listed in (selectors.recommendation_list(), selectors.order_list(), selectors.fill_list(),
                   selectors.position_list(), selectors.audit_list()):
        assert not [row for row in listed if row.account_id == run.account_id], listed.model
    assert selectors.recommendation_list(account=run.account).count() == 6


def test_the_model_health_is_the_versions_score_when_the_run_was_created_however_monitoring_rescores_it(nq, version):
    # Monitoring rescores a version from its live predictions at any time; a backtest must not read today's score
    # for last month's bars, nor change its sizing half way through: it holds the score its config records.
    bars = path(nq, [None] * 8)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                   version_id=version.pk)
    assert run.config["model_health"] == 100.0
    place_signal = signals(version, {3: "long"})

    def rescored_mid_run(bar):
        if bar.timestamp == bars[2].timestamp:
            type(version).objects.filter(pk=version.pk).update(health_score=0.0, health_reason="accuracy collapsed")
        place_signal(bar)

    run = backtest.backtest_execute(run_id=run.pk, bar_hook=rescored_mid_run)
    [taken] = Recommendation.objects.filter(account=run.account, state=Recommendation.State.EXECUTED)
    assert taken.bar.timestamp == bars[3].timestamp and taken.contracts > 0
    assert taken.kelly["health_factor"] == 1.0, taken.kelly


def test_the_comparison_explains_a_size_difference_by_the_health_each_side_sized_with(nq, version):
    from types import SimpleNamespace

    from trading.backtest_compare import _why_different
    from trading.tests.decisions import close_time, flat_bars

    made = flat_bars(nq, 3)
    [live] = services.recommendations_create_for_prediction(prediction_id=prediction(made[-1], version).pk,
                                                            now=close_time(made[-1]))
    test = Recommendation.objects.get(pk=live.pk)
    test.kelly = {**live.kelly, "health_factor": 0.5}
    reason = _why_different("contracts", {"exit_at": None}, live, SimpleNamespace(model_version_id=version.pk), test)
    assert reason == ("model health sized it differently: health factor 1.00 live (the version's score then), 0.50 "
                      "in the backtest (its score when the run was created)")
    # The same health on both sides explains nothing: the difference stays unexplained.
    assert _why_different("contracts", {"exit_at": None}, live, SimpleNamespace(model_version_id=version.pk),
                          Recommendation.objects.get(pk=live.pk)) == ""


def test_a_run_pushes_nothing_to_pages_no_page_shows_its_private_market(nq, version, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    from trading import realtime

    pushed = []
    real_broadcast = realtime._broadcast
    monkeypatch.setattr(realtime, "_broadcast",
                        lambda group, *args: pushed.append(group) or real_broadcast(group, *args))
    rows = [None] * 12
    rows[2] = ("18000", "18016", "17999", "18010")  # the long's take-profit: fills and marks on the way
    with django_capture_on_commit_callbacks(execute=True):
        run = run_backtest(nq, version, path(nq, rows), {0: "long", 5: "short"})
    assert run.report["trades"] >= 1 and Fill.objects.filter(account=run.account).exists()
    # Each push costs queries (the payload) and, in deployment, a Redis round trip, on every bar: none is made.
    assert [group for group in pushed if "BT" in group.upper()] == []


def test_record_only_approves_nothing_and_every_recommendation_expires(nq, version):
    bars = path(nq, [None] * 8)
    run = run_backtest(nq, version, bars, {0: "long", 3: "short"}, approval="record")
    assert not Fill.objects.filter(account=run.account).exists()
    # Both offered recommendations waited for a person who never came, and expired after their 2 bars to live.
    assert run.report["recommendations"] == {"blocked": 6, "expired": 2}
    assert run.report["trades"] == 0 and not Account.objects.get(pk=run.account_id).auto_trading


def test_a_version_trained_on_bars_inside_the_window_is_refused_or_flagged_on_request(nq):
    bars = path(nq, [None] * 5)
    version = model_version(nq)
    version.data_end = bars[2].timestamp
    version.save(update_fields=["data_end"])
    typed_start = bars[0].timestamp.astimezone(timezone.get_fixed_timezone(5 * 60))  # typed at +05:00
    with pytest.raises(backtest.BacktestRefused, match="look-ahead") as refused:
        backtest.backtest_create(symbol="NQ", timeframe="1m", start=typed_start, end=bars[-1].timestamp,
                                 version_id=version.pk)
    assert not BacktestRun.objects.exists()
    # The way out it names, in UTC whatever offset the window was typed in: a version trained on the bars before
    # the window's first bar only.
    before = bars[0].timestamp - timedelta(minutes=1)
    assert f"manage.py train --symbol NQ --timeframe 1m --until {before:%Y-%m-%dT%H:%MZ}" in str(refused.value)
    assert f"(from {bars[0].timestamp:%Y-%m-%d %H:%M} UTC)" in str(refused.value)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                   version_id=version.pk, allow_lookahead=True)
    run = backtest.backtest_execute(run_id=run.pk, bar_hook=signals(version, {}))
    assert run.lookahead and run.report["lookahead"]
    assert "LOOK-AHEAD" in run.report["lookahead_warning"]


@pytest.mark.parametrize("change, message", [
    ({"symbol": "ZZZ"}, "ZZZ"),
    ({"timeframe": "7m"}, "7m"),
    ({"end_offset": -10}, "before 'from'"),
    ({"version_id": 999999}, "no model version 999999"),
    ({"approval": "yolo"}, "unknown approval"),
    ({"start_offset": 1000, "end_offset": 1100}, "no stored"),
    ({"account_name": "nobody"}, "no account named"),
])
def test_bad_requests_are_refused_with_the_reason_and_record_nothing(nq, version, change, message):
    bars = path(nq, [None] * 5)
    kwargs = {"symbol": "NQ", "timeframe": "1m", "start": bars[0].timestamp + change.pop("start_offset", 0) * MINUTE,
              "end": bars[-1].timestamp + change.pop("end_offset", 0) * MINUTE, "version_id": version.pk}
    kwargs.update(change)
    with pytest.raises(backtest.BacktestRefused, match=message):
        backtest.backtest_create(**kwargs)
    assert not BacktestRun.objects.exists()


def test_a_version_of_another_market_and_the_private_market_itself_are_refused(nq, version):
    bars = path(nq, [None] * 5)
    other = Instrument.objects.create(symbol="ES", name="ES", tick_size=Decimal("0.25"), point_value=Decimal("50"))
    foreign = model_version(other)
    with pytest.raises(backtest.BacktestRefused, match="predicts ES"):
        backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                 version_id=foreign.pk)
    run = run_backtest(nq, version, bars, {})
    market = Instrument.objects.get(pk=run.market_id)
    with pytest.raises(backtest.BacktestRefused, match="backtest's own market"):
        backtest.backtest_create(symbol=market.symbol, timeframe="1m", start=bars[0].timestamp,
                                 end=bars[-1].timestamp, version_id=version.pk)


@pytest.mark.parametrize("engine, step", [("db", "trading.workflow.replay_bar"),
                                          ("memory", "trading.domain.engine.settle")])
def test_a_run_is_executed_once_and_a_failure_is_recorded_and_raised(nq, version, monkeypatch, engine, step):
    bars = path(nq, [None] * 4)
    run = run_backtest(nq, version, bars, {})
    with pytest.raises(backtest.BacktestRefused, match="done, not queued"):
        backtest.backtest_execute(run_id=run.pk)
    again = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                     version_id=version.pk, engine=engine)
    monkeypatch.setattr("mlcore.services._pinned_model", lambda version_id: _Constant())

    def broken(*args, **kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(step, broken)
    with pytest.raises(RuntimeError, match="model exploded"):
        backtest.backtest_execute(run_id=again.pk)
    again.refresh_from_db()
    assert again.status == BacktestRun.Status.FAILED and "model exploded" in again.error
    assert again.finished_at is not None


class _Constant:
    """A model that answers every window the same (the failing step, not the model, is what is tested)."""

    bars_needed = 1

    def __init__(self, version_id: int = 0):
        self.version_id = version_id

    def predict(self, window):
        return {"p_long": 0.5, "p_short": 0.5, "side": "long", "confidence": 0.5, "agreement": 1.0,
                "members": {"long": {}, "short": {}}, "meta_raw": {}, "latency_ms": 0.0, "atr": 10.0,
                "atr_reference": 10.0}

    def predict_frame(self, frame, *, first=0):
        return [self.predict(None) for _ in range(first, len(frame))]


def test_the_live_kill_switch_stops_live_accounts_but_not_a_backtest_account(nq, version):
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True, "engaged_at": timezone.now()})
    bars = path(nq, [None] * 6)
    run = run_backtest(nq, version, bars, {0: "long"})
    assert run.report["trades"] + run.report["open_trades"] == 1
    # The live paper account on the real market is still stopped by it.
    live = prediction(bars[-1], version, side="long", p=0.7)
    [recommendation] = services.recommendations_create_for_prediction(prediction_id=live.pk,
                                                                      now=bars[-1].timestamp + MINUTE)
    assert recommendation.state == Recommendation.State.BLOCKED
    assert any(c["name"] == "kill_switch" and not c["passed"] for c in recommendation.risk["checks"])


def test_the_command_reads_a_bare_to_date_as_the_whole_day_and_says_why_a_run_failed_or_was_refused(nq, version):
    from django.core.management import CommandError, call_command

    bars = path(nq, [None] * 6)  # 2024-01-02 14:30 .. 14:35 UTC
    # The version row has no artifacts: the first prediction cannot load it, and the run fails visibly.
    with pytest.raises(CommandError, match=r"backtest #\d+ failed: ArtifactError"):
        call_command("backtest", "--symbol", "NQ", "--from", "2024-01-02", "--to", "2024-01-02",
                     "--version", str(version.pk), "--json")
    run = BacktestRun.objects.get()
    assert run.status == BacktestRun.Status.FAILED and "ArtifactError" in run.error
    assert run.bars_total == len(bars)  # "--to 2024-01-02" is the whole day
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("backtest", "--symbol", "NQ", "--from", "2024-13-45", "--to", "2024-01-02")
    version.data_end = bars[-1].timestamp
    version.save(update_fields=["data_end"])
    with pytest.raises(CommandError, match="look-ahead"):
        call_command("backtest", "--symbol", "NQ", "--from", "2024-01-02", "--to", "2024-01-02",
                     "--version", str(version.pk))


@pytest.mark.parametrize("engine", ["memory", "db"])
def test_the_command_runs_the_engine_it_is_asked_for_and_refuses_an_unknown_one(nq, version, monkeypatch, engine):
    from django.core.management import CommandError, call_command

    path(nq, [None] * 6)
    monkeypatch.setattr("mlcore.services._pinned_model", _Constant)
    call_command("backtest", "--symbol", "NQ", "--from", "2024-01-02", "--to", "2024-01-02", "--version",
                 str(version.pk), "--engine", engine, "--json", stdout=io.StringIO())
    run = BacktestRun.objects.get()
    assert run.status == BacktestRun.Status.DONE, run.error
    assert run.config["engine"] == engine and run.report["engine"]["name"] == engine
    with pytest.raises(CommandError, match="invalid choice: 'fast'"):
        call_command("backtest", "--symbol", "NQ", "--from", "2024-01-02", "--to", "2024-01-02", "--engine", "fast")


def test_the_command_summary_states_money_in_cents_and_no_missing_figure_as_none(nq, version):
    from io import StringIO

    from trading import report_text
    from trading.management.commands.backtest import Command

    run = run_backtest(nq, version, path(nq, [None] * 8), {0: "long", 3: "short"})
    out = StringIO()
    Command(stdout=out)._summary(run)
    text = out.getvalue()
    report = run.report
    assert f"equity {report_text.money(report['starting_equity'])} -> {report_text.money(report['ending_equity'])}" \
        in text
    assert f"net P&L {report_text.money(report['net_pnl'])} (gross {report_text.money(report['gross_pnl'])}" in text
    assert f"longest {report_text.duration(report['max_drawdown']['longest_seconds'])}" in text
    assert "None" not in text


@pytest.mark.parametrize("value, shown", [
    (None, "—"), ("12345.678", "12,345.68"), ("-0E-10", "0.00"), ("-0.004", "0.00"), ("-12.5", "-12.50"),
    (Decimal("4285.0000000000"), "4,285.00"), ("1E+40", "1E+40"), ("n/a", "n/a"),
])
def test_money_reads_in_cents_with_separators_and_no_negative_zero(value, shown):
    from trading import report_text

    assert report_text.money(value) == shown


@pytest.mark.parametrize("seconds, shown", [
    (None, "—"), (45, "45 s"), (720, "12 min"), (7_500, "2 h 05 min"),
    # A daily-bar run's drawdown lasts days: hours alone would read "76 h 01 min".
    (3 * 86_400 + 4 * 3_600 + 60, "3 d 04 h"),
])
def test_durations_read_in_the_largest_units_that_fit(seconds, shown):
    from trading import report_text

    assert report_text.duration(seconds) == shown


def test_a_finished_run_is_deleted_with_everything_it_made_and_nothing_else(nq, version):
    bars = path(nq, [None] * 6)
    run = run_backtest(nq, version, bars, {0: "long", 3: "short"})
    assert Fill.objects.filter(account=run.account).exists()
    market_id, account_id = run.market_id, run.account_id
    backtest.backtest_delete(run_id=run.pk)
    assert not BacktestRun.objects.exists()
    assert not Instrument.objects.filter(pk=market_id).exists() and not Account.objects.filter(pk=account_id).exists()
    assert not Bar.objects.filter(instrument_id=market_id).exists()
    assert Bar.objects.filter(instrument=nq).count() == 6  # the real market's bars stay
    queued = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                      version_id=version.pk)
    with pytest.raises(backtest.BacktestRefused, match="queued"):
        backtest.backtest_delete(run_id=queued.pk)


@pytest.mark.parametrize("breaker, trades_next_day", [("hold", False), ("daily", True)])
def test_a_tripped_breaker_holds_to_the_end_unless_the_run_resets_it_each_trading_day(nq, version, breaker,
                                                                                    trades_next_day):
    # Bars 440..519: 21:50 .. 23:09 UTC (16:50 .. 18:09 New York), over the daily break and the 18:00 rollover.
    rows = [None] * 80
    # The long of bar 440 (1 contract: the loss budget of 300 allows one stop-out of 210) gaps through its stop:
    # sold at 17979.75, -415 with commissions, over the day's limit.
    rows[2] = ("17980", "17981", "17979", "17980")
    bars = path(nq, rows, first=440)
    config = services.trading_config_get(account=services.account_default_get(), instrument=nq)
    TradingConfig.objects.filter(pk=config.pk).update(daily_loss_limit=Decimal("300"), max_contracts=2)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                   version_id=version.pk, breaker=breaker)
    run = backtest.backtest_execute(run_id=run.pk, bar_hook=signals(version, {440: "long", 515: "long"}))
    assert run.report["breaker_trips"] == 1
    next_day = Recommendation.objects.get(account=run.account, bar_timestamp=bars[515 - 440].timestamp)
    assert (next_day.state == Recommendation.State.EXECUTED) is trades_next_day, next_day.reasons
    if not trades_next_day:
        assert any(c["name"] == "circuit_breaker" and not c["passed"] for c in next_day.risk["checks"])
    resets = AuditEvent.objects.filter(account=run.account, action=AuditEvent.Action.CIRCUIT_BREAKER_RESET)
    assert resets.count() == (1 if trades_next_day else 0)


def test_a_run_whose_worker_died_is_failed_by_the_periodic_job_and_a_moving_one_is_left_alone(nq, version):
    bars = path(nq, [None] * 4)
    now = timezone.now()
    runs = [backtest.backtest_create(symbol="NQ", timeframe="1m", start=bars[0].timestamp, end=bars[-1].timestamp,
                                     version_id=version.pk) for _ in range(2)]
    BacktestRun.objects.filter(pk=runs[0].pk).update(status=BacktestRun.Status.RUNNING, bars_done=2,
                                                     progress_at=now - timedelta(minutes=11))
    BacktestRun.objects.filter(pk=runs[1].pk).update(status=BacktestRun.Status.RUNNING, bars_done=2,
                                                     progress_at=now - timedelta(minutes=1))
    assert backtest.backtests_abandoned_fail(now=now) == 1
    dead, moving = (BacktestRun.objects.get(pk=r.pk) for r in runs)
    assert dead.status == BacktestRun.Status.FAILED and "abandoned: no progress since" in dead.error
    assert "2 of 4 bars" in dead.error and dead.finished_at == now
    assert moving.status == BacktestRun.Status.RUNNING
    # A redelivered task of the dead run does not start it again.
    from trading.tasks import backtest_run
    assert backtest_run.apply(args=(dead.pk,)).get() == "not queued"


def test_chart_series_are_thinned_to_a_few_thousand_points_keeping_the_last_and_exposure_counts_open_bars():
    times = list(range(12_001))
    thinned, values = backtest._chart_points(times, [t * 2 for t in times])
    assert len(thinned) <= backtest.CHART_POINTS + 1 and thinned[-1] == 12_000 and values[-1] == 24_000
    assert all(v == 2 * t for t, v in zip(thinned, values))
    stamps = [SERIES_ORIGIN + i * MINUTE for i in range(6)]
    trades = [{"entry_at": stamps[1], "exit_at": stamps[3]}, {"entry_at": stamps[4], "exit_at": None}]
    assert backtest._in_position(trades, stamps, MINUTE).tolist() == [False, True, True, False, True, True]
