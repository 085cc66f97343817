"""`manage.py backtest --symbol NQ --timeframe 1m --from ISO --to ISO [--version N] [--json]`: replay stored bars
through the live per-bar workflow (trading.backtest) and print the report; `--compare-account paper` instead lists
how the paper account's live trades differ from the backtest of the same bars."""
import json
import sys
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from trading import backtest, report_text as text
from trading.domain.timeframes import TIMEFRAMES
from trading.models import BacktestRun


class Command(BaseCommand):
    help = ("Replay stored bars through the live per-bar workflow (features, the model version, Kelly, risk, the "
            "paper broker) on a backtest account of its own, and print the report.")
    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names the model version here, not Django's: the later definition wins.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument("--from", dest="start", required=True, help="first bar, ISO date or date-time (UTC)")
        parser.add_argument("--to", dest="end", required=True,
                            help="last bar, ISO date-time (UTC); a date means the whole day")
        parser.add_argument("--version", type=int, help="model version (default: the market's active one)")
        parser.add_argument("--approval", default="approve", choices=list(BacktestRun.Approval.values),
                            help="approve what risk approves (default), or record only")
        parser.add_argument("--account", help="copy this account's configuration and equity (default: paper)")
        parser.add_argument("--breaker", default="hold", choices=("hold", "daily"),
                            help="a tripped circuit breaker stays tripped to the end, as live (hold, the default), "
                                 "or is reset at the next trading day's first bar (daily, audited)")
        parser.add_argument("--engine", default=backtest.ENGINE_MEMORY, choices=list(backtest.ENGINES),
                            help="memory: the per-bar engine in memory, records written at the end (default); db: bar "
                                 "by bar through the live services (the reference, tens of bars a second)")
        parser.add_argument("--allow-lookahead", action="store_true",
                            help="run even if the version was trained on bars inside the window (flagged)")
        parser.add_argument("--compare-account",
                            help="compare this account's live trades with a backtest of the same bars")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        try:
            start = backtest.window_moment(options["start"])
            end = backtest.window_moment(options["end"], end_of_day=True)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["compare_account"]:
            from trading import backtest_compare

            if options["approval"] != "approve":
                raise CommandError("--compare-account replays with --approval approve (what risk approves)")
            options["version"] = options["version"] or backtest_compare.live_version(
                account_name=options["compare_account"], symbol=options["symbol"], timeframe=options["timeframe"],
                start=start, end=end)
        try:
            run = backtest.backtest_create(
                symbol=options["symbol"], timeframe=options["timeframe"], start=start, end=end,
                version_id=options["version"], approval=options["approval"],
                account_name=options["compare_account"] or options["account"],
                allow_lookahead=options["allow_lookahead"], via="command",
                equity_from_account=bool(options["compare_account"]), breaker=options["breaker"],
                engine=options["engine"])
        except backtest.BacktestRefused as exc:
            raise CommandError(str(exc)) from None
        bar = tqdm(total=run.bars_total, desc=f"backtest #{run.pk}", unit="bar", file=sys.stderr,
                   disable=not sys.stderr.isatty())

        def progress(done, total):
            bar.update(done - bar.n)

        try:
            run = backtest.backtest_execute(run_id=run.pk, progress=progress)
        except Exception as exc:
            raise CommandError(f"backtest #{run.pk} failed: {type(exc).__name__}: {exc}") from None
        finally:
            bar.close()
        if options["compare_account"]:
            comparison = backtest_compare.compare(run=run, account_name=options["compare_account"])
            if options["json"]:
                self.stdout.write(json.dumps(comparison, indent=2, default=str))
            else:
                backtest_compare.print_comparison(comparison, self.stdout.write)
            return
        if options["json"]:
            self.stdout.write(json.dumps({"id": run.pk, **run.report}, indent=2, default=str))
        else:
            self._summary(run)

    def _summary(self, run: BacktestRun) -> None:
        r, w = run.report, self.stdout.write
        if r.get("lookahead"):
            w(r["lookahead_warning"])
        window = r["window"]
        w(f"backtest #{run.pk}: {run.instrument.symbol} {run.timeframe} {window['from']} .. {window['to']} "
          f"({window['bars']} bars, {window['trading_days']} trading days), model v{run.model_version_id}, "
          f"approval {run.approval}")
        w(f"equity {text.money(r['starting_equity'])} -> {text.money(r['ending_equity'])}   net P&L "
          f"{text.money(r['net_pnl'])} (gross {text.money(r['gross_pnl'])}, commissions "
          f"{text.money(r['commissions'])}, slippage {text.money(r['slippage'])})   buy-and-hold 1 contract {text.money(r['buy_hold']['net_pnl'])}")
        dd = r["max_drawdown"] or {}
        w(f"trades {r['trades']} (open at the end {r['open_trades']}), hit rate {text.percent(r['hit_rate'])}, "
          f"profit factor {text.number(r['profit_factor'])}, expectancy {text.money(r['expectancy'])}, trades/day "
          f"{text.number(r['trades_per_day'])}, exposure {text.percent(r['exposure'])}")
        w(f"Sharpe {text.ratio(r, 'sharpe')}, Sortino {text.ratio(r, 'sortino')}, annualised return "
          f"{text.ratio(r, 'annualised_return')}, Calmar {text.ratio(r, 'calmar')}, max drawdown "
          f"{text.percent(dd.get('fraction'))} "
          f"({text.money(dd.get('money'))}), longest {text.duration(dd.get('longest_seconds'))}")
        w(f"recommendations: {r['recommendations']}")
        for name, block in r["risk_blocks"].items():
            w(f"  blocked by {name}: {block['count']} (e.g. {block['example']})")
        for row in r["calibration"]:
            w(f"  p {row['bucket']}: n={row['n']} predicted {row['predicted']:.3f} realised {row['realised']:.3f} "
              f"Kelly fraction {text.number(row['kelly_fraction'], 3)}")

