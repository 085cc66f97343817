"""`manage.py retrain --symbol NQ [--timeframe 1m] [--json]`: a retraining by hand, run here and now: the challenger
trained on the latest bars, scored against the champion on the same unseen bars, and the decision printed."""
import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mlcore import retraining
from mlcore.models import Retraining
from trading import selectors as trading_selectors
from trading.domain.timeframes import TIMEFRAMES


class Command(BaseCommand):
    help = ("Retrain a market now: train a challenger, score it against the active version on the same unseen bars, "
            "and decide by the market's retraining policy (printed, and kept on the monitoring page).")

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument("--json", action="store_true", help="print the decision as JSON")

    def handle(self, *args, **options):
        steps = tqdm(desc="retraining", unit="step", file=sys.stderr, disable=not sys.stderr.isatty())

        def progress(message):
            steps.set_postfix_str(message[:80])
            steps.update(1)
            if steps.disable and not options["json"]:
                self.stderr.write(message)

        try:
            record = retraining.retraining_request(symbol=options["symbol"], timeframe=options["timeframe"],
                                                   trigger="manual", requested_by=_who(), reason="manage.py retrain",
                                                   run="none")
            if record.status == Retraining.Status.QUEUED:
                try:
                    # Here and now, whatever the mode: the command prints the decision when it returns.
                    retraining.retraining_run(retraining_id=record.pk, progress=progress, distributed=False)
                except Exception:
                    pass  # recorded on the retraining (status failed, the error): reported below
        except trading_selectors.UnknownInstrument as exc:
            raise CommandError(str(exc)) from None
        finally:
            steps.close()
        record = Retraining.objects.select_related("instrument").get(pk=record.pk)
        payload = retraining.retraining_payload(record)
        if options["json"]:
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        else:
            self._report(payload)
        if record.status == Retraining.Status.FAILED:
            raise CommandError(f"retraining #{record.pk} failed: {record.error}")

    def _report(self, p: dict) -> None:
        w = self.stdout.write
        champion = f"v{p['champion']}" if p["champion"] else "none"
        challenger = f"v{p['challenger']}" if p["challenger"] else "none"
        w(f"retraining #{p['id']} of {p['symbol']} {p['timeframe']}: {p['status'].upper()} "
          f"(champion {champion}, challenger {challenger})")
        window = p["window"] or {}
        if window.get("stretch_start"):
            w(f"challenger trained on {window['train_bars']} bars {window['train_start']} .. {window['train_end']}; "
              f"both scored on {window['stretch_bars']} bars from {window['stretch_start']} (unseen by both)")
        for side, entry in p["sides"].items():
            w(f"\n{side} side ({entry['bars']} bars):")
            w(f"  {'':<12}{'log loss':>10}{'Brier':>8}{'ECE':>8}{'AUC':>8}{'accuracy':>10}")
            for role in ("champion", "challenger"):
                m = entry[role]
                if m:
                    w(f"  {role:<12}{_f(m['log_loss']):>10}{_f(m['brier']):>8}{_f(m['ece']):>8}"
                      f"{_f(m['roc_auc'], 3):>8}{_f(m['accuracy']):>10}")
            if entry["paired"]:
                t = entry["paired"]
                w(f"  paired test: {t['verdict']}"
                  + (f" (log loss {t['mean_difference']:+.4f}/bar for the challenger, 95% bounds {t['lower']:+.4f} "
                     f"to {t['upper']:+.4f}, {t['n_effective']} independent bars)"
                     if t.get("mean_difference") is not None else ""))
            w(f"  challenger against the baselines: {entry['challenger_verdict']}")
        w("")
        style = self.style.SUCCESS if p["status"] in ("promoted", "proposed") else self.style.WARNING
        w(style(f"{p['status']}: {p['reason']}"))


def _who() -> str:
    import getpass

    try:
        return f"command ({getpass.getuser()})"
    except Exception:
        return "command"


def _f(value, places=4):
    return "n/a" if value is None else f"{value:.{places}f}"
