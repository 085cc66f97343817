"""An account remembers why its last per-bar settlement failed (new entries are blocked until one succeeds)."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("trading", "0004")]
    operations = [
        migrations.AddField(
            model_name="account", name="settlement_fault",
            field=models.TextField(blank=True, help_text=(
                "Why settling the last bar (fills, brackets, marks) failed; while set, no new entries. "
                "Cleared when a later bar settles."))),
        migrations.AddField(model_name="account", name="settlement_fault_at",
                            field=models.DateTimeField(blank=True, null=True)),
    ]
