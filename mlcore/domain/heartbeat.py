"""When a training's process is taken for dead: the rule over its parts' heartbeats, and the reason given."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Part:
    """One process's part of a training (the run, a member fit, the assembly) as its heartbeat last said."""

    part: str
    worker: str
    pid: int | None
    beat_at: datetime
    ended_at: datetime | None
    progress: str


def silent_part(parts: Iterable[Part], *, now: datetime, timeout_seconds: float) -> Part | None:
    """The running part (not ended) whose last beat is older than the timeout, the longest silent first; None when
    every running part beats (or none runs: a training waiting in the queue has no process to lose)."""
    cutoff = now - timedelta(seconds=timeout_seconds)
    silent = [p for p in parts if p.ended_at is None and p.beat_at < cutoff]
    return min(silent, key=lambda p: p.beat_at) if silent else None


def stopped_reason(part: Part, *, now: datetime,
                   aftermath: str = "nothing was registered or promoted") -> str:
    """What the operator reads on the failed retraining (or training run) and in its alert."""
    where = f"{part.part} on {part.worker or 'an unknown worker'}" + (f", pid {part.pid}" if part.pid else "")
    silence = (now - part.beat_at).total_seconds()
    stopped = part.beat_at.astimezone(UTC)
    return (f"training worker stopped answering at {stopped:%H:%M:%S} UTC ({where}; no heartbeat for {silence:.0f} s: "
            f"killed or hung); last progress: {part.progress or 'none reported'}; {aftermath}")
