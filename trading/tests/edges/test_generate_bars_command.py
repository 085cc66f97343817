"""`manage.py generate_bars`: stores exactly what the pure generator makes, idempotently."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from trading.domain.synthetic import DEMO_SIGNAL, SyntheticParams, generate_bars, session_timestamps_between
from trading.models import Bar, Instrument
from trading.tests.factories import BarFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

END = datetime(2024, 3, 6, tzinfo=UTC)
ARGS = ("--symbol", "NQ", "--days", "2", "--seed", "7", "--end", "2024-03-06T00:00:00Z")


def _run(*args) -> str:
    out = StringIO()
    call_command("generate_bars", *args, stdout=out)
    return out.getvalue()


def _stored(symbol="NQ", timeframe="1m"):
    return list(Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe).order_by("timestamp"))


def test_stores_the_bars_the_generator_makes_for_the_same_inputs():
    output = _run(*ARGS)
    expected = generate_bars(
        session_timestamps_between(END - timedelta(days=2), END), seed=7, start_price=18_000.0, tick_size=0.25
    )
    bars = _stored()
    assert len(bars) == len(expected) > 2_000
    assert f"{len(expected)} inserted" in output
    assert [b.timestamp for b in bars] == list(expected["timestamp"].dt.to_pydatetime())
    for column in ("open", "high", "low", "close", "volume"):
        stored = np.array([float(getattr(b, column)) for b in bars])
        assert (stored == expected[column].to_numpy()).all(), column


def test_running_it_again_changes_nothing():
    _run(*ARGS)
    before = [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in _stored()]
    output = _run(*ARGS)
    assert f"0 inserted, 0 updated, {len(before)} unchanged" in output
    assert [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in _stored()] == before


def test_continues_from_the_last_stored_close_before_the_range():
    BarFactory(instrument=Instrument.objects.get(symbol="NQ"), timeframe="1m",
               timestamp=END - timedelta(days=3), open=Decimal("17500"), high=Decimal("17510"),
               low=Decimal("17490"), close=Decimal("17505.25"))
    _run(*ARGS)
    first = _stored()[1]
    assert first.timestamp >= END - timedelta(days=2)
    assert float(first.open) == 17_505.25


def test_other_timeframes_and_start_price():
    _run("--symbol", "NQ", "--days", "7", "--seed", "1", "--end", "2024-03-06T00:00:00Z",
         "--timeframe", "1h", "--start-price", "15000")
    bars = _stored(timeframe="1h")
    assert len(bars) == 5 * 23  # five sessions a week, 23 hourly bars each
    assert float(bars[0].open) == 15_000.0


def test_unknown_symbol_is_an_error_naming_it():
    with pytest.raises(CommandError, match="NOPE"):
        _run("--symbol", "NOPE", "--days", "2", "--seed", "7")


def test_an_end_with_a_control_character_is_an_error():
    # Python's ISO parser reads "...T00:00:00\x00Z" as a time.
    with pytest.raises(CommandError, match=r"Control character U\+0000"):
        _run("--symbol", "NQ", "--days", "1", "--seed", "7", "--end", "2024-03-06T00:00:00\x00Z")
    assert not _stored()


def test_negative_seed_is_an_error():
    with pytest.raises(CommandError, match="seed"):
        _run("--symbol", "NQ", "--days", "2", "--seed", "-1")


def test_demo_signal_stores_the_planted_series_and_says_so():
    output = _run(*ARGS, "--demo-signal")
    expected = generate_bars(
        session_timestamps_between(END - timedelta(days=2), END), seed=7, start_price=18_000.0, tick_size=0.25,
        params=SyntheticParams(**DEMO_SIGNAL),
    )
    stored = np.array([float(b.close) for b in _stored()])
    assert (stored == expected["close"].to_numpy()).all()
    assert "planted pattern" in output
    plain = generate_bars(session_timestamps_between(END - timedelta(days=2), END), seed=7, start_price=18_000.0,
                          tick_size=0.25)
    assert not (stored == plain["close"].to_numpy()).all()
