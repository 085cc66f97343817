"""Joins the two migrations written in parallel after 0004: the settings' ranges and the accounts' settlement fault."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("trading", "0005_trading_config_ranges"), ("trading", "0005_account_settlement_fault")]
    operations = []
