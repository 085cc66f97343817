"""The trading admin: changelists render with search and filters, bars stay cheap to list, feed rows stay read-only."""
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.utils import timezone

from trading.admin import FeedStatusAdmin
from trading.models import FeedStatus
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def nq():
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def es():
    return InstrumentFactory(symbol="ES", name="E-mini S&P 500", exchange="CME", active=False)


@pytest.fixture
def bars(nq, es):
    return {
        "nq": BarFactory.create_series(4, start=T0, instrument=nq),
        "nq_5m": BarFactory.create_series(2, start=T0, instrument=nq, timeframe="5m"),
        "es": BarFactory.create_series(3, start=T0, instrument=es),
    }


def changelist(admin_client, model: str, query: str = ""):
    response = admin_client.get(f"/admin/trading/{model}/{query}")
    # An unknown filter parameter makes the admin redirect with ?e=1 instead of rendering.
    assert response.status_code == 200, response.get("Location")
    return response.context["cl"]


# --- instruments ----------------------------------------------------------------------------------------------


def test_instrument_changelist_lists_every_instrument(admin_client, nq, es):
    cl = changelist(admin_client, "instrument")

    assert [i.symbol for i in cl.result_list] == ["ES", "NQ"]


@pytest.mark.parametrize(
    ("query", "symbols"),
    [
        ("?q=nq", ["NQ"]),
        ("?q=S%26P", ["ES"]),  # by name
        ("?exchange=CME&currency=USD", ["ES", "NQ"]),
        ("?active__exact=1", ["NQ"]),
        ("?active__exact=0&q=E", ["ES"]),
        ("?exchange=CBOT", []),
    ],
)
def test_instrument_changelist_searches_symbol_and_name_and_filters(admin_client, nq, es, query, symbols):
    cl = changelist(admin_client, "instrument", query)

    assert [i.symbol for i in cl.result_list] == symbols


# --- bars -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 9),
        ("?q=nq", 6),
        ("?q=ES", 3),
        ("?q=N", 0),  # a symbol is matched whole
        ("?timeframe__exact=5m", 2),
        ("?timestamp__year=2024&timestamp__month=1&timestamp__day=2", 9),
        ("?timestamp__year=2023", 0),
    ],
)
def test_bar_changelist_searches_by_symbol_and_filters_by_timeframe_and_date(admin_client, bars, query, expected):
    cl = changelist(admin_client, "bar", query)

    assert cl.result_count == expected


def test_bar_changelist_filters_by_instrument(admin_client, bars, es):
    cl = changelist(admin_client, "bar", f"?instrument__id__exact={es.pk}&timeframe__exact=1m")

    assert {bar.instrument_id for bar in cl.result_list} == {es.pk}
    assert cl.result_count == 3


def test_bar_changelist_shows_ohlcv_columns(admin_client, bars):
    response = admin_client.get("/admin/trading/bar/?q=ES")
    html = response.content.decode()

    for column in ("column-instrument", "column-timeframe", "column-timestamp", "column-open", "column-high",
                   "column-low", "column-close", "column-volume"):
        assert column in html


def test_bar_changelist_does_not_count_the_whole_table_when_filtered(admin_client, bars):
    cl = changelist(admin_client, "bar", "?q=NQ")

    assert cl.full_result_count is None
    assert cl.result_count == 6


def test_bar_changelist_orders_newest_first_along_the_unique_index_without_a_pk_tiebreak(admin_client, bars):
    nq = bars["nq"][0].instrument
    cl = changelist(admin_client, "bar", f"?instrument__id__exact={nq.pk}&timeframe__exact=1m")
    sql = str(cl.queryset.query)
    order_by = sql.rsplit("ORDER BY", 1)[1]

    assert [bar.timestamp for bar in cl.result_list] == sorted((b.timestamp for b in bars["nq"]), reverse=True)
    assert order_by.split(",")[-1].strip().endswith('"timestamp" DESC')
    assert '"id"' not in order_by
    assert "trading_instrument" not in order_by  # sorting by the instrument's own ordering (symbol) defeats the index


def test_bar_changelist_loads_instruments_in_the_same_query(admin_client, bars, django_assert_max_num_queries):
    # Session, user, count, rows, date-hierarchy aggregates and filter choices: a fixed number, not one per row.
    with django_assert_max_num_queries(12):
        admin_client.get("/admin/trading/bar/")


def test_bar_change_form_picks_the_instrument_by_autocomplete(admin_client, bars):
    bar = bars["nq"][0]

    form = admin_client.get(f"/admin/trading/bar/{bar.pk}/change/")
    lookup = admin_client.get(
        "/admin/autocomplete/", {"app_label": "trading", "model_name": "bar", "field_name": "instrument", "term": "nq"}
    )

    assert form.status_code == 200
    assert "admin-autocomplete" in form.content.decode()
    assert [r["text"] for r in lookup.json()["results"]] == ["NQ"]


# --- feed status ----------------------------------------------------------------------------------------------


@pytest.fixture
def feed_status(nq):
    return FeedStatus.objects.create(
        instrument=nq, timeframe="1m", source="synthetic", running=True, heartbeat_at=timezone.now()
    )


@pytest.mark.parametrize("query", ["", "?q=NQ", "?q=synthetic", "?running__exact=1&timeframe__exact=1m"])
def test_feed_status_changelist_renders_with_search_and_filters(admin_client, feed_status, query):
    cl = changelist(admin_client, "feedstatus", query)

    assert list(cl.result_list) == [feed_status]


def test_feed_status_rows_cannot_be_added_or_edited_in_the_admin(admin_client, feed_status):
    add = admin_client.get("/admin/trading/feedstatus/add/")
    view = admin_client.get(f"/admin/trading/feedstatus/{feed_status.pk}/change/")
    edit = admin_client.post(f"/admin/trading/feedstatus/{feed_status.pk}/change/", {"source": "edited"})

    assert add.status_code == 403
    assert view.status_code == 200
    assert edit.status_code == 403
    feed_status.refresh_from_db()
    assert feed_status.source == "synthetic"


def test_feed_status_alive_column_distrusts_a_running_flag_without_a_recent_heartbeat(feed_status):
    model_admin = FeedStatusAdmin(FeedStatus, admin.site)
    assert model_admin.alive(feed_status) is True

    feed_status.heartbeat_at = timezone.now() - timedelta(hours=1)

    assert model_admin.alive(feed_status) is False


def test_the_admin_lists_each_bars_workflow_with_its_hops_read_only(admin_client):
    from trading.models import BarWorkflow

    bar = BarFactory(instrument=InstrumentFactory(symbol="NQ"))
    stored = timezone.now()
    BarWorkflow.objects.create(bar=bar, instrument=bar.instrument, timeframe=bar.timeframe, timestamp=bar.timestamp,
                               stage="done", stored_at=stored, touched_at=stored,
                               settled_at=stored + timedelta(milliseconds=12),
                               decided_at=stored + timedelta(milliseconds=40), error="decide: boom")

    listing = admin_client.get("/admin/trading/barworkflow/?stage__exact=done").content.decode()

    assert "12.0" in listing and "28.0" in listing and "decide: boom" in listing
    assert admin_client.get("/admin/trading/barworkflow/add/").status_code == 403
    assert admin_client.get("/admin/trading/workerheartbeat/").status_code == 200
