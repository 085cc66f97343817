"""Seed the rules added to monitoring.defaults.RULES since 0002 ("training_failed"); existing rows are left as the user
edited them."""
from django.db import migrations

from monitoring.defaults import RULES


def seed(apps, schema_editor):
    AlertRule = apps.get_model("monitoring", "AlertRule")
    for code, (name, severity, threshold, description) in RULES.items():
        AlertRule.objects.get_or_create(code=code, defaults={
            "name": name, "severity": severity, "threshold": threshold, "description": description})


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0003_retraining_moves_to_mlcore")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
