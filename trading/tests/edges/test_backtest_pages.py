"""The backtest pages: the runs and the form that starts one (permission, CSRF, refusals named in the form), a
run's report (figures, charts, trades linked to their recommendation, the look-ahead banner), its progress while it
runs, and one trade's recommendation card (only for the run's own account)."""
import json
import re
from datetime import timedelta

import pytest
from django.test import Client

from mlcore.models import ModelVersion
from trading import backtest, services
from trading.backtest_views import held_health_text
from trading.models import BacktestRun, Instrument, Recommendation
from trading.tests.decisions import ONE_MINUTE, bar_at, close_time, model_version, prediction, user_with
from trading.tests.factories import SERIES_ORIGIN, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BARS = 60
WINDOW_START = SERIES_ORIGIN + 10 * ONE_MINUTE  # bars 0-9 are history before the window (warm-up)
WINDOW_END = SERIES_ORIGIN + (BARS - 1) * ONE_MINUTE


def falling_market(instrument: Instrument) -> None:
    """A market falling 3 points a bar: longs stop out, shorts reach their take-profit."""
    for i in range(BARS):
        price = 18000 - 3 * i
        bar_at(instrument, i, open_=str(price), close=str(price - 3))


def finished_run(instrument: Instrument, *, lookahead: bool = False) -> BacktestRun:
    """A done backtest of the falling market, without a model: each copied bar gets a stored prediction of the
    run's version (short every fifth bar, long otherwise; p from 0.60 to 0.75), which the replay then uses."""
    version = model_version(instrument)
    if lookahead:  # trained on bars inside the window
        version.data_end = WINDOW_START + 20 * ONE_MINUTE
        version.save(update_fields=["data_end"])
    run = backtest.backtest_create(symbol=instrument.symbol, timeframe="1m", start=WINDOW_START, end=WINDOW_END,
                                   version_id=version.pk, allow_lookahead=lookahead)

    def predict(bar):
        i = round((bar.timestamp - SERIES_ORIGIN) / ONE_MINUTE)
        prediction(bar, version, side="short" if i % 5 == 0 else "long", p=0.60 + (i % 4) * 0.05, atr=10.0)

    return backtest.backtest_execute(run_id=run.pk, bar_hook=predict)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def nq():
    instrument = Instrument.objects.get(symbol="NQ")
    falling_market(instrument)
    return instrument


@pytest.fixture
def runner():
    return logged_in(user_with("runner", "trading.run_backtest"))


@pytest.fixture
def reader():
    return logged_in(user_with("reader"))


def page(response) -> str:
    return response.content.decode()


def form_data(**overrides) -> dict:
    data = {"symbol": "NQ", "timeframe": "1m", "from": "2024-01-02T14:40", "to": "2024-01-02T15:29", "version": "",
            "approval": "approve"}
    return {**data, **overrides}


# --- the report ---------------------------------------------------------------------------------------------------

def test_the_report_page_shows_every_figure_the_charts_and_links_each_trade_to_its_recommendation(nq, reader):
    run = finished_run(nq)
    report = run.report
    assert run.status == BacktestRun.Status.DONE and report["trades"] > 0 and report["risk_blocks"]

    response = reader.get(f"/backtests/{run.pk}/")

    assert response.status_code == 200
    html = page(response)
    assert 'id="lookahead-banner"' not in html
    for chart in ("chart-equity", "chart-drawdown", "chart-calibration", "chart-sizes"):
        assert f'id="{chart}"' in html
    assert "vendor/plotly/plotly.min.js" in html
    charts = json.loads(re.search(r'id="backtest-charts" type="application/json">(.*?)</script>', html).group(1))
    assert charts["equity"]["equity"] == report["equity"]["equity"]
    # Buy and hold is marked at each bar's close, as the equity is: one time axis for both.
    assert len(charts["equity"]["t"]) == len(report["equity"]["buy_hold"]) == report["window"]["bars"]
    assert charts["calibration"] == report["calibration"] and charts["sizes"] == report["sizes"]
    # Money and ratios, formatted.
    money = dict(re.findall(r'<tr><th scope="row">([^<]+)</th><td class="n">([^<]+)</td></tr>',
                            html.split('id="money"')[1].split("</table>")[0]))
    assert money["Net P&amp;L"] == f"{float(report['net_pnl']):,.2f}"
    assert money["Commissions"] == f"{float(report['commissions']):,.2f}"
    assert money["Slippage"] == f"{float(report['slippage']):,.2f}"
    assert money["Gross P&amp;L"] == f"{float(report['gross_pnl']):,.2f}"
    ratios = html.split('id="ratios"')[1].split("</table>")[0]
    assert f"{report['sharpe']:,.2f}" in ratios
    assert f"{100 * report['hit_rate']:.1f}%" in ratios and f"{report['profit_factor']:,.2f}" in ratios
    assert "Longest drawdown" in ratios and f"{report['trades_per_day']:,.2f}" in ratios
    # Risk blocks by reason, recommendations by state, per side, calibration.
    for name, block in report["risk_blocks"].items():
        assert f'data-block="{name}"' in html and f'<td class="n">{block["count"]}</td>' in html
    for state in report["recommendations"]:
        assert f'data-state="{state}"' in html
    sides = html.split('id="per-side"')[1].split("</table>")[0]
    assert ">long<" in sides and ">short<" in sides
    for row in report["calibration"]:
        assert f'data-bucket="{row["bucket"]}"' in html
    # Every trade links to its recommendation's page.
    trades = html.split('id="trades"')[1].split("</table>")[0]
    for trade in report["trade_list"]:
        assert f'href="/backtests/{run.pk}/trades/{trade["recommendation"]}/"' in trades
    assert trades.count("<tr data-recommendation=") == len(report["trade_list"])


def test_a_lookahead_run_is_flagged_at_the_top_of_the_report_and_of_every_trade_page(nq, reader):
    run = finished_run(nq, lookahead=True)
    assert run.lookahead and run.report["lookahead"]
    trade = run.report["trade_list"][0]

    for url in (f"/backtests/{run.pk}/", f"/backtests/{run.pk}/trades/{trade['recommendation']}/"):
        html = page(reader.get(url))
        banner = html.index('id="lookahead-banner"')
        assert run.report["lookahead_warning"] in html
        assert banner < html.index("<h1>"), f"{url}: the banner comes first"
    listing = page(reader.get("/backtests/"))
    assert "look-ahead" in listing.split(f'data-run="{run.pk}"')[1].split("</tr>")[0]


def test_the_trade_page_shows_the_recommendation_card_the_prediction_and_both_fills(nq, reader):
    run = finished_run(nq)
    trade = next(t for t in run.report["trade_list"] if t["exit_at"])
    recommendation = Recommendation.objects.get(pk=trade["recommendation"])

    response = reader.get(f"/backtests/{run.pk}/trades/{recommendation.pk}/")

    assert response.status_code == 200
    html = page(response)
    for factor in ("full_kelly", "kelly_fraction", "confidence_factor", "drawdown_factor", "health_factor",
                   "volatility_factor", "adjusted_fraction", "risk_per_contract", "raw_contracts", "contracts"):
        assert f'data-factor="{factor}"' in html
    for check in recommendation.risk["checks"]:
        assert f'data-check="{check["name"]}"' in html
    for reason in recommendation.reasons:
        assert reason in html
    assert f'{round(100 * recommendation.probability)}%' in html.split('id="prediction-probability"')[1][:200]
    fills = html.split('id="fills"')[1].split("</table>")[0]
    assert 'data-kind="Entry"' in fills and f'data-kind="{dict(take_profit="Take-profit", stop_loss="Stop-loss")[trade["exit_reason"]]}"' in fills
    assert f"{float(trade['entry_price']):.2f}" in fills and f"{float(trade['exit_price']):.2f}" in fills
    entry = html.split('id="trade-entry"')[1][:120]
    assert trade["entry_at"][11:19] in entry
    assert "Approve</button>" not in html  # decided by the run, not on this page


def test_the_trade_page_is_404_for_a_recommendation_of_another_account(nq, reader):
    run = finished_run(nq)
    version = run.model_version
    live_bar = bar_at(nq, BARS + 5)
    [live] = services.recommendations_create_for_prediction(prediction_id=prediction(live_bar, version).pk,
                                                           now=close_time(live_bar))
    assert live.account_id != run.account_id

    assert reader.get(f"/backtests/{run.pk}/trades/{live.pk}/").status_code == 404
    assert reader.get(f"/backtests/{run.pk}/trades/999999/").status_code == 404
    assert reader.get("/backtests/999999/").status_code == 404


# --- progress and failure ---------------------------------------------------------------------------------------

def test_a_queued_run_shows_a_progress_bar_polled_from_the_progress_endpoint(nq, reader):
    version = model_version(nq)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=WINDOW_START, end=WINDOW_END,
                                   version_id=version.pk)
    BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.RUNNING, bars_done=20)

    html = page(reader.get(f"/backtests/{run.pk}/"))

    assert 'id="progress-bar"' in html and 'aria-valuenow="20"' in html and "20 / 50 bars (40.0%)" in html
    assert f'data-progress-url="/backtests/{run.pk}/progress/"' in html and "POLL_MS = 2000" in html
    assert 'id="chart-equity"' not in html
    # The version's score as the run holds it.
    assert '<span id="run-health">100/100, its score when the run was created</span>' in html
    progress = reader.get(f"/backtests/{run.pk}/progress/")
    assert progress.status_code == 200 and progress["Content-Type"] == "application/json"
    assert progress.json() == {"id": run.pk, "status": "running", "status_label": "Running", "bars_done": 20,
                               "bars_total": 50, "percent": 40.0, "error": ""}


@pytest.mark.parametrize("config, shown", [
    ({"model_health": 55.4, "model_health_reason": "accuracy 0.48 under 0.50"},
     "55/100 (accuracy 0.48 under 0.50), its score when the run was created"),
    ({"model_health": None, "model_health_reason": "", "model_has_edge": True},
     "not scored: full size (validated edge), its score when the run was created"),
    ({"model_health": None, "model_health_reason": "", "model_has_edge": False},
     "not scored: no size (no edge), its score when the run was created"),
    # A run made before the score was held recorded a score too, but sized with the live one at each bar.
    ({"model_health": 80.0, "model_has_edge": True},
     "the live score at each bar (a run made before backtests held it)"),
])
def test_the_held_model_health_reads_as_sizing_used_it(config, shown):
    assert held_health_text(config) == shown


def test_a_failed_run_shows_its_error(nq, reader):
    version = model_version(nq)
    run = backtest.backtest_create(symbol="NQ", timeframe="1m", start=WINDOW_START, end=WINDOW_END,
                                   version_id=version.pk)
    BacktestRun.objects.filter(pk=run.pk).update(status=BacktestRun.Status.FAILED, bars_done=7,
                                                 error="RuntimeError: the feature window <broke>")

    html = page(reader.get(f"/backtests/{run.pk}/"))

    assert 'id="run-failed"' in html and "RuntimeError: the feature window &lt;broke&gt;" in html
    assert 'id="progress-bar"' not in html
    assert reader.get(f"/backtests/{run.pk}/progress/").json()["status"] == "failed"


# --- the list and the form ----------------------------------------------------------------------------------------

def test_the_list_shows_each_run_with_its_figures_and_the_form_only_to_those_who_may_start_one(nq, runner, reader):
    run = finished_run(nq)

    html = page(runner.get("/backtests/"))

    row = html.split(f'data-run="{run.pk}"')[1].split("</tr>")[0]
    assert "Done" in row and "NQ 1m" in row and "2024-01-02 14:40 → 2024-01-02 15:29" in row
    assert f"v{run.model_version_id}" in row and "approve" in row and "100%" in row
    assert f"{float(run.report['net_pnl']):,.2f}" in row and f'<td class="n">{run.report["trades"]}</td>' in row
    assert 'id="backtest-form"' in html and 'name="csrfmiddlewaretoken"' in html
    assert 'id="nav-backtests"' in html and 'aria-current="page">Backtests' in html
    read_only = page(reader.get("/backtests/"))
    assert 'id="backtest-form"' not in read_only and "trading.run_backtest" in read_only


def test_the_pages_need_a_login(nq):
    for url in ("/backtests/", "/backtests/1/", "/backtests/1/progress/", "/backtests/1/trades/1/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_starting_from_the_page_records_a_queued_run_and_shows_its_page(nq, runner,
                                                                        django_capture_on_commit_callbacks):
    version = model_version(nq)

    with django_capture_on_commit_callbacks(execute=False) as started:
        response = runner.post("/backtests/", form_data(version=str(version.pk), approval="record"))

    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/backtests/{run.pk}/"
    assert run.status == BacktestRun.Status.QUEUED and run.via == "page"
    assert run.requested_by.get_username() == "runner"
    assert (run.instrument, run.timeframe, run.model_version_id, run.approval) == (nq, "1m", version.pk, "record")
    assert (run.start, run.end, run.bars_total, run.lookahead) == (WINDOW_START, WINDOW_END, 50, False)
    assert len(started) == 1  # the start (a thread, or a task in deployment mode), once the request commits


def test_a_date_alone_is_midnight_for_from_and_the_whole_day_for_to(nq, runner,
                                                                    django_capture_on_commit_callbacks):
    version = model_version(nq)  # the market's active version (the form names none)
    version.status, version.data_end = ModelVersion.Status.ACTIVE, SERIES_ORIGIN - timedelta(days=1)
    version.save(update_fields=["status", "data_end"])

    with django_capture_on_commit_callbacks(execute=False):
        response = runner.post("/backtests/", form_data(**{"from": "2024-01-02", "to": "2024-01-02"}))

    run = BacktestRun.objects.get()
    assert response.status_code == 302
    assert run.start == SERIES_ORIGIN.replace(hour=0, minute=0)
    assert run.end == SERIES_ORIGIN.replace(hour=23, minute=59, second=59, microsecond=999999)
    assert run.bars_total == BARS


@pytest.mark.parametrize(("change", "message"), [
    ({"symbol": "ZZZ"}, "ZZZ"),
    ({"from": "2024-01-02T15:29", "to": "2024-01-02T14:40"}, "is before &#x27;from&#x27;"),
    ({"from": "yesterday"}, "&#x27;from&#x27; is not an ISO date or date-time"),
    ({"to": "2024-13-45"}, "&#x27;to&#x27; is not an ISO date or date-time"),
    ({"version": "999999"}, "there is no model version 999999"),
    ({"version": "other-market"}, "not NQ 1m"),
    ({"from": "2023-01-01T00:00", "to": "2023-01-02T00:00"}, "no stored NQ 1m bars"),
    ({"version": "lookahead"}, "look-ahead"),
])
def test_a_refused_start_names_the_problem_in_the_form_and_creates_nothing(nq, runner, change, message):
    version = model_version(nq)
    other = model_version(InstrumentFactory(symbol="ES"))
    if change.get("version") == "other-market":
        change = {**change, "version": str(other.pk)}
    if change.get("version") == "lookahead":
        version.data_end = WINDOW_END
        version.save(update_fields=["data_end"])
        change = {**change, "version": str(version.pk)}

    response = runner.post("/backtests/", {**form_data(version=str(version.pk)), **change})

    assert response.status_code == 400
    assert message in page(response)
    assert 'id="backtest-form"' in page(response)
    assert not BacktestRun.objects.exists()


def test_starting_needs_the_permission(nq, reader):
    version = model_version(nq)

    response = reader.post("/backtests/", form_data(version=str(version.pk)))

    assert response.status_code == 403
    assert not BacktestRun.objects.exists()


def test_starting_is_csrf_protected(nq, django_capture_on_commit_callbacks):
    version = model_version(nq)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("runner", "trading.run_backtest"))

    assert client.post("/backtests/", form_data(version=str(version.pk))).status_code == 403
    assert not BacktestRun.objects.exists()

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page(client.get("/backtests/"))).group(1)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/backtests/", {**form_data(version=str(version.pk)), "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and BacktestRun.objects.count() == 1


def test_the_admin_lists_runs_with_their_progress_and_changes_nothing(nq, admin_client):
    run = finished_run(nq)

    html = page(admin_client.get("/admin/trading/backtestrun/"))

    assert f"{run.bars_total}/{run.bars_total} bars (100%)" in html
    assert admin_client.get("/admin/trading/backtestrun/add/").status_code == 403
    assert admin_client.post(f"/admin/trading/backtestrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert BacktestRun.objects.filter(pk=run.pk).exists()
