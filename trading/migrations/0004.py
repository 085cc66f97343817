"""The default paper account, its NQ settings (the issue's defaults) and the global kill switch (released)."""
from django.db import migrations


def seed(apps, schema_editor):
    Account = apps.get_model("trading", "Account")
    Instrument = apps.get_model("trading", "Instrument")
    TradingConfig = apps.get_model("trading", "TradingConfig")
    KillSwitch = apps.get_model("trading", "KillSwitch")
    account, _ = Account.objects.get_or_create(name="paper")
    for instrument in Instrument.objects.filter(symbol="NQ"):
        TradingConfig.objects.get_or_create(account=account, instrument=instrument)
    KillSwitch.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("trading", "0003_decisions_and_execution")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
