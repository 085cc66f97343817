"""Bar ingestion on the database: all or nothing, idempotent upserts, file imports, and storing one closed bar."""
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from trading import selectors, services
from trading.domain.bars import BarData, InvalidBars, RowError
from trading.events import bar_closed
from trading.models import Bar, Instrument
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
HEADER = "timestamp,open,high,low,close,volume"


def _line(i: int, close: float = 18_000.0, *, start: datetime = T0) -> str:
    """Data row for minute i: a valid bar whose values depend on i, so a mix-up shows."""
    stamp = (start + timedelta(minutes=i)).isoformat()
    c = close + i * 0.25
    return f"{stamp},{c - 0.5},{c + 1.25},{c - 1.0},{c},{100 + i}"


def _write(tmp_path, lines, name="bars.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _import(path, symbol="NQ", **kwargs) -> services.IngestReport:
    return services.bars_import_file(path=path, symbol=symbol, timeframe=kwargs.pop("timeframe", "1m"), **kwargs)


def _snapshot(symbol="NQ", timeframe="1m"):
    return list(
        Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe)
        .order_by("timestamp")
        .values_list("timestamp", "open", "high", "low", "close", "volume")
    )


# --- all or nothing ---------------------------------------------------------------------------------------------


def test_an_invalid_last_row_of_ten_thousand_stores_nothing(tmp_path):
    lines = [_line(i) for i in range(10_000)]
    lines[-1] = f"{(T0 + timedelta(minutes=9_999)).isoformat()},18000,17999,17990,17995,5"
    with pytest.raises(InvalidBars) as caught:
        _import(_write(tmp_path, lines))
    assert caught.value.errors == [RowError(10_000, "high 17999.0 below open 18000.0")]
    assert Bar.objects.count() == 0


def test_a_refused_file_leaves_existing_bars_exactly_as_they_were(tmp_path):
    _import(_write(tmp_path, [_line(i) for i in range(20)]))
    before = _snapshot()
    changed = [_line(i, close=19_000.0) for i in range(30)]  # would update 20 bars and insert 10
    changed[25] = changed[25].rsplit(",", 1)[0] + ",-1"
    with pytest.raises(InvalidBars, match="row 26: negative volume -1.0"):
        _import(_write(tmp_path, changed, name="changed.csv"))
    assert _snapshot() == before


def test_every_bad_row_is_reported_with_its_number(tmp_path):
    lines = [_line(i) for i in range(5)]
    lines[1] = f"{(T0 + timedelta(minutes=1)).isoformat()},100,101,99,nan,1"
    lines[3] = f"{(T0 + timedelta(minutes=3)).isoformat()},100,101,100.5,100.75,1"
    with pytest.raises(InvalidBars) as caught:
        _import(_write(tmp_path, lines))
    assert [str(e) for e in caught.value.errors] == [
        "row 2: close is missing or NaN", "row 4: low 100.5 above open 100.0"
    ]
    assert Bar.objects.count() == 0


# --- idempotent upsert ------------------------------------------------------------------------------------------


def test_reimporting_the_same_file_changes_nothing(tmp_path):
    path = _write(tmp_path, [_line(i) for i in range(200)])
    first = _import(path)
    stored = _snapshot()
    second = _import(path)
    assert (first.inserted, first.updated, first.unchanged) == (200, 0, 0)
    assert (second.inserted, second.updated, second.unchanged, second.rejected) == (0, 0, 200, [])
    assert _snapshot() == stored
    assert "0 inserted, 0 updated, 200 unchanged, 0 rejected" in str(second)


def test_changed_values_are_counted_as_updated_and_stored(tmp_path):
    _import(_write(tmp_path, [_line(i) for i in range(10)]))
    lines = [_line(i) for i in range(10)]
    lines[4] = f"{(T0 + timedelta(minutes=4)).isoformat()},18001.5,18003.25,18000.75,18002.0,999"
    report = _import(_write(tmp_path, lines, name="revised.csv"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 9)
    bar = Bar.objects.get(instrument__symbol="NQ", timeframe="1m", timestamp=T0 + timedelta(minutes=4))
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        Decimal("18001.5"), Decimal("18003.25"), Decimal("18000.75"), Decimal("18002.0"), Decimal("999")
    )
    assert Bar.objects.count() == 10


def test_overlapping_imports_insert_only_the_new_bars(tmp_path):
    first = _import(_write(tmp_path, [_line(i) for i in range(0, 100)], name="a.csv"))
    second = _import(_write(tmp_path, [_line(i) for i in range(49, 150)], name="b.csv"))
    assert first.inserted == 100
    assert (second.inserted, second.updated, second.unchanged) == (50, 0, 51)
    assert [b[0] for b in _snapshot()] == [T0 + timedelta(minutes=i) for i in range(150)]


def test_values_are_stored_exactly_as_decimals_at_utc_open_times(tmp_path):
    path = _write(tmp_path, ["2024-01-02T09:30:00-05:00,18000.25,18010.75,17990.5,18005.0,1234"])
    _import(path)
    bar = Bar.objects.get()
    assert bar.timestamp == T0
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        Decimal("18000.25"), Decimal("18010.75"), Decimal("17990.5"), Decimal("18005"), Decimal("1234")
    )


def test_the_same_file_for_another_timeframe_or_instrument_touches_nothing_else(tmp_path):
    other = InstrumentFactory(symbol="ES")
    path = _write(tmp_path, [_line(i * 5) for i in range(10)])
    _import(path)
    report = _import(path, timeframe="5m")
    _import(path, symbol="ES")
    assert report.inserted == 10
    assert Bar.objects.filter(instrument__symbol="NQ", timeframe="1m").count() == 10
    assert Bar.objects.filter(instrument__symbol="NQ", timeframe="5m").count() == 10
    assert Bar.objects.filter(instrument=other).count() == 10


def test_whole_and_fractional_seconds_in_one_file_are_found_by_timestamp(tmp_path):
    stamps = [T0, T0 + timedelta(seconds=30, milliseconds=500), T0 + timedelta(minutes=1)]
    path = _write(tmp_path, [f"{t.isoformat()},100,101,99,100,1" for t in stamps])
    _import(path)
    for stamp in stamps:
        assert Bar.objects.filter(instrument__symbol="NQ", timestamp=stamp).count() == 1, stamp
    again = _import(path)
    assert (again.inserted, again.unchanged) == (0, 3)


def test_a_bar_stored_one_by_one_is_unchanged_when_imported(tmp_path):
    nq = Instrument.objects.get(symbol="NQ")
    existing = BarFactory(instrument=nq, timestamp=T0, open=Decimal("18000"), high=Decimal("18001"),
                          low=Decimal("17999"), close=Decimal("18000.5"), volume=Decimal("7"))
    report = _import(_write(tmp_path, [f"{T0.isoformat()},18000,18001,17999,18000.5,7", _line(1)]))
    assert (report.inserted, report.updated, report.unchanged) == (1, 0, 1)
    assert Bar.objects.get(pk=existing.pk).close == Decimal("18000.5")


# --- skip invalid, order, duplicates ----------------------------------------------------------------------------


def test_skip_invalid_stores_the_good_rows_and_reports_each_bad_one(tmp_path):
    lines = [_line(i) for i in range(6)]
    lines[2] = f"{(T0 + timedelta(minutes=2)).isoformat()},0,1,0,1,1"
    lines[4] = "not a time,100,101,99,100,1"
    report = _import(_write(tmp_path, lines), skip_invalid=True)
    assert [str(e) for e in report.rejected] == [
        "row 3: non-positive open 0.0", "row 5: unparseable timestamp 'not a time'"
    ]
    assert (report.received, report.inserted) == (6, 4)
    assert [b[0] for b in _snapshot()] == [T0 + timedelta(minutes=i) for i in (0, 1, 3, 5)]


def test_an_unsorted_file_is_stored_in_time_order(tmp_path):
    order = [3, 0, 4, 1, 2]
    report = _import(_write(tmp_path, [_line(i) for i in order]))
    assert report.sorted_input is False
    assert "(input was out of order; sorted)" in str(report)
    stored = _snapshot()
    assert [b[0] for b in stored] == [T0 + timedelta(minutes=i) for i in range(5)]
    assert [b[5] for b in stored] == [Decimal(100 + i) for i in range(5)]


def test_a_duplicate_timestamp_refuses_the_file_naming_both_rows(tmp_path):
    lines = [_line(i) for i in range(3)] + [_line(1, close=17_000.0)]
    with pytest.raises(InvalidBars, match=r"row 4: duplicate timestamp 2024-01-02T14:31:00\+00:00 \(first at row 2\)"):
        _import(_write(tmp_path, lines))
    assert Bar.objects.count() == 0


def test_a_duplicate_timestamp_with_skip_invalid_keeps_the_first(tmp_path):
    lines = [_line(i) for i in range(3)] + [_line(1, close=17_000.0)]
    report = _import(_write(tmp_path, lines), skip_invalid=True)
    assert [e.row for e in report.rejected] == [4]
    assert Bar.objects.get(timestamp=T0 + timedelta(minutes=1)).close == Decimal("18000.25")


def test_naive_times_are_stored_in_utc_from_the_given_zone(tmp_path):
    path = _write(tmp_path, ["2024-07-01 09:30:00,100,101,99,100,1", "2024-12-02 09:30:00,100,101,99,100,1"])
    _import(path, tz="America/New_York")
    assert [b[0] for b in _snapshot()] == [
        datetime(2024, 7, 1, 13, 30, tzinfo=UTC), datetime(2024, 12, 2, 14, 30, tzinfo=UTC)
    ]


def test_progress_hears_the_total_then_every_stored_row(tmp_path):
    heard = []
    lines = [_line(i) for i in range(250)]
    lines[7] = "garbage,1,1,1,1,1"
    _import(_write(tmp_path, lines), skip_invalid=True, progress=lambda n: heard.append(("rows", n)),
            progress_total=lambda n: heard.append(("total", n)))
    assert heard[0] == ("total", 249)
    assert sum(n for kind, n in heard[1:] if kind == "rows") == 249


def test_an_unknown_timeframe_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"unknown timeframe '7m'"):
        _import(tmp_path / "not-even-there.csv", timeframe="7m")


# --- instruments ------------------------------------------------------------------------------------------------


def test_an_unknown_symbol_is_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(selectors.UnknownInstrument, match="unknown instrument symbol 'YM'"):
        _import(tmp_path / "not-even-there.csv", symbol="YM")
    assert not Instrument.objects.filter(symbol="YM").exists()


def test_create_adds_the_instrument_with_neutral_defaults(tmp_path):
    report = _import(_write(tmp_path, [_line(i) for i in range(3)]), symbol="MNQ", create=True)
    instrument = Instrument.objects.get(symbol="MNQ")
    assert (instrument.tick_size, instrument.point_value, instrument.currency) == (Decimal("0.01"), Decimal("1"), "USD")
    assert report.inserted == 3 and report.symbol == "MNQ"
    assert Bar.objects.filter(instrument=instrument).count() == 3


def test_create_keeps_an_existing_instrument_as_it_is(tmp_path):
    _import(_write(tmp_path, [_line(0)]), symbol="NQ", create=True)
    nq = Instrument.objects.get(symbol="NQ")
    assert (nq.tick_size, nq.point_value) == (Decimal("0.25"), Decimal("20"))


def test_create_refuses_an_invalid_symbol(tmp_path):
    with pytest.raises(ValidationError) as caught:
        _import(_write(tmp_path, [_line(0)]), symbol="nq lower", create=True)
    assert "Use upper-case letters" in " ".join(caught.value.messages)
    assert not Instrument.objects.filter(symbol="nq lower").exists()
    assert Bar.objects.count() == 0


def test_create_with_a_refused_file_leaves_no_instrument_behind(tmp_path):
    lines = [_line(0), f"{(T0 + timedelta(minutes=1)).isoformat()},100,99,98,99,1"]
    with pytest.raises(InvalidBars):
        _import(_write(tmp_path, lines), symbol="MNQ", create=True)
    assert not Instrument.objects.filter(symbol="MNQ").exists()


# --- one closed bar from a feed ---------------------------------------------------------------------------------


def _bar(minute: int, close: float = 18_000.0, **overrides) -> BarData:
    values = dict(timestamp=T0 + timedelta(minutes=minute), open=close - 0.25, high=close + 1.0, low=close - 1.5,
                  close=close, volume=10.0 + minute)
    values.update(overrides)
    return BarData(**values)


@pytest.fixture
def nq():
    return Instrument.objects.get(symbol="NQ")


@pytest.fixture
def announced():
    bars = []

    def receiver(sender, bar, **kwargs):
        bars.append(bar)

    bar_closed.connect(receiver, weak=False)
    yield bars
    bar_closed.disconnect(receiver)


def test_a_closed_bar_is_stored_with_exact_decimal_values(nq):
    stored = services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0, close=18_000.25, volume=3.0))
    assert stored is not None and stored.pk
    fresh = Bar.objects.get(pk=stored.pk)
    assert fresh.timestamp == T0
    assert (fresh.open, fresh.high, fresh.low, fresh.close, fresh.volume) == (
        Decimal("18000"), Decimal("18001.25"), Decimal("17998.75"), Decimal("18000.25"), Decimal("3")
    )


def test_a_repeat_of_the_last_bar_with_the_same_values_is_ignored(nq):
    services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0))
    assert services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0)) is None
    assert Bar.objects.count() == 1


def test_a_repeat_with_more_decimals_than_stored_is_still_a_repeat():
    # A computed series: its instrument's tick is the stored precision, so prices are rounded to it.
    adjusted = InstrumentFactory(symbol="ADJ", tick_size=Decimal("0.000001"))
    bar = _bar(0, close=18_000.1234567, volume=1.23456)
    services.bar_store_closed(instrument=adjusted, timeframe="1m", bar=bar)
    assert Bar.objects.get().close == Decimal("18000.123457")
    assert services.bar_store_closed(instrument=adjusted, timeframe="1m", bar=bar) is None


def test_a_live_bar_off_the_tick_is_refused_and_not_stored(nq):
    with pytest.raises(InvalidBars, match=r"row 1: open 17999\.85 is not on the instrument's 0\.25 tick"):
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0, close=18_000.1))
    assert not Bar.objects.exists()


def test_an_older_bar_is_refused_as_out_of_order(nq):
    services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(5))
    with pytest.raises(services.OutOfOrderBar, match=r"NQ 1m bar at 2024-01-02T14:34:00\+00:00 is not after"):
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(4))
    assert Bar.objects.count() == 1


def test_a_different_bar_at_the_last_time_is_refused_as_out_of_order(nq):
    services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0))
    with pytest.raises(services.OutOfOrderBar):
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0, close=18_010.0))
    assert Bar.objects.get().close == Decimal("18000")


def test_a_nan_bar_is_refused_with_the_reason_and_not_stored(nq):
    with pytest.raises(InvalidBars, match=r"row 1: close is missing or NaN"):
        services.bar_store_closed(
            instrument=nq, timeframe="1m", bar=_bar(0, close=math.nan, open=1.0, high=2.0, low=0.5)
        )
    assert Bar.objects.count() == 0


def test_a_bar_breaking_the_contract_is_refused(nq):
    with pytest.raises(InvalidBars, match=r"row 1: high 17990.0 below open 17999.75"):
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0, high=17_990.0))
    assert Bar.objects.count() == 0


def test_bar_closed_fires_once_per_stored_bar_after_commit(nq, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0))
        second = services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(1))
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(1))  # a repeat: not announced again
        assert announced == []  # nothing before the commit
    assert [b.pk for b in announced] == [first.pk, second.pk]
    assert announced[0].instrument.symbol == "NQ"


def test_bar_closed_does_not_fire_for_a_rolled_back_bar(nq, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            services.bar_store_closed(instrument=nq, timeframe="1m", bar=_bar(0))
            raise RuntimeError("the caller's transaction fails after storing")
    assert announced == []
    assert Bar.objects.count() == 0


def test_a_file_import_does_not_announce_bars(tmp_path, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _import(_write(tmp_path, [_line(i) for i in range(3)]))
    assert announced == [] and callbacks == []


# --- the plausible time range ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["9999-01-01T00:00:00+00:00", "2300-01-01T00:00:00+00:00",
                                   "0001-01-01T00:00:00+00:00"])
def test_a_file_with_a_bar_dated_far_outside_the_plausible_range_stores_nothing(tmp_path, stamp):
    lines = [_line(i) for i in range(3)]
    lines[1] = stamp + lines[1][len(T0.isoformat()):]

    with pytest.raises(InvalidBars) as refused:
        _import(_write(tmp_path, lines))

    assert [e.row for e in refused.value.errors] == [2]
    assert refused.value.errors[0].reason.startswith(f"timestamp {stamp} is ")
    assert Bar.objects.count() == 0


def test_the_plausible_range_follows_the_settings(tmp_path, settings):
    settings.MINHOS_BAR_EARLIEST = "2024-01-02T14:31:00Z"
    settings.MINHOS_BAR_MAX_AHEAD_SECONDS = 3600
    soon = datetime.now(UTC) + timedelta(minutes=30)
    later = datetime.now(UTC) + timedelta(hours=2)
    lines = [_line(0), _line(1), _line(0, start=soon), _line(0, start=later)]

    with pytest.raises(InvalidBars) as refused:
        _import(_write(tmp_path, lines))

    assert [e.row for e in refused.value.errors] == [1, 4]
    assert "is before 2024-01-02T14:31:00+00:00, the earliest accepted" in refused.value.errors[0].reason
    assert "the latest accepted" in refused.value.errors[1].reason


def test_a_live_bar_from_the_future_is_refused_and_a_simulated_one_only_before_the_earliest(nq):
    ahead = _bar(0, timestamp=datetime.now(UTC) + timedelta(days=3))

    with pytest.raises(InvalidBars, match=r"row 1: timestamp .* is after .*, the latest accepted"):
        services.bar_store_closed(instrument=nq, timeframe="1m",
                                  bar=_bar(0, timestamp=datetime(9999, 1, 1, tzinfo=UTC)))
    with pytest.raises(InvalidBars, match=r"the latest accepted"):
        services.bar_store_closed(instrument=nq, timeframe="1m", bar=ahead)
    # The synthetic generator at pace 0 runs ahead of the wall clock on purpose.
    assert services.bar_store_closed(instrument=nq, timeframe="1m", bar=ahead, simulated=True) is not None
    with pytest.raises(InvalidBars, match=r"the earliest accepted"):
        services.bar_store_closed(instrument=nq, timeframe="1m", simulated=True,
                                  bar=_bar(0, timestamp=datetime(1, 1, 1, tzinfo=UTC)))
    assert Bar.objects.count() == 1


# --- prices with more decimals than stored ------------------------------------------------------------------------


def test_float_noise_in_a_reimport_changes_no_stored_bar(tmp_path):
    _import(_write(tmp_path, [f"{T0.isoformat()},16890.25,16891.5,16889.75,16890.5,7"]))

    report = _import(_write(tmp_path, [f"{T0.isoformat()},16890.250000001,16891.499999999,16889.75,16890.5000001,7"],
                            name="floats.csv"))

    assert (report.updated, report.unchanged, report.snapped, report.changed) == (0, 1, 1, [])
    assert _snapshot()[0][1:] == (Decimal("16890.25"), Decimal("16891.5"), Decimal("16889.75"), Decimal("16890.5"),
                                  Decimal("7"))
    assert "1 row(s) with prices snapped to the 0.25 tick" in str(report)


def test_a_reimport_that_changes_stored_bars_reports_each_one_with_its_old_and_new_values(tmp_path):
    _import(_write(tmp_path, [_line(i) for i in range(5)]))
    lines = [_line(i) for i in range(5)]
    lines[1] = f"{(T0 + timedelta(minutes=1)).isoformat()},17999.75,18001.5,17999.25,18000.5,101.00004"
    lines[3] = f"{(T0 + timedelta(minutes=3)).isoformat()},18000.25,18002.0,17999.75,18000.75,999"

    report = _import(_write(tmp_path, lines, name="revised.csv"))

    assert (report.updated, report.unchanged, report.rounded) == (2, 3, 1)
    assert [str(c) for c in report.changed] == [
        "2024-01-02T14:31:00+00:00: close 18000.25 -> 18000.5",
        "2024-01-02T14:33:00+00:00: volume 103 -> 999",
    ]
    assert "1 row(s) with values rounded to the stored decimals" in str(report)


def test_a_price_too_small_for_the_stored_decimals_is_refused_and_the_stored_bar_kept(tmp_path):
    _import(_write(tmp_path, [f"{T0.isoformat()},0.25,0.5,0.25,0.5,1"]), timeframe="1d")
    before = _snapshot(timeframe="1d")

    with pytest.raises(InvalidBars) as refused:
        _import(_write(tmp_path, [f"{T0.isoformat()},0.00001234,0.5,0.00001234,0.5,1"], name="tiny.csv"),
                timeframe="1d")

    assert [str(e) for e in refused.value.errors] == [
        "row 1: open 1.234e-05 is not on the instrument's 0.25 tick (the nearest are 0 and 0.25)"]
    assert _snapshot(timeframe="1d") == before


# --- prices on the instrument's tick ------------------------------------------------------------------------------


def _cent_instrument() -> Instrument:
    return InstrumentFactory(symbol="CL", tick_size=Decimal("0.01"))


def test_a_file_with_a_price_off_the_tick_is_refused_with_its_row_and_nothing_is_written(tmp_path):
    _cent_instrument()
    lines = [f"{T0.isoformat()},8800.25,8801,8799.5,8800.5,3",
             f"{(T0 + timedelta(minutes=1)).isoformat()},8800.001235,8801,8799.5,8800.5,3"]

    with pytest.raises(InvalidBars) as refused:
        _import(_write(tmp_path, lines), symbol="CL")

    assert [str(e) for e in refused.value.errors] == [
        "row 2: open 8800.001235 is not on the instrument's 0.01 tick (the nearest are 8800 and 8800.01)"]
    assert not Bar.objects.filter(instrument__symbol="CL").exists()


def test_a_vendors_floats_of_on_tick_prices_are_stored_as_the_ticks(tmp_path):
    _cent_instrument()
    report = _import(_write(tmp_path, [f"{T0.isoformat()},8800.2500000001,8801.0000000002,8799.4999999999,8800.5,3"]),
                     symbol="CL")

    assert report.snapped == 1
    assert _snapshot(symbol="CL")[0][1:5] == (Decimal("8800.25"), Decimal("8801"), Decimal("8799.5"),
                                              Decimal("8800.5"))


def test_an_instrument_the_import_creates_gets_the_tick_given_and_its_log_line_after_the_commit(
        tmp_path, caplog, django_capture_on_commit_callbacks):
    lines = [f"{T0.isoformat()},100.25,100.5,100.0,100.25,1"]
    with caplog.at_level("WARNING", logger="trading.services.market"):
        with django_capture_on_commit_callbacks(execute=True):
            _import(_write(tmp_path, lines), symbol="MES", create=True, tick_size="0.25")

    assert Instrument.objects.get(symbol="MES").tick_size == Decimal("0.25")
    assert [r.getMessage() for r in caplog.records] == [
        "created instrument MES with tick size 0.25 and a default point value; check them in the admin"]


def test_a_refused_file_leaves_no_created_instrument_and_no_log_line_saying_it_was_created(
        tmp_path, caplog, django_capture_on_commit_callbacks):
    # On the 0.01 tick the created instrument is given, 8800.001235 is off it.
    lines = [f"{T0.isoformat()},8800.001235,8801,8799.5,8800.5,3"]
    with caplog.at_level("WARNING", logger="trading.services.market"):
        with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(InvalidBars):
            _import(_write(tmp_path, lines), symbol="MCL", create=True, tick_size="0.01")

    assert not Instrument.objects.filter(symbol="MCL").exists()
    assert callbacks == []
    assert "created instrument" not in caplog.text


def test_a_tick_given_for_an_existing_instrument_that_differs_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(services.TickSizeMismatch, match="NQ exists with tick size 0.25"):
        _import(_write(tmp_path, [_line(0)]), create=True, tick_size="0.01")

    assert Instrument.objects.get(symbol="NQ").tick_size == Decimal("0.25")
    assert not Bar.objects.filter(instrument__symbol="NQ").exists()
