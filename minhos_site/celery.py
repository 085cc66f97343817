"""The Celery app and its beat schedule; tasks live in the apps."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minhos_site.settings")

app = Celery("minhos")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
