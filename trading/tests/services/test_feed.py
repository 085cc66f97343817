"""The replay feed: every source's bars stored (or looked up) and announced once, in time order, with a live status."""
import asyncio
import logging
import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from trading import selectors, services
from trading.domain.bars import BarData
from trading.domain.synthetic import session_timestamps
from trading.events import bar_closed
from trading.feeds import BarSource, runner
from trading.feeds.runner import run_feed
from trading.feeds.sources import FileBarSource, StoredBarSource, SyntheticSource
from trading.models import Bar, FeedStatus
from trading.tests.factories import BarFactory, InstrumentFactory

pytestmark = pytest.mark.embedded
# The feed stores bars from worker threads (their own connections) and announces them on commit,
# so its tests need committed data: transactional tests.
feed_db = pytest.mark.django_db(transaction=True)

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # a Tuesday, 09:30 New York: inside the Globex session
# A hang (a feed that ignores `stop`, a pace wait that is not cut short) fails the test instead of blocking the run.
GUARD_SECONDS = 10


def bar_at(minute: int, close: float = 18_000.0, **overrides) -> BarData:
    """A valid bar `minute` minutes after T0; overrides make it invalid on purpose."""
    values = dict(timestamp=T0 + timedelta(minutes=minute), open=close - 1.0, high=close + 2.0, low=close - 3.0,
                  close=close, volume=100.0 + minute)
    values.update(overrides)
    return BarData(**values)


class ListSource:
    """The smallest adapter, written only against the documented interface: bars from a list."""

    name = "list"
    already_stored = False

    def __init__(self, bars):
        self.bars = list(bars)

    def __iter__(self):
        yield from self.bars


def feed(source, *, instrument, pace_seconds: float = 0.0, **kwargs) -> int:
    return asyncio.run(run_feed(instrument=instrument, timeframe="1m", source=source, pace_seconds=pace_seconds,
                                **kwargs))


def stored_bars(instrument, timeframe: str = "1m") -> list[Bar]:
    return list(Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("timestamp"))


def values(bar) -> tuple:
    return (bar.timestamp, float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume))


@pytest.fixture
def nq(transactional_db):
    return InstrumentFactory(symbol="NQ")


@pytest.fixture
def on_bar_closed():
    """Connect receivers to `bar_closed` for one test; they are disconnected afterwards."""
    connected = []

    def connect(receiver):
        bar_closed.connect(receiver, weak=False)
        connected.append(receiver)

    yield connect
    for receiver in connected:
        bar_closed.disconnect(receiver)


@pytest.fixture
def announced(on_bar_closed) -> list[Bar]:
    """Every bar announced as closed during the test, in announcement order."""
    bars = []
    on_bar_closed(lambda sender, bar, **kwargs: bars.append(bar))
    return bars


# ----------------------------------------------------------------------------------------- bundled sources


@feed_db
def test_synthetic_feed_continues_on_the_session_grid_strictly_after_the_last_stored_bar(nq, announced):
    # The last stored bar opens at 16:58 New York, two minutes before the daily break.
    history = BarFactory.create_series(2, instrument=nq, start=datetime(2024, 1, 2, 21, 57, tzinfo=UTC))
    source = SyntheticSource.continuing(instrument=nq, timeframe="1m", seed=7, now=timezone.now())

    emitted = feed(source, instrument=nq, max_bars=5)

    new = stored_bars(nq)[len(history):]
    assert emitted == len(new) == 5
    expected = [datetime(2024, 1, 2, 21, 59, tzinfo=UTC)] + [
        datetime(2024, 1, 2, 23, minute, tzinfo=UTC) for minute in range(4)  # 18:00 New York: the next session
    ]
    assert [b.timestamp for b in new] == expected == list(session_timestamps(history[-1].timestamp, 5))
    assert new[0].open == history[-1].close
    assert [b.pk for b in announced] == [b.pk for b in new]


@feed_db
def test_stored_replay_announces_the_stored_bars_in_time_order_without_writing(nq, announced):
    bars = BarFactory.create_series(7, instrument=nq)
    es = InstrumentFactory(symbol="ES")
    BarFactory.create_series(7, instrument=es)  # another market at the same times: not part of this replay
    BarFactory.create_series(2, instrument=nq, timeframe="5m")  # another timeframe: not part of it either
    source = StoredBarSource(instrument=nq, timeframe="1m", start=bars[1].timestamp)
    source.page_size = 2  # several keyset pages, including a short last one

    emitted = feed(source, instrument=nq)

    assert emitted == 6
    assert [b.pk for b in announced] == [b.pk for b in bars[1:]]
    assert Bar.objects.count() == 7 + 7 + 2
    assert [values(b) for b in stored_bars(nq)] == [values(b) for b in bars]


@feed_db
def test_file_replay_stores_and_announces_in_time_order_when_the_file_is_unsorted(nq, announced, tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T14:32:00Z,18002.0,18004.0,18001.0,18003.0,30\n"
        "2024-01-02T14:30:00Z,18000.0,18002.0,17999.0,18001.0,10\n"
        "2024-01-02T14:31:00Z,18001.0,18003.0,18000.0,18002.0,20\n"
    )

    emitted = feed(FileBarSource(path=path), instrument=nq)

    stored = stored_bars(nq)
    assert emitted == 3
    assert [values(b) for b in stored] == [
        (T0, 18000.0, 18002.0, 17999.0, 18001.0, 10.0),
        (T0 + timedelta(minutes=1), 18001.0, 18003.0, 18000.0, 18002.0, 20.0),
        (T0 + timedelta(minutes=2), 18002.0, 18004.0, 18001.0, 18003.0, 30.0),
    ]
    assert [b.pk for b in announced] == [b.pk for b in stored]


# ------------------------------------------------------------------------------------ the bar-closed event


@feed_db
def test_bar_closed_fires_once_per_bar_in_order_with_the_stored_bar(nq, on_bar_closed):
    calls = []
    on_bar_closed(lambda sender, bar, **kwargs: calls.append((sender, bar)))
    bars = [bar_at(0), bar_at(1, close=18_010.0), bar_at(2, close=18_005.5)]

    feed(ListSource(bars), instrument=nq)

    assert [sender for sender, _ in calls] == [Bar, Bar, Bar]
    assert [bar.pk for _, bar in calls] == [b.pk for b in stored_bars(nq)]
    assert [values(bar) for _, bar in calls] == [values(b) for b in bars]
    assert all(bar.instrument == nq and bar.timeframe == "1m" for _, bar in calls)


@feed_db
def test_a_repeat_of_the_last_bar_is_stored_and_announced_once(nq, announced):
    emitted = feed(ListSource([bar_at(0), bar_at(0), bar_at(1)]), instrument=nq)

    assert emitted == 2
    assert [b.timestamp for b in announced] == [T0, T0 + timedelta(minutes=1)]
    assert len(stored_bars(nq)) == 2


# ------------------------------------------------------------------------------ the adapter interface


def test_bundled_sources_and_a_list_adapter_satisfy_the_bar_source_interface(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-02T14:30:00Z,1,2,0.5,1.5,3\n")
    synthetic = SyntheticSource(after=T0, last_close=18_000.0, tick_size=0.25, seed=1)
    stored = StoredBarSource(instrument=None, timeframe="1m")  # nothing is read until it is iterated

    for source in (ListSource([]), synthetic, stored, FileBarSource(path=path)):
        assert isinstance(source, BarSource), type(source).__name__


def test_a_class_without_the_already_stored_flag_is_not_a_bar_source():
    class Incomplete:
        name = "incomplete"

        def __iter__(self):
            return iter(())

    assert not isinstance(Incomplete(), BarSource)


@feed_db
def test_a_custom_source_written_against_the_interface_is_stored_and_announced(nq, announced):
    bars = [bar_at(minute, close=18_000.0 + minute) for minute in range(4)]

    emitted = feed(ListSource(bars), instrument=nq)

    assert emitted == 4
    assert [values(b) for b in stored_bars(nq)] == [values(b) for b in bars]
    assert [values(b) for b in announced] == [values(b) for b in bars]


@feed_db
def test_a_source_may_query_the_database_as_soon_as_it_is_iterated(nq, announced):
    history = BarFactory.create_series(3, instrument=nq)

    class EagerStoredSource:
        """Reads its bars when iteration starts (not lazily in a generator)."""

        name = "eager"
        already_stored = True

        def __iter__(self):
            rows = list(Bar.objects.filter(instrument=nq, timeframe="1m").order_by("timestamp"))
            return iter([BarData(*values(row)) for row in rows])

    emitted = feed(EagerStoredSource(), instrument=nq)

    assert emitted == 3
    assert [b.pk for b in announced] == [b.pk for b in history]


class WaitingSource(ListSource):
    """A live adapter in miniature: after the first bar it blocks until released, as if the next bar had not closed."""

    name = "waiting"

    def __init__(self, bars):
        super().__init__(bars)
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.released = None

    def __iter__(self):
        yield self.bars[0]
        self.waiting.set()
        # Without a release the wait gives up after the guard and `released` stays False.
        self.released = self.release.wait(timeout=GUARD_SECONDS)
        yield self.bars[1]


@pytest.fixture
def fast_heartbeat(monkeypatch):
    monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 0.01)


@feed_db
def test_the_heartbeat_keeps_beating_while_a_source_waits_for_its_next_bar(nq, monkeypatch, fast_heartbeat):
    source = WaitingSource([bar_at(0), bar_at(1)])
    heartbeat = services.feed_status_heartbeat

    def heartbeat_then_release(**kwargs):
        heartbeat(**kwargs)
        if source.waiting.is_set():
            source.release.set()

    monkeypatch.setattr(services, "feed_status_heartbeat", heartbeat_then_release)

    emitted = feed(source, instrument=nq)

    assert source.released is True
    assert emitted == 2


@feed_db
def test_a_failed_heartbeat_is_logged_and_the_next_one_still_comes(nq, monkeypatch, fast_heartbeat, caplog):
    source = WaitingSource([bar_at(0), bar_at(1)])
    calls = []

    def heartbeat_failing_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        if source.waiting.is_set():
            source.release.set()

    monkeypatch.setattr(services, "feed_status_heartbeat", heartbeat_failing_once)

    emitted = feed(source, instrument=nq)

    assert source.released is True
    assert emitted == 2
    failures = [r for r in caplog.records if r.name == "trading.feeds.runner" and r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "heartbeat failed" in failures[0].getMessage()
    assert str(failures[0].exc_info[1]) == "database is locked"


# --------------------------------------------------------------------------------------- bad bars


@feed_db
def test_out_of_order_and_invalid_bars_are_skipped_and_logged_and_the_rest_go_through(nq, announced, caplog):
    caplog.set_level(logging.WARNING, logger="trading.feeds.runner")
    late = bar_at(1)
    invalid = bar_at(3, high=17_990.0)  # high below open and close
    source = ListSource([bar_at(0), bar_at(2), late, invalid, bar_at(4)])

    emitted = feed(source, instrument=nq)

    assert emitted == 3
    kept = [T0, T0 + timedelta(minutes=2), T0 + timedelta(minutes=4)]
    assert [b.timestamp for b in stored_bars(nq)] == kept
    assert [b.timestamp for b in announced] == kept
    skips = [r for r in caplog.records if r.name == "trading.feeds.runner" and "skipped" in r.getMessage()]
    assert [r.levelno for r in skips] == [logging.WARNING, logging.WARNING]
    late_message, invalid_message = (r.getMessage() for r in skips)
    assert str(late.timestamp) in late_message and "not after the last stored bar" in late_message
    assert str(invalid.timestamp) in invalid_message and "high 17990.0 below open" in invalid_message


@feed_db
def test_a_bar_older_than_the_stored_history_is_skipped(nq, announced):
    history = BarFactory.create_series(3, instrument=nq)
    older = bar_at(-10)
    newer = BarData(history[-1].timestamp + timedelta(minutes=1), 18_000.0, 18_001.0, 17_999.0, 18_000.5, 5.0)

    emitted = feed(ListSource([older, newer]), instrument=nq)

    assert emitted == 1
    assert [b.timestamp for b in announced] == [newer.timestamp]
    assert not Bar.objects.filter(timestamp=older.timestamp).exists()


@feed_db
def test_a_failing_source_ends_the_feed_with_its_error_and_the_status_shows_stopped(nq):
    class BrokenSource(ListSource):
        def __iter__(self):
            yield self.bars[0]
            raise ConnectionError("vendor went away")

    with pytest.raises(ConnectionError, match="vendor went away"):
        feed(BrokenSource([bar_at(0)]), instrument=nq)

    status = FeedStatus.objects.get(instrument=nq, timeframe="1m")
    assert status.running is False
    assert status.bars_emitted == 1


@pytest.mark.parametrize("pace", [-1.0, math.nan, math.inf])
@feed_db
def test_a_pace_that_is_not_a_finite_non_negative_number_is_refused_before_starting(nq, pace):
    with pytest.raises(ValueError, match="pace"):
        feed(ListSource([bar_at(0)]), instrument=nq, pace_seconds=pace)

    assert not FeedStatus.objects.exists()
    assert not Bar.objects.exists()


# ------------------------------------------------------------------------------------- stop and pace


@feed_db
def test_setting_stop_ends_a_feed_whose_source_never_ends(nq, on_bar_closed):
    BarFactory.create_series(2, instrument=nq)
    source = SyntheticSource.continuing(instrument=nq, timeframe="1m", seed=3, now=timezone.now())

    async def scenario() -> int:
        stop, loop, seen = asyncio.Event(), asyncio.get_running_loop(), []

        def stop_after_three(sender, bar, **kwargs):
            seen.append(bar)
            if len(seen) == 3:
                loop.call_soon_threadsafe(stop.set)  # receivers run in a worker thread

        on_bar_closed(stop_after_three)
        return await asyncio.wait_for(
            run_feed(instrument=nq, timeframe="1m", source=source, pace_seconds=0, stop=stop), GUARD_SECONDS
        )

    assert asyncio.run(scenario()) == 3
    assert len(stored_bars(nq)) == 2 + 3
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").running is False


@feed_db
def test_stop_cuts_the_wait_between_bars_short(nq, on_bar_closed):
    async def scenario() -> int:
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        on_bar_closed(lambda sender, bar, **kwargs: loop.call_soon_threadsafe(stop.set))
        # One bar an hour: only `stop` can end this within the guard.
        return await asyncio.wait_for(
            run_feed(instrument=nq, timeframe="1m", source=ListSource([bar_at(0), bar_at(1)]), pace_seconds=3600,
                     stop=stop),
            GUARD_SECONDS,
        )

    assert asyncio.run(scenario()) == 1
    assert [b.timestamp for b in stored_bars(nq)] == [T0]


def _record_pace(monkeypatch, pace: float, on_wait=None) -> list[float]:
    """The pace waits, recorded instead of waited: each acts as if the full pace went by (the heartbeat's own
    waits run as usual). `on_wait` hears each one, e.g. to move a fake clock on."""
    paced = []
    real_wait_for = asyncio.wait_for

    async def wait_for(awaitable, timeout):
        if timeout != pace:  # the heartbeat's own waits
            return await real_wait_for(awaitable, timeout)
        paced.append(timeout)
        if on_wait:
            on_wait(timeout)
        awaitable.close()  # the pace wait is `stop.wait()`
        raise TimeoutError

    monkeypatch.setattr(runner.asyncio, "wait_for", wait_for)
    return paced


@feed_db
def test_the_pace_is_waited_after_every_bar_skipped_or_not_but_not_after_the_last_announced_one(nq, monkeypatch):
    pace = 7.5
    paced = _record_pace(monkeypatch, pace)
    source = ListSource([bar_at(0), bar_at(1, high=1.0), bar_at(2), bar_at(3), bar_at(4)])

    emitted = feed(source, instrument=nq, pace_seconds=pace, max_bars=3)

    assert emitted == 3
    assert paced == [pace, pace, pace]  # after bar 0, after the skipped bar 1, after bar 2; bar 3 was the last
    assert FeedStatus.objects.get(instrument=nq, timeframe="1m").pace_seconds == pace


def _skip_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "trading.feeds.runner" and r.levelno == logging.WARNING and "skipped" in r.getMessage()]


@feed_db
def test_a_source_whose_bars_are_all_refused_keeps_the_pace_and_summarises_its_warnings(nq, monkeypatch, caplog):
    # A bar stored far ahead (as a bar dated 9999 once could be): every new bar is "not after the last stored bar".
    BarFactory(instrument=nq, timeframe="1m", timestamp=datetime(9999, 1, 1, tzinfo=UTC))
    caplog.set_level(logging.WARNING, logger="trading.feeds.runner")
    pace = 1.0
    paced = _record_pace(monkeypatch, pace)

    emitted = feed(ListSource([bar_at(minute) for minute in range(200)]), instrument=nq, pace_seconds=pace)

    assert emitted == 0
    assert paced == [pace] * 200  # no busy loop: every skipped bar waits its pace like a stored one
    warnings = _skip_warnings(caplog)
    assert len(warnings) == runner.SKIP_LOG_BURST + 1
    assert all("not after the last stored bar" in w for w in warnings)
    assert warnings[0].startswith(f"NQ 1m feed: bar at {bar_at(0).timestamp} skipped: ")
    assert f"{200 - runner.SKIP_LOG_BURST} more bar(s) skipped, not logged one by one" in warnings[-1]
    assert str(bar_at(199).timestamp) in warnings[-1]
    # And once, at the start, why.
    errors = [r.getMessage() for r in caplog.records if r.name == "trading.feeds.runner" and r.levelno == logging.ERROR]
    assert errors == ["NQ 1m feed: the last stored bar is dated 9999-01-01T00:00:00+00:00, in the future: every new "
                      "bar will be skipped as not after it until that bar is deleted (admin, Bars)"]


@feed_db
def test_skip_warnings_come_a_few_per_period_and_count_every_skipped_bar(nq, monkeypatch, caplog):
    BarFactory(instrument=nq, timeframe="1m", timestamp=T0 + timedelta(days=1))
    caplog.set_level(logging.WARNING, logger="trading.feeds.runner")
    pace, now = 7.5, [0.0]
    _record_pace(monkeypatch, pace, on_wait=lambda seconds: now.__setitem__(0, now[0] + seconds))
    bars = 8 * 5  # a period (60 s) holds 8 bars at this pace: 5 periods

    feed(ListSource([bar_at(minute) for minute in range(bars)]), instrument=nq, pace_seconds=pace,
         clock=lambda: now[0])

    warnings = _skip_warnings(caplog)
    summaries = [w for w in warnings if "more bar(s) skipped" in w]
    one_by_one = [w for w in warnings if "more bar(s) skipped" not in w]
    assert len(one_by_one) == 5 * runner.SKIP_LOG_BURST
    assert [int(w.split(": ", 1)[1].split()[0]) for w in summaries] == [8 - runner.SKIP_LOG_BURST] * 5
    assert len(one_by_one) + sum(8 - runner.SKIP_LOG_BURST for _ in summaries) == bars


# --------------------------------------------------------------------------------------- feed status


@feed_db
def test_status_shows_running_during_the_run_and_stopped_with_the_counts_after(nq, on_bar_closed):
    during = []

    def look(sender, bar, **kwargs):
        status = FeedStatus.objects.get(instrument=bar.instrument, timeframe=bar.timeframe)
        during.append((status.running, selectors.feed_is_alive(status, now=timezone.now()), status.source))

    on_bar_closed(look)
    bars = [bar_at(minute) for minute in range(4)]

    feed(ListSource(bars), instrument=nq)

    assert during == [(True, True, "list")] * 4
    status = FeedStatus.objects.get(instrument=nq, timeframe="1m")
    assert status.running is False
    assert selectors.feed_is_alive(status, now=timezone.now()) is False
    assert status.bars_emitted == 4
    assert status.last_bar_timestamp == bars[-1].timestamp
    payload = selectors.feed_status_payload(symbol="NQ", timeframe="1m")
    assert (payload["running"], payload["source"], payload["bars_emitted"]) == (False, "list", 4)
    assert payload["last_bar_timestamp"] == bars[-1].timestamp.isoformat()


@feed_db
def test_a_restarted_feed_counts_its_bars_from_zero(nq):
    feed(ListSource([bar_at(0), bar_at(1)]), instrument=nq)
    feed(ListSource([bar_at(2)]), instrument=nq)

    status = FeedStatus.objects.get(instrument=nq, timeframe="1m")
    assert status.bars_emitted == 1
    assert status.last_bar_timestamp == T0 + timedelta(minutes=2)


HEARTBEAT = datetime(2024, 5, 6, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("running", "pace", "age_seconds", "alive"),
    [
        (True, 1.0, 0, True),
        (True, 1.0, 10, True),  # exactly the allowed staleness
        (True, 1.0, 10.5, False),
        (True, 60.0, 179, True),  # a slow pace allows three paces
        (True, 60.0, 181, False),
        (False, 1.0, 0, False),  # a feed that said it stopped
    ],
)
def test_feed_is_alive_only_while_running_with_a_heartbeat_within_the_allowed_staleness(
    settings, running, pace, age_seconds, alive
):
    settings.MINHOS_FEED_STALE_SECONDS = 10.0
    status = FeedStatus(timeframe="1m", source="synthetic", running=running, heartbeat_at=HEARTBEAT,
                        pace_seconds=pace)

    assert selectors.feed_is_alive(status, now=HEARTBEAT + timedelta(seconds=age_seconds)) is alive


def test_no_status_or_no_heartbeat_is_not_alive():
    never_beat = FeedStatus(timeframe="1m", source="synthetic", running=True, heartbeat_at=None)

    assert selectors.feed_is_alive(None, now=HEARTBEAT) is False
    assert selectors.feed_is_alive(never_beat, now=HEARTBEAT) is False


@feed_db
def test_a_bar_is_recorded_as_received_before_its_workflow_reads_the_data_freshness(nq, on_bar_closed):
    """The risk manager's freshness check reads when the market's last bar arrived. The feed must record the bar's
    arrival before its workflow runs (inline in embedded mode), or the check reads the previous bar's arrival: one
    whole bar old, so with 15-minute bars every recommendation was blocked as stale data (900 s > 180 s)."""
    services.feed_status_start(instrument=nq, timeframe="15m", source="test", pace_seconds=0)
    seen = []
    on_bar_closed(lambda sender, bar, **kwargs: seen.append(
        FeedStatus.objects.get(instrument=nq, timeframe="15m").last_bar_received_at))
    first = BarData(datetime(2024, 1, 2, 14, 30, tzinfo=UTC), 18000, 18001, 17999, 18000, 10)
    services.feed_publish_bar(instrument=nq, timeframe="15m", bar=first, already_stored=False, simulated=True)
    # The next bar arrives fifteen minutes later.
    FeedStatus.objects.filter(instrument=nq).update(last_bar_received_at=timezone.now() - timedelta(minutes=15))
    second = BarData(datetime(2024, 1, 2, 14, 45, tzinfo=UTC), 18000, 18001, 17999, 18000, 10)
    before = timezone.now()
    services.feed_publish_bar(instrument=nq, timeframe="15m", bar=second, already_stored=False, simulated=True)
    assert seen[0] is not None, "the first bar's workflow ran before the feed recorded any arrival"
    assert seen[1] >= before, "the second bar's workflow read the first bar's arrival"
