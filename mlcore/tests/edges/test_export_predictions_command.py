"""`manage.py export_predictions`: one row per prediction with its outcome, oldest bar first, CSV or Parquet, read
back with pandas; refusals are clear CommandErrors that leave nothing behind."""
import os
from datetime import timedelta

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from mlcore.models import Prediction
from trading.tests.decisions import bar_at, model_version, prediction
from trading.tests.factories import SERIES_ORIGIN, InstrumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

REQUIRED = ["bar_time", "version", "side", "p_long", "p_short", "confidence", "outcome_long", "outcome_short",
            "realised_return", "return_long", "return_short", "exit_long_at", "exit_short_at", "outcome_status",
            "latency_ms"]


@pytest.fixture
def market():
    """NQ 1m, bars 0-3, predicted out of order: 2 resolved short (stop / take_profit), 0 resolved long, 1 pending,
    3 unresolvable; and an ES prediction that must not be exported."""
    nq = InstrumentFactory(symbol="NQ")
    bars = [bar_at(nq, i) for i in range(4)]
    version = model_version(nq)
    rows = {i: prediction(bars[i], version, side=side, p=0.7)
            for i, side in ((2, "short"), (0, "long"), (1, "long"), (3, "short"))}
    Prediction.objects.filter(pk=rows[0].pk).update(
        outcome_status="resolved", outcome_long="take_profit", outcome_short="stop", return_long=0.002,
        return_short=-0.0015, exit_long_at=bars[0].timestamp + timedelta(minutes=5),
        exit_short_at=bars[0].timestamp + timedelta(minutes=5), resolved_at=timezone.now())
    Prediction.objects.filter(pk=rows[2].pk).update(
        outcome_status="resolved", outcome_long="stop", outcome_short="take_profit", return_long=-0.001,
        return_short=0.0016, exit_long_at=bars[2].timestamp + timedelta(minutes=3),
        exit_short_at=bars[2].timestamp + timedelta(minutes=4), resolved_at=timezone.now())
    Prediction.objects.filter(pk=rows[3].pk).update(outcome_status="unresolvable", outcome_note="gap")
    es = InstrumentFactory(symbol="ES")
    prediction(bar_at(es, 0), model_version(es))
    return {"bars": bars, "version": version, "rows": rows}


def export(path, *extra, symbol="NQ", timeframe="1m") -> str:
    from io import StringIO

    out = StringIO()
    call_command("export_predictions", "--symbol", symbol, "--timeframe", timeframe, "--out", str(path), *extra,
                 stdout=out)
    return out.getvalue()


def check_rows(frame: pd.DataFrame, market) -> None:
    assert set(REQUIRED) <= set(frame.columns)
    assert list(frame["bar_time"]) == [bar.timestamp for bar in market["bars"]]  # oldest first, UTC
    assert list(frame["version"]) == [market["version"].pk] * 4
    assert list(frame["side"]) == ["long", "long", "short", "short"]
    assert list(frame["outcome_status"]) == ["resolved", "pending", "resolved", "unresolvable"]
    assert list(frame["outcome_long"]) == ["take_profit", "pending", "stop", "unresolvable"]
    assert list(frame["outcome_short"]) == ["stop", "pending", "take_profit", "unresolvable"]
    # The chosen side's return: long's for bar 0, short's for bar 2; empty while there is no outcome.
    assert frame["realised_return"].iloc[0] == pytest.approx(0.002)
    assert frame["realised_return"].iloc[2] == pytest.approx(0.0016)
    assert frame["realised_return"].iloc[[1, 3]].isna().all()
    assert frame["return_long"].iloc[2] == pytest.approx(-0.001)
    assert frame["exit_short_at"].iloc[2] == market["bars"][2].timestamp + timedelta(minutes=4)
    assert frame["exit_long_at"].iloc[[1, 3]].isna().all()
    assert list(frame["p_long"]) == pytest.approx([0.7, 0.7, 0.3, 0.3])
    assert list(frame["latency_ms"]) == [1.0] * 4


def test_parquet_by_extension_reads_back_in_pandas(market, tmp_path):
    path = tmp_path / "nq.parquet"

    message = export(path)

    frame = pd.read_parquet(path)
    check_rows(frame, market)
    assert str(frame["bar_time"].dt.tz) == "UTC"
    assert message.strip() == f"Wrote 4 predictions of NQ 1m to {path} (parquet)."


def test_csv_by_extension_reads_back_in_pandas(market, tmp_path):
    path = tmp_path / "nq.csv"

    export(path)

    frame = pd.read_csv(path, parse_dates=["bar_time", "exit_long_at", "exit_short_at"])
    check_rows(frame, market)
    assert path.read_text().splitlines()[1].startswith(SERIES_ORIGIN.strftime("%Y-%m-%dT%H:%M:%S"))


def test_format_option_wins_over_the_extension(market, tmp_path):
    path = tmp_path / "nq.data"

    export(path, "--format", "csv")

    check_rows(pd.read_csv(path, parse_dates=["bar_time", "exit_long_at", "exit_short_at"]), market)


def test_since_inclusive_and_until_exclusive_on_the_bar_time(market, tmp_path):
    bars = market["bars"]
    path = tmp_path / "window.parquet"

    export(path, "--since", bars[1].timestamp.isoformat(), "--until", "2024-01-02T09:33:00-05:00")

    assert list(pd.read_parquet(path)["bar_time"]) == [bars[1].timestamp, bars[2].timestamp]


def test_a_market_without_predictions_writes_the_header_only(db, tmp_path):
    InstrumentFactory(symbol="NQ")
    path = tmp_path / "empty.csv"

    assert "Wrote 0 predictions" in export(path)
    frame = pd.read_csv(path)
    assert frame.empty and set(REQUIRED) <= set(frame.columns)


def test_the_target_is_replaced_whole_and_keeps_its_mode(market, tmp_path):
    path = tmp_path / "nq.csv"
    path.write_text("old contents\n")
    path.chmod(0o640)

    export(path)

    assert "old contents" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["nq.csv"]


@pytest.mark.parametrize(("options", "message"), [
    ({"symbol": "ZZZ"}, "unknown instrument symbol 'ZZZ'"),
    ({"timeframe": "2m"}, "unknown timeframe '2m'"),
])
def test_an_unknown_market_is_a_command_error_and_writes_nothing(market, tmp_path, options, message):
    path = tmp_path / "nq.csv"

    with pytest.raises(CommandError, match=message):
        export(path, **options)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("extra", "message"), [
    (("--since", "2024-01-02T14:30:00"), "--since '2024-01-02T14:30:00' has no UTC offset"),
    (("--until", "next tuesday"), "--until 'next tuesday' is not an ISO 8601 time"),
    (("--until", "2024-02-30T00:00:00Z"), "--until '2024-02-30T00:00:00Z' is not an ISO 8601 time"),
    (("--since", "2024-01-02T15:00:00Z", "--until", "2024-01-02T14:00:00Z"), "--until must be later than --since"),
])
def test_a_bad_time_is_a_command_error_naming_the_option(market, tmp_path, extra, message):
    with pytest.raises(CommandError, match=message):
        export(tmp_path / "nq.csv", *extra)
    assert os.listdir(tmp_path) == []


def test_an_unknown_extension_without_format_is_a_command_error(market, tmp_path):
    with pytest.raises(CommandError, match=r"name it \.csv or \.parquet, or give --format"):
        export(tmp_path / "nq.xlsx")


def test_a_missing_folder_is_a_command_error(market, tmp_path):
    with pytest.raises(CommandError, match="the folder .*/missing does not exist"):
        export(tmp_path / "missing" / "nq.csv")


def test_a_folder_in_place_of_the_file_is_a_command_error(market, tmp_path):
    (tmp_path / "nq.csv").mkdir()

    with pytest.raises(CommandError, match="it is a folder"):
        export(tmp_path / "nq.csv")


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(market, tmp_path, monkeypatch):
    path = tmp_path / "nq.parquet"
    path.write_bytes(b"the previous export")

    def disk_full(self, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)

    with pytest.raises(CommandError, match="cannot write .*nq.parquet: No space left on device"):
        export(path)
    assert path.read_bytes() == b"the previous export"
    assert os.listdir(tmp_path) == ["nq.parquet"]
