"""Celery beat's scheduler: django-celery-beat's database scheduler, with three changes. Sends that fail because the
broker is away are told in a few lines (one when it starts, a count every so often, one when it ends) instead of a
chained traceback per send; likewise a database outage (django-celery-beat logged a traceback per tick, several a
second, and its forced re-read of the schedule every 5 minutes ended beat when it fell in an outage: the schedule in
memory is kept instead); and the jobs named in MINHOS_BEAT_RUNS_HERE run in beat itself instead of being sent."""
from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, InterfaceError, close_old_connections, transaction
from django_celery_beat.schedulers import DatabaseScheduler
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from minhos_site.database_outage import is_database_unreachable

logger = logging.getLogger("celery.beat")
DATABASE_WHAT = "Reading and writing the schedule in the database"

# What says "the broker is away" rather than "this entry is broken" (celery wraps it in a SchedulingError).
BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, socket.timeout,
                 TimeoutError)


def _root_cause(exc: BaseException) -> BaseException:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen[-1]


def is_broker_error(exc: BaseException) -> bool:
    chain, current = [], exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return any(isinstance(e, BROKER_ERRORS) for e in chain)


@dataclass
class _Streak:
    started: float
    failed: int = 1
    since_line: int = 0  # failures since the last line logged
    line_at: float = 0.0


class FailureStreaks:
    """Repeated failures of one kind (key) told in bounded lines: the first failure, then at most one summary every
    `summary_seconds` with the count, then one line when a success ends the streak. The clock is passed in."""

    def __init__(self, log: logging.Logger, *, summary_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.summary_seconds = summary_seconds
        self.clock = clock
        self.streaks: dict[str, _Streak] = {}

    def failed(self, key: str, what: str, exc: BaseException, *, traceback: bool = False) -> None:
        now = self.clock()
        streak = self.streaks.get(key)
        cause = _root_cause(exc)
        reason = f"{type(cause).__name__}: {cause}"
        if streak is None:
            self.streaks[key] = _Streak(started=now, line_at=now)
            self.log.error("%s failed: %s. Until it works again one line every %.0f s counts the failures.", what,
                           reason, self.summary_seconds, exc_info=exc if traceback else None)
            return
        streak.failed += 1
        streak.since_line += 1
        if now - streak.line_at >= self.summary_seconds:
            self.log.error("%s still failing after %.0f s: %d failed in all, %d since the last line (%s)", what,
                           now - streak.started, streak.failed, streak.since_line, reason)
            streak.since_line, streak.line_at = 0, now

    def succeeded(self, key: str, what: str) -> None:
        streak = self.streaks.pop(key, None)
        if streak is not None:
            self.log.warning("%s works again after %.0f s (%d failed meanwhile)", what,
                             self.clock() - streak.started, streak.failed)


class Scheduler(DatabaseScheduler):
    """The database scheduler (entries editable in the admin) with quiet outages and in-process jobs."""

    database_back_at: float | None = None
    broker_back_at: float | None = None

    def __init__(self, *args, **kwargs):
        self.failures = FailureStreaks(logger, summary_seconds=float(
            getattr(settings, "MINHOS_BEAT_FAILURE_SUMMARY_SECONDS", 30.0)))
        super().__init__(*args, **kwargs)

    # ---- the database: read each tick for changes, every 5 minutes in full, written every few minutes ----------

    def schedule_changed(self):
        """django-celery-beat's check for edited entries (one query), with a database outage told by a streak."""
        try:
            close_old_connections()
            with contextlib.suppress(transaction.TransactionManagementError):
                transaction.commit()  # as the library does: see other transactions' edits (MySQL's repeatable read)
            last, ts = self._last_timestamp, self.Changes.last_change()
        except (DatabaseError, InterfaceError) as exc:
            self.failures.failed("database", DATABASE_WHAT, exc)
            return False
        if "database" in self.failures.streaks:  # the outage ends now
            self.database_back_at = time.monotonic()
        self.failures.succeeded("database", DATABASE_WHAT)
        try:
            return bool(ts and ts > (last or ts))
        finally:
            self._last_timestamp = ts

    @property
    def schedule(self):
        """The entries, re-read when they changed and every 5 minutes; while the database cannot be read the schedule
        in memory goes on (raising here would end beat)."""
        try:
            return super().schedule
        except (DatabaseError, InterfaceError) as exc:
            current = getattr(self, "_schedule", None)
            if current is None:  # never read (beat starting): nothing to go on with
                raise
            self.failures.failed("database", DATABASE_WHAT, exc)
            return current

    def sync(self):
        """Writes the entries' last run times (django-celery-beat's sync), a database outage told by the streak; the
        entries not written are tried again at the next sync."""
        tried = set()
        try:
            close_old_connections()
            for name in list(self._dirty):
                entry = self._schedule.get(name)
                if entry is not None:
                    with contextlib.suppress(TypeError, ObjectDoesNotExist):
                        entry.save()
                tried.add(name)
        except (DatabaseError, InterfaceError) as exc:
            self.failures.failed("database", DATABASE_WHAT, exc)
        self._dirty -= tried

    # ---- the broker ------------------------------------------------------------------------------------------------

    def apply_entry(self, entry, producer=None):
        if entry.task in getattr(settings, "MINHOS_BEAT_RUNS_HERE", ()):
            return self._run_here(entry)
        broker_away = "broker" in self.failures.streaks
        if not broker_away:
            logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            if is_broker_error(exc):
                self.failures.failed("broker", "Sending scheduled tasks to the broker", exc)
            else:  # this entry is broken (not the broker): its own streak, with the traceback once
                self.failures.failed(f"entry:{entry.name}", f"Sending scheduled task {entry.name}", exc,
                                     traceback=True)
        else:
            if broker_away:  # the outage ends now
                self.broker_back_at = time.monotonic()
            self.failures.succeeded("broker", "Sending scheduled tasks to the broker")
            self.failures.succeeded(f"entry:{entry.name}", f"Sending scheduled task {entry.name}")

    def _run_here(self, entry) -> None:
        """A job that watches the workers cannot be sent to them: when the one it should report is dead, it would
        wait in that worker's queue. It runs here, between two sends (a few queries)."""
        key, what = f"job:{entry.name}", f"Job {entry.name} (run in beat)"
        # The workers could not write their heartbeats while the database was away, and a worker catching up on the
        # bars held meanwhile takes its heartbeat task late: the check would read the outage as dead workers (a false
        # critical alert and its webhook). They get the time they get at a start, the stale limit, to beat again.
        # Likewise the broker: while beat cannot send, no heartbeat reaches a worker, and their ages say nothing of
        # the workers (Redis down is reported by /healthz, /readyz and the log lines above).
        grace = float(getattr(settings, "MINHOS_WORKER_STALE_SECONDS", 30.0))
        if "broker" in self.failures.streaks:
            return
        for back_at in (self.database_back_at, self.broker_back_at):
            if back_at is not None and time.monotonic() - back_at < grace:
                return
        close_old_connections()  # one left broken by a database restart is replaced, as a worker's would be
        try:
            self.app.tasks[entry.task](*(entry.args or ()), **(entry.kwargs or {}))
        except Exception as exc:
            self.failures.failed(key, what, exc, traceback=not (is_broker_error(exc) or is_database_unreachable(exc)))
        else:
            self.failures.succeeded(key, what)
