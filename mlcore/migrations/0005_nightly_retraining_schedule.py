"""The nightly retraining as a django-celery-beat entry (not in CELERY_BEAT_SCHEDULE, which beat rewrites from the
settings at every start): its time stays as edited in the admin. 17:10 New York, Monday to Friday: the futures' daily
break (17:00-18:00), after the day's last bar."""
from django.db import migrations

NAME = "retrain-nightly"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="10", hour="17", day_of_week="1-5", day_of_month="*",
                                                       month_of_year="*", timezone="America/New_York")
    PeriodicTask.objects.create(
        name=NAME, task="mlcore.tasks.retrain_scheduled", crontab=crontab, queue="monitoring", enabled=True,
        description="Retrain every market whose retraining policy has the schedule on; each request is recorded "
                    "(started, or skipped with its reason) on the monitoring page.")


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("mlcore", "0004_retraining"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
