"""Run a market-data feed as its own process (deployment mode): store, announce, keep pace."""
import asyncio
import signal

from django.core.management.base import BaseCommand

from trading.feeds.runner import run_feed

from ._feed_args import add_feed_arguments, build_source


class Command(BaseCommand):
    help = "Stream bars from a source as if live, announcing each closed bar (Ctrl-C stops it cleanly)."

    def add_arguments(self, parser):
        add_feed_arguments(parser)

    def handle(self, *args, **options):
        instrument, source = build_source(options)
        self.stdout.write(f"feed {instrument} {options['timeframe']} from {source.name}, one bar every "
                          f"{options['pace']}s")
        shift = getattr(source, "shift", None)
        if shift is not None and shift.active:
            self.stdout.write(self.style.WARNING(f"market regime: {shift.describe()} (a market the model's "
                                                 "training history never showed)"))
        emitted = asyncio.run(self._run(instrument, source, options))
        self.stdout.write(f"feed stopped after {emitted} bars")

    async def _run(self, instrument, source, options):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_feed(instrument=instrument, timeframe=options["timeframe"], source=source,
                              pace_seconds=options["pace"], max_bars=options["max_bars"], stop=stop)
