"""Two things the backtest pages owe a reader: a ratio the window cannot estimate reads "n/a" with the reason (a
two-day run's annual return and Calmar are not a ten-digit number), on the page and in `manage.py backtest`; and the
start form offers the stored bar range of the chosen market (text, the inputs' limits and a default window), with a
JSON endpoint for the markets and timeframes the page did not render."""
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest

from trading import backtest, selectors
from trading.domain import performance
from trading.management.commands.backtest import Command
from trading.models import BacktestRun, Bar, Instrument
from trading.tests.decisions import model_version, prediction, user_with
from trading.tests.edges.test_backtest_pages import logged_in, page
from trading.tests.factories import InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

HOUR = timedelta(hours=1)
# Two CME trading days of hourly bars: 2024-01-02 23:00 UTC (17:00 Chicago) to 2024-01-04 21:00, with the
# 22:00 maintenance hour of the 3rd missing; six hours of history before the window.
SESSION_OPEN = datetime(2024, 1, 2, 23, tzinfo=UTC)
HISTORY = [SESSION_OPEN - (6 - i) * HOUR for i in range(6)]
WINDOW = [t for t in (SESSION_OPEN + i * HOUR for i in range(47)) if t.hour != 22 or t.day != 3]


def hourly_bars(instrument: Instrument) -> list[Bar]:
    """A market falling 20 points an hour: shorts reach their take-profit, longs stop out."""
    bars = []
    for i, t in enumerate([*HISTORY, *WINDOW]):
        price = Decimal(18000 - 20 * i)
        bars.append(Bar(instrument=instrument, timeframe="1h", timestamp=t, open=price, high=price + 1,
                        low=price - 21, close=price - 20, volume=Decimal(100)))
    return Bar.objects.bulk_create(bars)


def two_day_run(instrument: Instrument) -> BacktestRun:
    """A done backtest over the two trading days, with stored predictions (short three bars in four)."""
    hourly_bars(instrument)
    version = model_version(instrument, timeframe="1h")
    run = backtest.backtest_create(symbol=instrument.symbol, timeframe="1h", start=WINDOW[0], end=WINDOW[-1],
                                   version_id=version.pk)

    def predict(bar):
        i = round((bar.timestamp - SESSION_OPEN) / HOUR)
        prediction(bar, version, side="long" if i % 4 == 0 else "short", p=0.70, atr=15.0, atr_reference=15.0)

    return backtest.backtest_execute(run_id=run.pk, bar_hook=predict)


@pytest.fixture
def nq():
    return Instrument.objects.get(symbol="NQ")


@pytest.fixture
def reader():
    return logged_in(user_with("reader"))


@pytest.fixture
def runner():
    return logged_in(user_with("runner", "trading.run_backtest"))


def ratio_cells(html: str) -> dict[str, str]:
    table = html.split('id="ratios"')[1].split("</table>")[0]
    return dict(re.findall(r'<tr><th scope="row">([^<]+)</th>(<td.*?</td>)</tr>', table))


# --- ratios the window cannot estimate -----------------------------------------------------------------------------

def test_a_two_day_backtest_shows_the_annual_return_and_calmar_as_na_with_the_reason_not_a_ten_digit_number(
        nq, reader):
    run = two_day_run(nq)
    report = run.report
    assert run.status == BacktestRun.Status.DONE and report["window"]["trading_days"] == 2
    assert report["trades"] > 0 and report["max_drawdown"]["fraction"] > 0
    reason = ("the window is 2 trading days of bars; an annual figure needs at least 63 (a quarter); its return "
              "would be raised to the power 126")
    assert (report["calmar"], report["calmar_na"]) == (None, reason)
    assert (report["annualised_return"], report["annualised_return_na"]) == (None, reason)
    # What the formula alone makes of it: the compounding the rule refuses.
    equity = [float(report["starting_equity"]), *report["equity"]["equity"]]
    assert performance.annualised_return(equity, report["periods_per_year"]) > 1e6

    html = page(reader.get(f"/backtests/{run.pk}/"))

    cells = ratio_cells(html)
    for label in ("Calmar", "Annualised return"):
        assert cells[label] == (f'<td class="n bt-na" title="{reason}">n/a'
                                f'<small class="bt-na-reason">{reason}</small></td>'), label
    # 46 returns are enough for Sharpe (no reason, a plain figure); no ten-digit figure anywhere in the table.
    assert report["sharpe_na"] is None and cells["Sharpe"] == f'<td class="n">{report["sharpe"]:,.2f}</td>'
    assert not re.search(r"\d{1,3}(,\d{3}){2,}", "".join(cells.values()))


def test_the_text_report_says_na_and_why(nq):
    run = two_day_run(nq)
    out = StringIO()

    Command(stdout=out)._summary(run)

    text = out.getvalue()
    assert f"annualised return n/a ({run.report['annualised_return_na']})" in text
    assert f"Calmar n/a ({run.report['calmar_na']})" in text
    assert f"Sharpe {run.report['sharpe']:,.2f}," in text


def test_a_report_stored_before_the_reasons_gets_the_same_rule_from_its_bar_count(nq, reader):
    """A two-day minute run stored its compounded figure; the page no longer shows it."""
    run = two_day_run(nq)
    old = {key: value for key, value in run.report.items() if not key.endswith("_na")}
    old.update(calmar=1_096_517_801.3, annualised_return=None, periods_per_year=347_760.0,
               window={**old["window"], "bars": 2760})
    BacktestRun.objects.filter(pk=run.pk).update(report=old)

    cells = ratio_cells(page(reader.get(f"/backtests/{run.pk}/")))

    assert cells["Calmar"].startswith('<td class="n bt-na" title="the window is 2 trading days of bars;')
    assert "1,096,517,801" not in cells["Calmar"]


# --- the stored range the form offers ------------------------------------------------------------------------------

def minute_bars(instrument: Instrument, first: datetime, count: int) -> None:
    Bar.objects.bulk_create(Bar(instrument=instrument, timeframe="1m", timestamp=first + i * timedelta(minutes=1),
                                open=Decimal(100), high=Decimal(101), low=Decimal(99), close=Decimal(100),
                                volume=Decimal(1)) for i in range(count))


@pytest.fixture
def markets(nq):
    """ES (first in the list, so the form's initial choice) with nine days of 1m bars from 2024-01-02 14:30; NQ with
    90 minutes of 1m bars in March and 1h bars; a backtest's private copy of ES, which no form may offer."""
    Instrument.objects.filter(active=True).exclude(symbol="NQ").update(active=False)  # seeded markets out of the way
    es = InstrumentFactory(symbol="ES")
    minute_bars(es, datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 9 * 1440)
    minute_bars(nq, datetime(2024, 3, 5, 13, 0, tzinfo=UTC), 90)
    hourly_bars(nq)
    private = InstrumentFactory(symbol="BT1-ES", backtest=True)
    minute_bars(private, datetime(2023, 1, 1, tzinfo=UTC), 500)
    return es, nq, private


def test_the_range_is_one_query_per_market_and_timeframe_and_never_a_backtests_market(markets,
                                                                                       django_assert_num_queries):
    with django_assert_num_queries(1):
        es_minutes = selectors.bar_range(symbol="ES", timeframe="1m")
    assert es_minutes == selectors.BarRange(symbol="ES", timeframe="1m", first=datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
                                            last=datetime(2024, 1, 11, 14, 29, tzinfo=UTC), count=9 * 1440)
    assert selectors.bar_range(symbol="NQ", timeframe="1h").count == len(HISTORY) + len(WINDOW)
    assert selectors.bar_range(symbol="ES", timeframe="1h") == selectors.BarRange("ES", "1h", None, None, 0)
    assert selectors.bar_range(symbol="BT1-ES", timeframe="1m") is None
    assert selectors.bar_range(symbol="NQ", timeframe="2m") is None
    assert selectors.bar_range(symbol="NOPE", timeframe="1m") is None
    assert selectors.bar_range(symbol="N\x00Q", timeframe="1m") is None


def test_the_form_shows_the_range_of_the_chosen_market_and_prefills_its_last_week(markets, runner):
    html = page(runner.get("/backtests/"))

    assert re.search(r'<option value="ES" selected>', html)
    note = re.search(r'<p class="bt-range muted" id="bt-range"[^>]*>([^<]*)</p>', html)
    assert note.group(1) == "Stored ES 1m bars: 2024-01-02 14:30 → 2024-01-11 14:29 UTC, 12,960 bars."
    assert 'data-symbol="ES" data-timeframe="1m" data-count="12960"' in note.group(0)
    # The inputs are limited to the range; the window is the last week, ending at the last bar.
    assert '<input type="datetime-local" name="from" id="bt-from" required value="2024-01-04T14:29" ' \
           'min="2024-01-02T14:30" max="2024-01-11T14:29">' in html
    assert '<input type="datetime-local" name="to" id="bt-to" required value="2024-01-11T14:29" ' \
           'min="2024-01-02T14:30" max="2024-01-11T14:29">' in html
    assert "js/backtest_form.js" in html


def test_after_a_refusal_the_form_shows_the_posted_market_and_keeps_the_typed_window(markets, runner):
    response = runner.post("/backtests/", {"symbol": "NQ", "timeframe": "1m", "from": "2024-03-05T13:10",
                                           "to": "2024-03-05T13:20", "version": "", "approval": "approve"})

    html = page(response)
    assert response.status_code == 400 and 'id="form-errors"' in html  # NQ has no model version here
    assert "Stored NQ 1m bars: 2024-03-05 13:00 → 2024-03-05 14:29 UTC, 90 bars." in html
    assert 'value="2024-03-05T13:10" min="2024-03-05T13:00" max="2024-03-05T14:29"' in html


def test_the_range_endpoint_answers_for_any_live_market_and_refuses_the_rest_by_name(markets, reader, client):
    nq = reader.get("/backtests/bar-range/", {"symbol": "NQ", "timeframe": "1m"})
    assert nq.status_code == 200 and nq.json() == {
        "symbol": "NQ", "timeframe": "1m", "count": 90, "first": "2024-03-05T13:00", "last": "2024-03-05T14:29",
        "default_from": "2024-03-05T13:00", "default_to": "2024-03-05T14:29",
        "text": "Stored NQ 1m bars: 2024-03-05 13:00 → 2024-03-05 14:29 UTC, 90 bars."}
    nq_hours = reader.get("/backtests/bar-range/", {"symbol": "NQ", "timeframe": "1h"}).json()
    assert (nq_hours["first"], nq_hours["last"]) == ("2024-01-02T17:00", "2024-01-04T21:00")
    empty = reader.get("/backtests/bar-range/", {"symbol": "ES", "timeframe": "1d"}).json()
    assert empty["count"] == 0 and empty["first"] is None and empty["text"].startswith("No stored 1d bar of ES")
    for query, status, message in (({"symbol": "BT1-ES", "timeframe": "1m"}, 404, "no live market 'BT1-ES'"),
                                   ({"symbol": "NQ", "timeframe": "2m"}, 404, "(timeframes: 1m, 5m"),
                                   ({"symbol": "NQ"}, 400, "give both 'symbol' and 'timeframe'")):
        response = reader.get("/backtests/bar-range/", query)
        assert response.status_code == status and message in response.json()["error"], query
    assert client.get("/backtests/bar-range/", {"symbol": "NQ", "timeframe": "1m"}).status_code == 302  # login
