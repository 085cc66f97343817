"""`manage.py reconcile [--account NAME] [--json]`: recompute every position from its fills and report differences."""
import json as jsonlib

from django.core.management.base import BaseCommand, CommandError

from trading import services
from trading.models import Account


class Command(BaseCommand):
    help = ("Replay every fill and compare the recomputed positions and P&L with the stored ones. "
            "Exits with status 1 if anything differs.")

    def add_arguments(self, parser):
        parser.add_argument("--account", help="only this account (by name)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, account=None, json=False, **options):
        selected = None
        if account is not None:
            selected = Account.objects.filter(name=account).first()
            if selected is None:
                names = ", ".join(Account.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"Unknown account {account!r} (accounts: {names}).")
        report = services.account_reconcile(account=selected)
        if json:
            self.stdout.write(jsonlib.dumps({"positions_checked": report.positions_checked,
                                             "fills_replayed": report.fills_replayed,
                                             "differences": report.differences}))
        else:
            self.stdout.write(f"positions checked: {report.positions_checked}, fills replayed: "
                              f"{report.fills_replayed}, differences: {len(report.differences)}")
            for difference in report.differences:
                self.stdout.write("  {account} {instrument} {field}: stored {stored}, from fills {from_fills}"
                                  .format(**difference))
        if not report.clean:
            raise SystemExit(1)
