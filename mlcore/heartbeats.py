"""Heartbeats of the processes that train a retraining or a training run: while a part runs (the run, a member fit,
the assembly), a thread of its process writes the time and the latest progress every
MINHOS_TRAINING_HEARTBEAT_SECONDS, so a killed worker shows as silence within minutes (the watchdogs are `mlcore.retraining.retrainings_silent_fail` and
`mlcore.services.training_runs_silent_fail`)."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from minhos_site.database_outage import is_database_unreachable

from .models import Retraining, RetrainingHeartbeat, TrainingRun

logger = logging.getLogger(__name__)
PROGRESS_CHARS = 300


def _worker_name() -> str:
    try:
        from celery import current_task

        name = current_task.request.hostname if current_task else None
    except Exception:  # no Celery context: a command, a thread of the web process
        name = None
    return name or socket.gethostname()


@dataclass(frozen=True)
class _Owner:
    """Whose part beats: a retraining's or a training run's (the same rows, the same thread, the same watchdog rule)."""

    model: type
    key: str  # the heartbeat row's foreign key to it
    working: str  # its status while its parts may run
    name: str  # in the log: "retraining", "training run"


RETRAINING = _Owner(Retraining, "retraining_id", Retraining.Status.TRAINING, "retraining")
TRAINING_RUN = _Owner(TrainingRun, "training_run_id", TrainingRun.Status.RUNNING, "training run")


class Heartbeat:
    """This process's part of one retraining or training run; `progress(message)` records what it is doing now (and
    beats)."""

    def __init__(self, owner_id: int, part: str, *, interval: float, owner: _Owner = RETRAINING):
        self.owner = owner
        self.owner_id = owner_id
        self.part = part[:100]
        self.interval = interval
        self._progress = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_ended = False
        self._outage_told = False  # an unreachable database said once per outage

    def _rows(self):
        return RetrainingHeartbeat.objects.filter(**{self.owner.key: self.owner_id}, part=self.part)

    def _owner_rows(self):
        return self.owner.model.objects.filter(pk=self.owner_id, status=self.owner.working)

    def _write(self, progress: str | None = None) -> None:
        if progress is not None:
            self._progress = progress[:PROGRESS_CHARS]
        now = timezone.now()
        self._rows().update(beat_at=now, progress=self._progress)
        # Only one still working shows it: once failed (e.g. silent too long), its page keeps the beat it was failed
        # on, and this part's own row says the process was alive after all.
        if not self._owner_rows().update(heartbeat_at=now, progress=self._progress) and not self._told_ended:
            self._told_ended = True
            logger.warning("%s #%s ended while this process still works on its %s: what it makes is not used",
                           self.owner.name, self.owner_id, self.part)

    def progress(self, message: str) -> None:
        try:
            self._write(message)
        except Exception as exc:  # a heartbeat never fails the training it reports on
            self._failed(exc, "the heartbeat of")

    def _failed(self, exc: Exception, what: str) -> None:
        """A write that failed: with its traceback, unless the database cannot be reached, which is the outage's
        and is said once per outage (a beat every few seconds would repeat it)."""
        if not is_database_unreachable(exc):
            self._outage_told = False
            logger.exception("%s #%s: %s %s could not be written", self.owner.name, self.owner_id, what, self.part)
        elif not self._outage_told:
            self._outage_told = True
            logger.warning("%s #%s: %s %s could not be written, the database cannot be reached (%s); the work goes "
                           "on", self.owner.name, self.owner_id, what, self.part, exc)

    def start(self, progress: str) -> None:
        now = timezone.now()
        self._progress = progress[:PROGRESS_CHARS]
        RetrainingHeartbeat.objects.update_or_create(
            **{self.owner.key: self.owner_id}, part=self.part,
            defaults={"worker": _worker_name()[:200], "pid": os.getpid(), "started_at": now, "beat_at": now,
                      "ended_at": None, "progress": self._progress})
        self._owner_rows().update(heartbeat_at=now, progress=self._progress)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.owner_id}-{self.part}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._write()
                    self._outage_told = False
                except Exception as exc:
                    self._failed(exc, "the heartbeat of")
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._rows().update(ended_at=timezone.now(), progress=self._progress)
        except Exception as exc:
            self._failed(exc, "the end of")


@contextlib.contextmanager
def _heartbeat(owner: _Owner, owner_id: int, part: str, progress: str) -> Iterator[Heartbeat]:
    beat = Heartbeat(owner_id, part, interval=settings.MINHOS_TRAINING_HEARTBEAT_SECONDS, owner=owner)
    beat.start(progress)
    try:
        yield beat
    finally:
        beat.stop()


def retraining_heartbeat(*, retraining_id: int, part: str, progress: str = "started"):
    """While the block runs, `part` of the retraining beats from a background thread of this process; the part is
    marked ended when the block ends, however it ends (an error is the caller's to record). A process killed inside
    the block leaves the part running and silent: that is what the watchdog looks for."""
    return _heartbeat(RETRAINING, retraining_id, part, progress)


def training_run_heartbeat(*, run_id: int, part: str, progress: str = "started"):
    """As `retraining_heartbeat`, for a training run (`manage.py train`, the `train_version` tasks): its watchdog is
    `mlcore.services.training_runs_silent_fail`."""
    return _heartbeat(TRAINING_RUN, run_id, part, progress)


def retraining_where(record: Retraining) -> str:
    """Why a retraining is not started or trained again, for the log of a redelivered task."""
    if record.status not in (Retraining.Status.QUEUED, Retraining.Status.TRAINING):
        return f"it is {record.status}" + (f" (challenger v{record.challenger_id})" if record.challenger_id else "")
    if record.trained_at is not None:
        return f"its challenger was trained at {record.trained_at:%H:%M:%S} UTC and is being scored"
    if record.plan_key:
        return f"its member fits were dispatched (plan {record.plan_key})"
    beat = f", last heartbeat {record.heartbeat_at:%H:%M:%S} UTC" if record.heartbeat_at else ""
    return f"another process trains it{beat}"


def retraining_still_training(retraining_id: int) -> str:
    """"" while the retraining's training may go on; otherwise why a part of it (a member fit delivered again,
    say) should not run."""
    record = Retraining.objects.filter(pk=retraining_id).first()
    if record is None:
        return "it no longer exists"
    if record.status != Retraining.Status.TRAINING:
        return retraining_where(record)
    if record.trained_at is not None:
        return retraining_where(record)
    return ""


def training_run_where(run: TrainingRun) -> str:
    """Why a training run is not taken up or trained again (a task delivered again), for the log."""
    if run.status == TrainingRun.Status.SUCCEEDED:
        return f"it succeeded (v{run.version_id})"
    if run.status == TrainingRun.Status.FAILED:
        return f"it failed: {run.error[:300]}"
    if run.status == TrainingRun.Status.RUNNING and run.version_id:
        return f"its version v{run.version_id} is registered"
    if run.status == TrainingRun.Status.RUNNING:
        beat = (f", last heartbeat {run.heartbeat_at:%H:%M:%S} UTC: {run.progress}" if run.heartbeat_at else "")
        return f"another process trains it{beat}"
    return f"it is {run.status}"


def training_run_still_running(run_id: int) -> str:
    """"" while the training run's training may go on; otherwise why a part of it (a member fit delivered again, an
    assembly) should not run."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        return "it no longer exists"
    if run.status != TrainingRun.Status.RUNNING or run.version_id:
        return training_run_where(run)
    return ""
