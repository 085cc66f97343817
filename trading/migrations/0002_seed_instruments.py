"""Seed NQ, the first instrument: E-mini Nasdaq-100, tick 0.25, $20 per point."""
from decimal import Decimal

from django.db import migrations

SEED = [
    {
        "symbol": "NQ",
        "name": "E-mini Nasdaq-100 Futures",
        "exchange": "CME",
        "tick_size": Decimal("0.25"),
        "point_value": Decimal("20"),
        "currency": "USD",
    },
]


def seed(apps, schema_editor):
    Instrument = apps.get_model("trading", "Instrument")
    for row in SEED:
        Instrument.objects.get_or_create(symbol=row["symbol"], defaults=row)


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
