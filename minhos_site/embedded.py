"""The embedded mode's stand-in for Celery beat: runs the beat schedule's interval jobs in-process, and the
database's schedule entries (django-celery-beat's, editable in the admin, such as the nightly retraining) when due."""
import asyncio
import contextlib
import json
import logging
from datetime import datetime

from channels.db import database_sync_to_async
from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)


async def run_periodic_jobs(stop: asyncio.Event, *, database_entries: bool = True) -> None:
    """Run each entry of CELERY_BEAT_SCHEDULE with a numeric interval, inline, until `stop` is set; and, unless
    `database_entries` is false, the database's schedule entries when due."""
    # Celery finds the apps' task modules lazily: without this, a job whose module nothing had imported yet (the
    # monitoring snapshot, when no promotion ran in this process) had no task, and its loop ended at once, silently.
    current_app.loader.import_default_modules()
    jobs = [(name, entry["task"], tuple(entry.get("args", ())), dict(entry.get("kwargs", {})),
             float(entry["schedule"]))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
            if isinstance(entry["schedule"], (int, float))]
    await asyncio.gather(*(_every(name, task, args, kwargs, seconds, stop)
                           for name, task, args, kwargs, seconds in jobs),
                         *([_database_entries(stop)] if database_entries else []))


DATABASE_POLL_SECONDS = 30.0


async def _database_entries(stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await database_sync_to_async(database_entries_run_due)()
        except Exception:
            logger.exception("the database's schedule entries could not be run")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=DATABASE_POLL_SECONDS)


def database_entries_run_due(now: datetime | None = None) -> list[str]:
    """Run, inline, each enabled django-celery-beat entry that is due (as beat would), and return their names.

    Entries of CELERY_BEAT_SCHEDULE are left to `_every`. An entry never run starts its clock now, as beat does (a
    nightly job is not run at once on the first start). Its last run is stamped before it runs, so a failing job is
    logged once per due time, not once per poll.
    """
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    now = now or timezone.now()
    current_app.loader.import_default_modules()
    ran = []
    for entry in PeriodicTask.objects.filter(enabled=True).exclude(name__in=list(settings.CELERY_BEAT_SCHEDULE)):
        if entry.last_run_at is None:
            PeriodicTask.objects.filter(pk=entry.pk).update(last_run_at=now)
            continue
        if entry.one_off and entry.total_run_count:
            continue
        due, _ = entry.schedule.is_due(entry.last_run_at)
        if not due:
            continue
        PeriodicTask.objects.filter(pk=entry.pk).update(last_run_at=now, total_run_count=entry.total_run_count + 1)
        try:
            task = current_app.tasks[entry.task]
        except KeyError:
            logger.error("schedule entry %s: there is no task named %s", entry.name, entry.task)
            continue
        try:
            task.apply(args=json.loads(entry.args or "[]"), kwargs=json.loads(entry.kwargs or "{}"), throw=True)
        except Exception:
            logger.exception("schedule entry %s failed", entry.name)
        ran.append(entry.name)
    return ran


async def _every(name: str, task_name: str, args: tuple, kwargs: dict, seconds: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            task = current_app.tasks[task_name]
        except KeyError:  # a misnamed task in the schedule: said on every run, never a silent gap
            logger.error("periodic job %s: there is no task named %s", name, task_name)
        else:
            try:
                await database_sync_to_async(task.apply)(args=args, kwargs=kwargs, throw=True)
            except Exception:  # one failing run must not end the schedule; it is logged with its traceback
                logger.exception("periodic job %s failed", name)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
