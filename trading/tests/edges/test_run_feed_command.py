"""`manage.py run_feed`: runs a feed from the command line and refuses bad input with a message saying what is wrong."""
import os
import subprocess
from datetime import UTC, datetime, timedelta
from io import StringIO

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from trading.domain.synthetic import (
    DEMO_SIGNAL,
    SyntheticParams,
    generate_bars,
    session_timestamps,
    session_timestamps_between,
)
from trading.models import Bar, FeedStatus
from trading.tests.factories import BarFactory, InstrumentFactory

# The feed stores bars from worker threads with their own connections: only committed data is visible there.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
HEADER = "timestamp,open,high,low,close,volume\n"


@pytest.fixture
def nq():
    return InstrumentFactory(symbol="NQ")


def run(*args) -> str:
    out = StringIO()
    call_command("run_feed", *args, stdout=out)
    return out.getvalue()


def test_synthetic_feed_with_max_bars_stores_that_many_new_bars_and_prints_the_count(nq):
    history = BarFactory.create_series(3, instrument=nq)

    output = run("--pace", "0", "--max-bars", "5")

    new = Bar.objects.filter(instrument=nq, timeframe="1m", timestamp__gt=history[-1].timestamp)
    assert new.count() == 5
    assert Bar.objects.count() == 3 + 5
    assert "feed NQ 1m from synthetic" in output
    assert "feed stopped after 5 bars" in output
    status = FeedStatus.objects.get(instrument=nq, timeframe="1m")
    assert (status.running, status.bars_emitted, status.source) == (False, 5, "synthetic")


def test_stored_replay_from_a_time_announces_the_bars_from_then_on(nq):
    bars = BarFactory.create_series(5, instrument=nq)

    output = run("--source", "stored", "--from", bars[2].timestamp.isoformat().replace("+00:00", "Z"), "--pace", "0")

    assert "feed stopped after 3 bars" in output
    assert Bar.objects.count() == 5
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").last_bar_timestamp == bars[-1].timestamp


def test_file_replay_stores_the_file_in_time_order(nq, tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + "2024-01-02T14:31:00Z,2,3,1,2.5,7\n2024-01-02T14:30:00Z,1,2,0.5,1.5,3\n")

    output = run("--source", "file", "--file", str(path), "--pace", "0")

    assert "feed stopped after 2 bars" in output
    assert list(Bar.objects.filter(instrument=nq).order_by("timestamp").values_list("timestamp", flat=True)) == [
        T0, T0 + timedelta(minutes=1)
    ]


def test_an_unknown_symbol_is_refused_with_its_name(nq):
    with pytest.raises(CommandError, match="unknown instrument symbol 'ZZZ'"):
        run("--symbol", "ZZZ", "--pace", "0", "--max-bars", "1")


def test_the_file_source_without_a_file_is_refused(nq):
    with pytest.raises(CommandError, match="--source file needs --file"):
        run("--source", "file", "--pace", "0")


def test_a_file_with_an_invalid_row_is_refused_naming_the_row_and_nothing_runs(nq, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "2024-01-02T14:30:00Z,1,2,0.5,1.5,3\n2024-01-02T14:31:00Z,5,4,3,4.5,3\n")

    with pytest.raises(CommandError, match=r"row 2: high 4\.0 below open 5\.0"):
        run("--source", "file", "--file", str(path), "--pace", "0")

    assert not Bar.objects.exists()
    assert not FeedStatus.objects.exists()


def test_a_missing_file_is_refused_naming_it(nq, tmp_path):
    with pytest.raises(CommandError, match="nowhere.csv: no such file"):
        run("--source", "file", "--file", str(tmp_path / "nowhere.csv"), "--pace", "0")


@pytest.mark.parametrize("pace", ["-1", "nan", "inf"])
def test_a_pace_that_is_not_a_finite_non_negative_number_is_refused(nq, pace):
    with pytest.raises(CommandError, match="--pace must be a finite number of seconds >= 0"):
        run("--pace", pace, "--max-bars", "1")

    assert not FeedStatus.objects.exists()


def test_a_start_time_with_a_control_character_is_refused(nq):
    # Python's ISO parser reads "...T14:30:00\x00Z" as a time.
    with pytest.raises(CommandError, match=r"--from: not an ISO 8601 time: Control character U\+0000"):
        run("--source", "stored", "--from", "2024-01-02T14:30:00\x00Z", "--pace", "0")


def test_a_start_time_without_a_utc_offset_is_refused(nq):
    with pytest.raises(CommandError, match="--from: give a UTC offset or Z"):
        run("--source", "stored", "--from", "2024-01-02T14:30:00", "--pace", "0")


def test_a_start_time_that_is_not_iso_8601_is_refused(nq):
    with pytest.raises(CommandError, match="--from: not an ISO 8601 time: 'yesterday'"):
        run("--source", "stored", "--from", "yesterday", "--pace", "0")


def test_the_demo_signal_feed_continues_the_planted_history_exactly(nq):
    end = datetime(2024, 3, 6, tzinfo=UTC)
    call_command("generate_bars", "--symbol", "NQ", "--days", "1", "--seed", "7", "--end", "2024-03-06T00:00:00Z",
                 "--demo-signal", stdout=StringIO())
    history = session_timestamps_between(end - timedelta(days=1), end)

    run("--pace", "0", "--max-bars", "40", "--seed", "7", "--demo-signal")

    # History and feed together are the series generated in one go: the pattern (and the signal in force at
    # the cut) carries over into the live bars.
    stamps = history.append(session_timestamps(history[-1], 40))
    expected = generate_bars(stamps, seed=7, start_price=18_000.0, tick_size=float(nq.tick_size),
                             params=SyntheticParams(**DEMO_SIGNAL))
    stored = list(Bar.objects.filter(instrument=nq, timeframe="1m").order_by("timestamp"))
    assert [b.timestamp for b in stored] == list(expected["timestamp"].dt.to_pydatetime())
    for column in ("open", "high", "low", "close", "volume"):
        assert [float(getattr(b, column)) for b in stored] == expected[column].tolist(), column


def test_demo_signal_is_off_by_default_for_run_feed(nq):
    from trading.management.commands.run_feed import Command

    assert Command().create_parser("manage.py", "run_feed").parse_args([]).demo_signal is False


def test_a_volatility_shock_after_n_bars_continues_the_history_then_moves_four_times_as_much(nq):
    end = datetime(2024, 3, 6, tzinfo=UTC)
    call_command("generate_bars", "--symbol", "NQ", "--days", "1", "--seed", "7", "--end", "2024-03-06T00:00:00Z",
                 "--demo-signal", stdout=StringIO())
    history = session_timestamps_between(end - timedelta(days=1), end)

    output = run("--pace", "0", "--max-bars", "60", "--seed", "7", "--demo-signal", "--regime", "volatility-shock",
                 "--regime-after", "20")

    assert "market regime: volatility shock (4x the usual volatility) after 20 bars" in output
    assert "feed stopped after 60 bars" in output
    # The bars the normal market would have brought: the history generated longer in one go.
    stamps = history.append(session_timestamps(history[-1], 60))
    normal = generate_bars(stamps, seed=7, start_price=18_000.0, tick_size=float(nq.tick_size),
                           params=SyntheticParams(**DEMO_SIGNAL)).iloc[len(history):]
    fed = list(Bar.objects.filter(instrument=nq, timeframe="1m", timestamp__gt=history[-1]).order_by("timestamp"))
    assert [b.timestamp for b in fed] == list(normal["timestamp"].dt.to_pydatetime())
    closes = np.array([float(b.close) for b in fed])
    assert closes[:20].tolist() == normal["close"].tolist()[:20]  # unchanged before the shock
    moved, usual = np.diff(np.log(closes))[20:], np.diff(np.log(normal["close"].to_numpy()))[20:]
    assert np.std(moved) / np.std(usual) == pytest.approx(4.0, rel=0.05)


def test_run_feed_takes_a_regime_and_normal_is_the_default(nq):
    from trading.management.commands.run_feed import Command

    parser = Command().create_parser("manage.py", "run_feed")
    assert (parser.parse_args([]).regime, parser.parse_args([]).regime_after) == ("normal", 0)
    assert parser.parse_args(["--regime", "trend"]).regime == "trend"

    output = run("--pace", "0", "--max-bars", "3", "--regime", "trend")

    assert "market regime: persistent trend (+0.3 sigma a bar) from the first bar" in output
    assert Bar.objects.filter(instrument=nq).count() == 3


def test_an_unknown_regime_is_refused_naming_the_choices(nq):
    with pytest.raises(CommandError, match=r"argument --regime: invalid choice: 'crash' \(choose from "
                                           r"'?normal'?, '?volatility-shock'?, '?trend'?\)"):
        run("--pace", "0", "--max-bars", "1", "--regime", "crash")

    assert not Bar.objects.exists()


def test_a_negative_regime_start_is_refused(nq):
    with pytest.raises(CommandError, match="argument --regime-after: must be a whole number of bars >= 0, got '-1'"):
        run("--pace", "0", "--max-bars", "1", "--regime", "trend", "--regime-after", "-1")

    assert not FeedStatus.objects.exists()


def test_a_regime_is_refused_for_a_feed_that_does_not_generate_its_bars(nq):
    BarFactory.create_series(3, instrument=nq)

    with pytest.raises(CommandError, match="--regime and --regime-after apply to --source synthetic only "
                                           r"\(this feed's source is stored\)"):
        run("--source", "stored", "--pace", "0", "--regime", "volatility-shock")


@pytest.mark.parametrize("env, regime, after", [
    ({}, "normal", 0),
    ({"FEED_REGIME": "volatility-shock"}, "volatility-shock", 0),
    ({"FEED_REGIME": "trend", "FEED_REGIME_AFTER": "150"}, "trend", 150),
])
def test_the_procfile_feed_takes_its_regime_from_feed_regime_and_is_normal_without_it(env, regime, after):
    from trading.management.commands.run_feed import Command

    line = next(line for line in (settings.BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("feed:"))
    command = line.split(":", 1)[1].strip()
    prefix = ".venv/bin/python manage.py run_feed "
    assert command.startswith(prefix)
    # The words the shell (honcho runs each line with sh -c) hands to run_feed.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    words = subprocess.run(["sh", "-c", f'set -- {command[len(prefix):]}; printf "%s\\n" "$@"'],
                           env={**clean, **env}, capture_output=True, text=True, check=True).stdout.splitlines()
    options = Command().create_parser("manage.py", "run_feed").parse_args(words)
    assert (options.regime, options.regime_after, options.source) == (regime, after, "synthetic")
