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
}


class Command(BaseCommand):
    help = "Run a benchmark on this machine and the configured database; --json prints one JSON object."

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(BENCHMARKS))
        parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
        parser.add_argument("--rows", type=int, help="ingest: number of bars (default 1,000,000)")
        parser.add_argument("--bars", type=int, help="train / inference: bars to train on (100,000 / 20,000)")
        parser.add_argument("--fast", action="store_true", help="train / inference: the fast preset")
        parser.add_argument("--predictions", type=int, help="sizing: predictions sized through the service (300)")

    def handle(self, *args, name, json: bool = False, rows=None, **options):
        module_name, function_name = BENCHMARKS[name].split(":")
        bench = getattr(importlib.import_module(module_name), function_name)
        kwargs = {"rows": rows} if rows else {}
        if options.get("bars"):
            kwargs["bars"] = options["bars"]
        if options.get("predictions"):
            kwargs["predictions"] = options["predictions"]
        if options.get("fast"):
            kwargs["preset"] = "fast"
        result = bench(**kwargs)
        if json:
            self.stdout.write(jsonlib.dumps(result))
        else:
            for key, value in result.items():
                self.stdout.write(f"{key:>22}: {value}")
