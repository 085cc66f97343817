"""The chart's overlays, server side: the calls, fills, open brackets and equity of the shown bars (trading.chart),
in the dashboard's initial data and from the JSON the page re-reads when the account changes; bounded and cheap."""
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from trading import chart, services
from trading.models import Account, EquitySnapshot, Fill, Order
from trading.tests import decisions
from trading.tests.edges.test_dashboard_page import initial_payload
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

START = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_keys = count()


@pytest.fixture
def nq():
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def user_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="trader", password="not-used-here"))
    return client


@pytest.fixture
def account():
    return services.account_default_get()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def order(account, bar, *, kind="entry", side="buy", parent=None, status="filled", closed=False, quantity=2,
          stop=None, target=None) -> Order:
    return Order.objects.create(
        account=account, instrument=bar.instrument, timeframe=bar.timeframe, kind=kind, side=side, quantity=quantity,
        status=status, idempotency_key=f"chart-test-{next(_keys)}", after_bar_timestamp=bar.timestamp - MINUTE,
        parent=parent, closed=closed, stop_loss=stop, take_profit=target)


def fill(an_order: Order, bar, price: str) -> Fill:
    return Fill.objects.create(order=an_order, account=an_order.account, instrument=an_order.instrument,
                               side=an_order.side, quantity=an_order.quantity, price=Decimal(price),
                               commission=Decimal("5.00"), bar=bar, timestamp=bar.timestamp)


def trade(account, entry_bar, entry_price, *, side="buy", stop="17990", target="18015", exit_bar=None,
          exit_price=None, exit_kind="take_profit"):
    """An entry filled at `entry_bar` with its bracket; with `exit_bar`, closed there by an exit of `exit_kind`."""
    entry = order(account, entry_bar, side=side, stop=Decimal(stop), target=Decimal(target),
                  closed=exit_bar is not None)
    fills = [fill(entry, entry_bar, entry_price)]
    if exit_bar is not None:
        exit_ = order(account, exit_bar, kind=exit_kind, side="sell" if side == "buy" else "buy", parent=entry)
        fills.append(fill(exit_, exit_bar, exit_price))
    return entry, fills


def snapshot(account, at: datetime, equity: str) -> EquitySnapshot:
    return EquitySnapshot.objects.create(account=account, timestamp=at, equity=Decimal(equity),
                                         realized_pnl=Decimal(0), unrealized_pnl=Decimal(0),
                                         peak_equity=Decimal(equity), drawdown=0.0)


def times(bars) -> list[datetime]:
    return [bar.timestamp for bar in bars]


# ---- calls -------------------------------------------------------------------------------------------------------

def test_calls_are_the_newest_prediction_of_each_shown_bar_of_this_market(nq):
    before = BarFactory.create(instrument=nq, timestamp=START - MINUTE)  # scrolled out of the window
    bars = BarFactory.create_series(4, instrument=nq, start=START)
    five_minute = BarFactory.create(instrument=nq, timeframe="5m", timestamp=START)
    other_market = BarFactory.create(instrument=InstrumentFactory(symbol="ES"), timestamp=START)
    old, new = decisions.model_version(nq), decisions.model_version(nq)
    decisions.prediction(before, old, side="long", p=0.9)
    decisions.prediction(bars[0], old, side="long", p=0.61)
    decisions.prediction(bars[2], old, side="long", p=0.55)
    decisions.prediction(bars[2], new, side="short", p=0.72)  # the newer version's call of the same bar wins
    decisions.prediction(five_minute, decisions.model_version(nq, timeframe="5m"), side="short", p=0.8)
    decisions.prediction(other_market, decisions.model_version(other_market.instrument), side="short", p=0.8)

    calls = chart.chart_predictions(instrument=nq, timeframe="1m", bar_times=times(bars))

    assert calls == [
        {"bar_timestamp": iso(bars[0].timestamp), "side": "long", "confidence": 0.61, "p_long": 0.61,
         "p_short": pytest.approx(0.39), "version": old.pk},
        {"bar_timestamp": iso(bars[2].timestamp), "side": "short", "confidence": 0.72,
         "p_long": pytest.approx(0.28), "p_short": 0.72, "version": new.pk},
    ]


def test_no_bars_no_calls_and_no_query(nq, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert chart.chart_predictions(instrument=nq, timeframe="1m", bar_times=[]) == []


# ---- fills, brackets, equity ---------------------------------------------------------------------------------

def test_fills_of_the_shown_account_and_instrument_since_the_first_bar_with_kind_and_entry(nq, account):
    early = BarFactory.create(instrument=nq, timestamp=START - 10 * MINUTE)
    bars = BarFactory.create_series(10, instrument=nq, start=START)
    trade(account, early, "17950", exit_bar=early, exit_price="17960")  # before the window
    won, won_fills = trade(account, bars[1], "18000.25", exit_bar=bars[4], exit_price="18015")
    lost, lost_fills = trade(account, bars[5], "18003", side="sell", stop="18013", target="17988",
                             exit_bar=bars[6], exit_price="18013.25", exit_kind="stop_loss")
    timed, timed_fills = trade(account, bars[7], "18001", exit_bar=bars[9], exit_price="18002.5", exit_kind="time")
    other_account = Account.objects.create(name="other", starting_equity=Decimal(50_000))
    trade(other_account, bars[2], "18000")
    trade(account, BarFactory.create(instrument=InstrumentFactory(symbol="ES"), timestamp=START), "5000")

    fills = chart.chart_fills(account=account, instrument=nq, bar_times=times(bars))

    assert [(f["kind"], f["side"], f["price"], f["t"], f["entry"]) for f in fills] == [
        ("entry", "buy", 18000.25, iso(bars[1].timestamp), won.pk),
        ("take_profit", "sell", 18015.0, iso(bars[4].timestamp), won.pk),
        ("entry", "sell", 18003.0, iso(bars[5].timestamp), lost.pk),
        ("stop_loss", "buy", 18013.25, iso(bars[6].timestamp), lost.pk),
        ("entry", "buy", 18001.0, iso(bars[7].timestamp), timed.pk),
        ("time", "sell", 18002.5, iso(bars[9].timestamp), timed.pk),
    ]
    assert [f["kind_label"] for f in fills[:2]] == ["Entry", "Take-profit"]
    assert fills[-1]["kind_label"] == "Time exit"
    assert fills[1]["order"] == won_fills[1].order_id and fills[1]["quantity"] == 2


def test_open_brackets_are_the_filled_entries_not_yet_closed(nq, account):
    bars = BarFactory.create_series(6, instrument=nq, start=START)
    trade(account, bars[0], "18000", exit_bar=bars[2], exit_price="18015")  # closed: no lines
    order(account, bars[3], status="pending", stop=Decimal("1"), target=Decimal("2"))  # working, not filled
    short, _ = trade(account, bars[4], "18010.5", side="sell", stop="18020.5", target="17995.5")

    brackets = chart.chart_brackets_open(account=account, instrument=nq)

    assert brackets == [{"entry": short.pk, "side": "short", "quantity": 2, "t": iso(bars[4].timestamp),
                         "price": 18010.5, "stop_loss": 18020.5, "take_profit": 17995.5}]


def test_equity_is_the_account_marked_at_the_shown_bars_closes(nq, account):
    bars = BarFactory.create_series(3, instrument=nq, start=START)
    snapshot(account, START, "99990")  # the close of the bar before the window
    snapshot(account, START + MINUTE, "100000")
    snapshot(account, START + MINUTE + timedelta(seconds=30), "100100")  # not a close of a shown bar
    snapshot(account, START + 3 * MINUTE, "100250.50")
    other = Account.objects.create(name="other", starting_equity=Decimal(50_000))
    snapshot(other, START + 2 * MINUTE, "50000")

    equity = chart.chart_equity(account=account, timeframe="1m", bar_times=times(bars))

    assert equity == [{"t": iso(START + MINUTE), "equity": 100000.0, "drawdown": 0.0},
                      {"t": iso(START + 3 * MINUTE), "equity": 100250.5, "drawdown": 0.0}]


def test_a_coarser_chart_takes_the_equity_at_its_own_closes(nq, account):
    bars = BarFactory.create_series(2, instrument=nq, timeframe="5m", start=START)
    for minute in range(1, 11):
        snapshot(account, START + minute * MINUTE, str(100_000 + minute))

    equity = chart.chart_equity(account=account, timeframe="5m", bar_times=times(bars))

    assert [(e["t"], e["equity"]) for e in equity] == [(iso(START + 5 * MINUTE), 100005.0),
                                                        (iso(START + 10 * MINUTE), 100010.0)]


def test_the_overlays_are_four_queries_however_many_rows(nq, account, django_assert_num_queries):
    bars = BarFactory.create_series(40, instrument=nq, start=START)
    version = decisions.model_version(nq)
    for i, bar in enumerate(bars):
        decisions.prediction(bar, version, side="long" if i % 2 else "short")
        snapshot(account, bar.timestamp + MINUTE, "100000")
    for i in range(0, 36, 4):
        trade(account, bars[i], "18000", exit_bar=bars[i + 2], exit_price="18010")
    trade(account, bars[38], "18000")

    with django_assert_num_queries(4):
        overlays = chart.chart_overlays(instrument=nq, timeframe="1m", account=account, bar_times=times(bars))

    assert len(overlays["predictions"]) == 40 and len(overlays["equity"]) == 40
    assert len(overlays["fills"]) == 19 and len(overlays["brackets"]) == 1
    assert overlays["account"] == account.pk


def test_without_an_account_only_the_calls_are_read(nq, django_assert_num_queries):
    bars = BarFactory.create_series(3, instrument=nq, start=START)
    decisions.prediction(bars[1], decisions.model_version(nq), side="short", p=0.66)

    with django_assert_num_queries(1):
        overlays = chart.chart_overlays(instrument=nq, timeframe="1m", account=None, bar_times=times(bars))

    assert overlays == {"predictions": [{"bar_timestamp": iso(bars[1].timestamp), "side": "short",
                                         "confidence": 0.66, "p_long": pytest.approx(0.34), "p_short": 0.66,
                                         "version": overlays["predictions"][0]["version"]}],
                        "account": None, "fills": [], "brackets": [], "equity": []}


def test_reads_are_capped_relative_to_the_bars_shown(nq, account, monkeypatch):
    bars = BarFactory.create_series(3, instrument=nq, start=START)
    for _ in range(3):
        trade(account, bars[1], "18000", exit_bar=bars[2], exit_price="18001")
    monkeypatch.setattr(chart, "FILLS_PER_BAR", 1)

    fills = chart.chart_fills(account=account, instrument=nq, bar_times=times(bars))

    assert len(fills) == 3, "three bars shown, one fill per bar allowed"
    assert all(f["kind"] == "take_profit" for f in fills), "the newest fills are kept"


# ---- the dashboard's initial data --------------------------------------------------------------------------------

def test_the_dashboard_carries_the_overlays_of_its_bars_and_account(user_client, nq, account):
    bars = BarFactory.create_series(5, instrument=nq, start=START)
    version = decisions.model_version(nq)
    decisions.prediction(bars[3], version, side="long", p=0.64)
    entry, _ = trade(account, bars[2], "18000.5", stop="17990.5", target="18015.5")
    snapshot(account, bars[4].timestamp + MINUTE, "100125")

    response = user_client.get(reverse("dashboard"), {"symbol": "NQ", "timeframe": "1m"})

    overlays = initial_payload(response)["chart"]
    assert overlays["account"] == account.pk
    assert [(c["bar_timestamp"], c["side"], c["confidence"]) for c in overlays["predictions"]] == [
        (iso(bars[3].timestamp), "long", 0.64)]
    assert [(f["kind"], f["price"]) for f in overlays["fills"]] == [("entry", 18000.5)]
    assert overlays["brackets"] == [{"entry": entry.pk, "side": "long", "quantity": 2, "t": iso(bars[2].timestamp),
                                     "price": 18000.5, "stop_loss": 17990.5, "take_profit": 18015.5}]
    assert overlays["equity"] == [{"t": iso(bars[4].timestamp + MINUTE), "equity": 100125.0, "drawdown": 0.0}]
    html = response.content.decode()
    assert 'data-overlays-url="/chart/overlays/"' in html
    # The overlay builders load (locally) before the dashboard script that calls them.
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', html)
    assert scripts == ["/static/vendor/plotly/plotly.min.js", "/static/js/chart_overlays.js", "/static/js/dashboard.js"]


def test_the_dashboards_queries_do_not_grow_with_the_overlays(user_client, nq, account,
                                                               django_assert_max_num_queries):
    bars = BarFactory.create_series(30, instrument=nq, start=START)
    version = decisions.model_version(nq)
    # One of each: a call, a closed trade, an open one, an equity mark (what costs a query once, not per row).
    decisions.prediction(bars[0], version, side="short")
    snapshot(account, bars[0].timestamp + MINUTE, "100000")
    trade(account, bars[0], "18000", exit_bar=bars[1], exit_price="18004")
    trade(account, bars[28], "18000")
    user_client.get(reverse("dashboard"))  # sessions, permissions and the default account's rows made once
    with CaptureQueriesContext(connection) as few:
        user_client.get(reverse("dashboard"))
    for i, bar in enumerate(bars[1:], start=1):
        decisions.prediction(bar, version, side="long" if i % 3 else "short")
        snapshot(account, bar.timestamp + MINUTE, str(100_000 + i))
    for i in range(3, 27, 3):
        trade(account, bars[i], "18000", exit_bar=bars[i + 1], exit_price="18004")

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = user_client.get(reverse("dashboard"))

    overlays = initial_payload(response)["chart"]
    assert len(overlays["predictions"]) == 30 and len(overlays["fills"]) == 19 and len(overlays["equity"]) == 30


# ---- the JSON the page re-reads ---------------------------------------------------------------------------------

def test_the_overlays_json_is_behind_login(client, nq):
    response = client.get(reverse("chart-overlays"), {"symbol": "NQ", "timeframe": "1m"})

    assert response.status_code == 302 and response.url.startswith(reverse("login"))


@pytest.mark.parametrize("params", [
    {"symbol": "NOPE", "timeframe": "1m"},
    {"symbol": "NQ", "timeframe": "2m"},
    {"symbol": "NQ", "timeframe": "1m", "account": "999999"},
    {"symbol": "NQ", "timeframe": "1m", "account": "abc"},
    {"symbol": "NQ", "timeframe": "1m", "account": "²"},
    {"symbol": "NQ", "timeframe": "1m", "account": "9" * 40},
])
def test_the_overlays_json_is_404_for_an_unknown_market_or_account(user_client, nq, params):
    assert user_client.get(reverse("chart-overlays"), params).status_code == 404


def test_the_overlays_json_is_get_only(user_client, nq):
    assert user_client.post(reverse("chart-overlays") + "?symbol=NQ&timeframe=1m").status_code == 405


def test_the_overlays_json_reads_the_newest_bars_the_dashboard_shows(user_client, nq, account, monkeypatch,
                                                                      django_assert_max_num_queries):
    from trading import chart_views

    monkeypatch.setattr(chart_views, "DASHBOARD_BARS", 3)
    bars = BarFactory.create_series(6, instrument=nq, start=START)
    trade(account, bars[1], "18000", exit_bar=bars[2], exit_price="18010")  # before the newest three bars
    entry, _ = trade(account, bars[3], "18001", stop="17991", target="18016", exit_bar=bars[5], exit_price="17991",
                     exit_kind="stop_loss")
    open_entry, _ = trade(account, bars[5], "17991.5", side="sell", stop="18001.5", target="17976.5")
    snapshot(account, bars[4].timestamp + MINUTE, "99950")
    user_client.get(reverse("chart-overlays"), {"symbol": "NQ", "timeframe": "1m"})  # the session, once

    with django_assert_max_num_queries(9):
        response = user_client.get(reverse("chart-overlays"),
                                   {"symbol": "NQ", "timeframe": "1m", "account": str(account.pk)})

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["account"] == account.pk
    assert [(f["kind"], f["entry"]) for f in body["fills"]] == [
        ("entry", entry.pk), ("stop_loss", entry.pk), ("entry", open_entry.pk)]
    assert [b["entry"] for b in body["brackets"]] == [open_entry.pk]
    assert body["equity"] == [{"t": iso(bars[4].timestamp + MINUTE), "equity": 99950.0, "drawdown": 0.0}]


def test_the_overlays_json_without_an_account_has_only_the_calls(user_client, nq, account):
    bars = BarFactory.create_series(2, instrument=nq, start=START)
    decisions.prediction(bars[0], decisions.model_version(nq), side="long", p=0.7)
    trade(account, bars[1], "18000")

    body = user_client.get(reverse("chart-overlays"), {"symbol": "NQ", "timeframe": "1m"}).json()

    assert body["account"] is None and body["fills"] == body["brackets"] == body["equity"] == []
    assert [c["side"] for c in body["predictions"]] == ["long"]
