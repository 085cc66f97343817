"""The Celery app and its beat schedule; tasks live in the apps."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minhos_site.settings")

app = Celery("minhos")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _redrive_stalled_bars(sender, **kwargs):
    """A worker that starts (again) re-drives at once every bar whose workflow stalled, e.g. while it was down."""
    sender.app.send_task("trading.tasks.workflow_sweep", kwargs={"idle_seconds": 0}, queue="trading")
