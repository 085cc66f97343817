"""`manage.py models list|promote|rollback`: the model registry from the command line."""
import getpass

from django.core.management.base import BaseCommand, CommandError

from mlcore import registry
from mlcore.models import ModelVersion
from trading import selectors


class Command(BaseCommand):
    help = "List model versions, promote one, or roll back to the previously active one."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="versions, newest first")
        listing.add_argument("--symbol")
        listing.add_argument("--timeframe")
        promote = sub.add_parser("promote", help="make VERSION the active one of its market")
        promote.add_argument("version", type=int)
        rollback = sub.add_parser("rollback", help="re-activate the version that was active before")
        rollback.add_argument("--symbol", required=True)
        rollback.add_argument("--timeframe", default="1m")

    def handle(self, *args, action, **options):
        try:
            if action == "list":
                self._list(options)
            elif action == "promote":
                version = registry.model_version_promote(version_id=options["version"], via=_via())
                self.stdout.write(f"v{version.pk} is now active for {version.instrument} {version.timeframe}")
            else:
                instrument = selectors.instrument_get(symbol=options["symbol"])
                version = registry.model_version_rollback(instrument=instrument, timeframe=options["timeframe"],
                                                          via=_via())
                self.stdout.write(f"rolled back: v{version.pk} is active again for {instrument} {version.timeframe}")
        except ModelVersion.DoesNotExist:
            raise CommandError(f"no model version {options.get('version')}") from None
        except (registry.RegistryError, selectors.UnknownInstrument) as exc:
            raise CommandError(str(exc)) from None

    def _list(self, options):
        versions = ModelVersion.objects.select_related("instrument").order_by("-created_at")
        if options.get("symbol"):
            versions = versions.filter(instrument__symbol=options["symbol"])
        if options.get("timeframe"):
            versions = versions.filter(timeframe=options["timeframe"])
        self.stdout.write(f"{'id':>5} {'market':<10} {'status':<10} {'preset':<6} {'bars':>8} {'edge':<5} "
                          f"{'meta logloss':>12} {'AUC':>6}  created")
        for v in versions:
            meta = (v.metrics.get("long", {}).get("meta") or {})
            self.stdout.write(
                f"{v.pk:>5} {v.instrument.symbol + ' ' + v.timeframe:<10} {v.status:<10} {v.preset:<6} "
                f"{v.n_bars:>8} {'yes' if v.has_edge else 'no':<5} {_f(meta.get('log_loss')):>12} "
                f"{_f(meta.get('roc_auc'), 3):>6}  {v.created_at:%Y-%m-%d %H:%M}"
            )


def _via() -> str:
    # The command has no Django user; the audit trail records which login on the machine ran it.
    try:
        return f"command (OS user {getpass.getuser()})"
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "command"


def _f(value, places=4):
    # A metric that was NaN is stored as null (JSON has no NaN), and a version may have no report at all.
    return "n/a" if value is None else f"{value:.{places}f}"
