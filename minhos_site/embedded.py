"""The embedded mode's stand-in for Celery beat: runs the beat schedule's interval jobs in-process."""
import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)


async def run_periodic_jobs(stop: asyncio.Event) -> None:
    """Run each entry of CELERY_BEAT_SCHEDULE with a numeric interval, inline, until `stop` is set."""
    # Celery finds the apps' task modules lazily: without this, a job whose module nothing had imported yet (the
    # monitoring snapshot, when no promotion ran in this process) had no task, and its loop ended at once, silently.
    current_app.loader.import_default_modules()
    jobs = [(name, entry["task"], tuple(entry.get("args", ())), dict(entry.get("kwargs", {})),
             float(entry["schedule"]))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
            if isinstance(entry["schedule"], (int, float))]
    await asyncio.gather(*(_every(name, task, args, kwargs, seconds, stop)
                           for name, task, args, kwargs, seconds in jobs))


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
