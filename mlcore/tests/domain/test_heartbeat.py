"""The rule that takes a training's process for dead: a running part silent past the timeout; the reason given."""
from datetime import UTC, datetime, timedelta

from mlcore.domain.heartbeat import Part, silent_part, stopped_reason

NOW = datetime(2026, 12, 7, 14, 0, 0, tzinfo=UTC)


def part(name: str, *, silent_for: float, ended: bool = False, progress: str = "fitting long/shipped/lstm") -> Part:
    beat = NOW - timedelta(seconds=silent_for)
    return Part(part=name, worker="training@host", pid=4242, beat_at=beat, ended_at=beat if ended else None,
                progress=progress)


def test_a_part_that_beat_within_the_timeout_is_alive():
    assert silent_part([part("run", silent_for=179)], now=NOW, timeout_seconds=180) is None


def test_a_running_part_silent_past_the_timeout_is_taken_for_dead():
    dead = part("fit long/shipped/lstm", silent_for=181)
    assert silent_part([part("fit short/shipped/xgboost", silent_for=2), dead], now=NOW, timeout_seconds=180) == dead


def test_an_ended_part_is_never_silent_however_old():
    assert silent_part([part("run", silent_for=86_400, ended=True)], now=NOW, timeout_seconds=180) is None


def test_no_part_running_is_not_a_dead_worker():
    """Member fits waiting in the queue have no process to lose: the queue's own checks see a missing worker."""
    assert silent_part([], now=NOW, timeout_seconds=180) is None


def test_of_two_silent_parts_the_longest_silent_is_named():
    first, later = part("fit a", silent_for=600), part("fit b", silent_for=300)
    assert silent_part([later, first], now=NOW, timeout_seconds=180) == first


def test_the_reason_says_when_it_stopped_in_utc_where_and_the_last_progress():
    beat = datetime(2026, 12, 7, 9, 1, 2, tzinfo=UTC).astimezone()  # a local time: the reason still says UTC
    reason = stopped_reason(Part(part="fit long/shipped/lstm", worker="training@box", pid=77, beat_at=beat,
                                 ended_at=None, progress="fitting long/shipped/lstm (plan ab12)"),
                            now=beat + timedelta(seconds=200))
    assert reason == ("training worker stopped answering at 09:01:02 UTC (fit long/shipped/lstm on training@box, "
                      "pid 77; no heartbeat for 200 s: killed or hung); last progress: fitting long/shipped/lstm "
                      "(plan ab12); nothing was registered or promoted")
