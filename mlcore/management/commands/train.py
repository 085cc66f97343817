"""`manage.py train --symbol NQ [--timeframe 1m] [--fast] [--until ISO]`: train, evaluate honestly, register a
version."""
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mlcore import services
from mlcore.domain.labels import LabelConfig
from mlcore.training import TrainingError
from trading import selectors as trading_selectors
from trading.backtest import window_moment
from trading.domain.timeframes import TIMEFRAMES


class Command(BaseCommand):
    help = "Train a new model version on the stored bars with walk-forward evaluation, and register it."

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument("--fast", action="store_true", help="the small preset: a usable version within a minute")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--tp-atr", type=float, default=LabelConfig.tp_atr, help="take-profit, in ATRs")
        parser.add_argument("--sl-atr", type=float, default=LabelConfig.sl_atr, help="stop-loss, in ATRs")
        parser.add_argument("--horizon", type=int, default=LabelConfig.horizon, help="label horizon, in bars")
        parser.add_argument("--until", metavar="ISO",
                            help="train on the bars up to this date or date-time only (UTC unless it names a zone; a "
                                 "date means the whole day), leaving the later ones for a backtest")
        promote = parser.add_mutually_exclusive_group()
        promote.add_argument("--promote", action="store_true", default=None,
                             help="make it active (default: only when no version is active)")
        promote.add_argument("--no-promote", dest="promote", action="store_false")

    def handle(self, *args, **options):
        try:
            label = LabelConfig(tp_atr=options["tp_atr"], sl_atr=options["sl_atr"], horizon=options["horizon"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            until = window_moment(options["until"], end_of_day=True) if options["until"] else None
        except ValueError as exc:
            raise CommandError(f"--until: {exc}") from None
        steps = tqdm(total=7, desc="training", unit="step", file=sys.stderr, disable=not sys.stderr.isatty())

        def progress(message):
            steps.set_postfix_str(message)
            steps.update(1)
            if steps.disable:
                self.stderr.write(message)

        try:
            version = services.model_version_train(
                symbol=options["symbol"], timeframe=options["timeframe"], preset="fast" if options["fast"] else "full",
                seed=options["seed"], label=label, promote=options["promote"], progress=progress, until=until,
            )
        except (TrainingError, trading_selectors.UnknownInstrument) as exc:
            raise CommandError(str(exc)) from None
        finally:
            steps.close()
        self._report(version)

    def _report(self, version):
        w = self.stdout.write
        w(f"model version {version.pk} ({version.status}) for {version.instrument} {version.timeframe}: "
          f"{version.n_bars} bars {version.data_start:%Y-%m-%d %H:%M} .. {version.data_end:%Y-%m-%d %H:%M} UTC, "
          f"{version.preset} preset, {version.train_seconds:.1f}s")
        w(f"labels: take-profit {version.label_settings['tp_atr']} ATR, stop {version.label_settings['sl_atr']} ATR, "
          f"horizon {version.label_settings['horizon']} bars, payoff ratio b = {version.payoff_ratio:.2f}")
        for side in ("long", "short"):
            report = version.metrics[side]
            w(f"\n{side} side, out of sample ({report['evaluation_bars']} bars never seen by any layer):")
            w(f"  {'':<22}{'accuracy':>9}{'log loss':>10}{'Brier':>8}{'AUC':>7}{'ECE':>7}")
            rows = [*((f"member {k}", v) for k, v in report["members"].items()),
                    ("meta-learner (raw)", report["meta_raw"]), ("meta + calibration", report["meta"]),
                    *((f"baseline {k}", v) for k, v in report["baselines"].items())]
            for name, m in rows:
                w(f"  {name:<22}{_f(m['accuracy']):>9}{_f(m['log_loss']):>10}{_f(m['brier']):>8}"
                  f"{_f(m['roc_auc'], 3):>7}{_f(m['ece']):>7}")
            c = report["calibration"]
            w(f"  calibration: {c['method']}, ECE {_f(c['ece_before'])} -> {_f(c['ece_after'])}")
        w("")
        style = self.style.SUCCESS if version.has_edge else self.style.WARNING
        w(style(version.edge_statement))


def _f(value, places=4):
    return "n/a" if value is None else f"{value:.{places}f}"
