"""The embedded mode's periodic jobs: every scheduled task is found even when nothing imported its module first,
and a misnamed one is said on every run instead of ending its loop silently."""
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded
BASE_DIR = Path(__file__).resolve().parents[2]


def test_a_job_whose_task_module_nothing_imported_yet_is_found(tmp_path):
    probe = (
        "import asyncio, django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'minhos_site.settings'; django.setup()\n"
        "from celery import current_app\n"
        "from minhos_site.embedded import run_periodic_jobs\n"
        "before = 'monitoring.tasks.snapshot_all' in current_app.tasks\n"
        "stop = asyncio.Event(); stop.set()\n"
        "asyncio.run(run_periodic_jobs(stop))\n"
        "print(before, 'monitoring.tasks.snapshot_all' in current_app.tasks)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["MINHOS_VAR_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", probe], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False True"


def test_a_misnamed_task_is_logged_on_every_run_and_its_loop_goes_on(settings, monkeypatch):
    from minhos_site import embedded

    errors = []
    monkeypatch.setattr(embedded.logger, "error", lambda message, *args: errors.append(message % args))
    settings.CELERY_BEAT_SCHEDULE = {"bogus": {"task": "no.such.task", "schedule": 0.001}}

    async def main():
        stop = asyncio.Event()
        # The settings' schedule only: this test has no database for the admin-edited entries.
        jobs = asyncio.create_task(embedded.run_periodic_jobs(stop, database_entries=False))
        while errors.count("periodic job bogus: there is no task named no.such.task") < 3:
            assert not jobs.done(), jobs  # before the fix, the KeyError ended the job's loop at once
            await asyncio.sleep(0.001)  # yield to the job (nothing asserts on time)
        stop.set()
        await jobs

    asyncio.run(asyncio.wait_for(main(), timeout=60))
