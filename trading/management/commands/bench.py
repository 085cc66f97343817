"""`manage.py bench NAME [--json]`: run one benchmark and print its measured figures."""
import importlib
import json as jsonlib

from django.core.management.base import BaseCommand

# name -> "module:function".
BENCHMARKS = {
    "ingest": "trading.benchmarks:bench_ingest",
    "inference": "mlcore.benchmarks:bench_inference",
    "train": "mlcore.benchmarks:bench_train",
    "sizing": "trading.benchmarks:bench_sizing",
    "e2e": "trading.bench_e2e:bench_e2e",
    "monitor": "monitoring.benchmarks:bench_monitor",
    "backtest": "trading.benchmarks:bench_backtest",
    "backtest-live": "trading.benchmarks:bench_backtest_live",
    "statements": "trading.bench_statements:bench_statements",
    "web-soak": "trading.bench_web_soak:bench_web_soak",
}
# e2e's own options, passed on when given.
E2E_OPTIONS = ("clients", "pace", "warmup", "redis_db", "flush", "concurrency", "pool", "preset", "keep")
WEB_SOAK_OPTIONS = ("minutes", "pace", "redis_db", "flush", "keep")


def _count(text: str) -> int:
    from django.core.management.base import CommandError

    try:
        return int(text)
    except ValueError:
        raise CommandError(f"--clients must be a whole number of websocket clients for web-soak, not {text!r}") \
            from None


class Command(BaseCommand):
    help = "Run a benchmark on this machine and the configured database; --json prints one JSON object."

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(BENCHMARKS))
        parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
        parser.add_argument("--rows", type=int, help="ingest: number of bars (default 1,000,000)")
        parser.add_argument("--bars", type=int, help="train / inference: bars to train on (100,000 / 20,000); "
                                                     "e2e: bars streamed per run (200); backtest: bars replayed "
                                                     "(100,000); backtest-live: bars of each backtest (2,000)")
        parser.add_argument("--history", type=int, help="backtest: bars the model is trained on first (20,000); "
                                                        "backtest-live: the same (3,000)")
        parser.add_argument("--db-bars", type=int, help="backtest: the window's first bars the database replay runs "
                                                        "(2,000; it runs tens of bars a second)")
        parser.add_argument("--backtests", type=int, help="backtest-live: memory backtests run at once beside the "
                                                          "live feed (5)")
        parser.add_argument("--fast", action="store_true", help="train / inference: the fast preset")
        parser.add_argument("--workers", help="train: training worker counts of the distributed runs, comma-separated "
                                              "(1,2; 0 for none); they need REDIS_URL and DATABASE_URL")
        parser.add_argument("--predictions", type=int, help="sizing: predictions sized through the service (300); "
                                                             "monitor: resolved predictions in the snapshot (100,000)")
        parser.add_argument("--clients", help="e2e: websocket clients of each run, comma-separated (1,100); "
                                               "web-soak: websocket clients (50)")
        parser.add_argument("--pace", type=float, help="e2e: seconds between bars (0.3); backtest-live: between live "
                                                       "bars (0.05)")
        parser.add_argument("--warmup", type=int, help="e2e: bars streamed first and not measured (10)")
        parser.add_argument("--redis-db", type=int,
                            help="e2e: its own Redis logical database, refused unless empty (14)")
        parser.add_argument("--flush", action="store_true", default=None,
                            help="e2e: empty that Redis database first if it is not")
        parser.add_argument("--concurrency", help="e2e: worker processes of the trading and inference queues (1,1)")
        parser.add_argument("--pool", choices=("prefork", "threads", "solo"), help="e2e: the workers' pool (prefork)")
        parser.add_argument("--preset", choices=("fast", "full"), help="e2e: the model trained for it (fast)")
        parser.add_argument("--keep", action="store_true", default=None,
                            help="e2e, web-soak: keep its database and logs afterwards")
        parser.add_argument("--minutes", type=float, help="web-soak: how long the clients watch and poll (10)")

    def handle(self, *args, name, json: bool = False, rows=None, **options):
        module_name, function_name = BENCHMARKS[name].split(":")
        bench = getattr(importlib.import_module(module_name), function_name)
        kwargs = {"rows": rows} if rows else {}
        if options.get("bars"):
            kwargs["bars"] = options["bars"]
        if options.get("history"):
            kwargs["history"] = options["history"]
        if options.get("db_bars"):
            kwargs["db_bars"] = options["db_bars"]
        if options.get("backtests"):
            kwargs["backtests"] = options["backtests"]
        if name == "backtest-live" and options.get("pace") is not None:
            kwargs["pace"] = options["pace"]
        if options.get("predictions"):
            kwargs["predictions"] = options["predictions"]
        if options.get("fast"):
            kwargs["preset"] = "fast"
        if name == "train" and options.get("workers") is not None:
            kwargs["workers"] = tuple(int(n) for n in options["workers"].split(",") if int(n) > 0)
        if name == "e2e":
            kwargs.update({key: options[key] for key in E2E_OPTIONS if options.get(key) is not None})
        if name == "web-soak":
            kwargs.update({key: options[key] for key in WEB_SOAK_OPTIONS if options.get(key) is not None})
            if options.get("clients") is not None:
                kwargs["clients"] = _count(options["clients"])
        result = bench(**kwargs)
        if json:
            self.stdout.write(jsonlib.dumps(result))
        else:
            for key, value in result.items():
                self.stdout.write(f"{key:>22}: {value}")
