"""Bring MinhOS up in one process: migrate, seed a demo login and history, then serve web + feed + periodic jobs."""
import asyncio
import contextlib
import logging
import socket

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from minhos_site.embedded import run_periodic_jobs
from trading import selectors, services
from trading.domain.synthetic import DEMO_HISTORY_DAYS
from trading.feeds.runner import run_feed

from ._feed_args import add_feed_arguments, build_source

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run MinhOS in one process (the embedded mode): web server, replay feed and periodic jobs. "
        "Deployments run these as separate processes instead (see the Procfile). "
        "The demo market is synthetic and, unless --no-demo-signal, carries a planted learnable pattern "
        "(volume spikes whose direction drifts the following bars) so that the model finds a real edge and "
        "confident recommendations come up for approval; the pattern is made up and says nothing about real markets."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-feed", action="store_true", help="serve without the replay feed")
        parser.add_argument("--history-days", type=int, default=DEMO_HISTORY_DAYS,
                            help="synthetic history generated on first start when the market has no bars "
                                 f"(default {DEMO_HISTORY_DAYS} days: what the first --fast model needs to find "
                                 "the demo's planted edge reliably)")
        parser.add_argument("--no-train", action="store_true",
                            help="do not train a --fast model version on start when none is active")
        # Five seconds a bar: a recommendation lives two bars, so a person has ~10 s to read it and decide.
        add_feed_arguments(parser, default_pace=5.0, demo_signal=True)

    def handle(self, *args, **options):
        _check_port_free(options["host"], options["port"])
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_demo_user()
        self._ensure_history(options)
        if not options["no_train"]:
            self._ensure_model(options)
        instrument, source = (None, None) if options["no_feed"] else build_source(options)
        if source is not None and options["source"] == "synthetic":
            self._describe_market(options, source)
        url = f"http://{options['host']}:{options['port']}/"
        mode = "embedded (SQLite, in-process jobs)" if settings.EMBEDDED else "all-in-one on the configured database"
        self.stdout.write(self.style.SUCCESS(f"MinhOS is up at {url}  [{mode}]  Ctrl-C stops it."), ending="\n")
        self.stdout.flush()
        asyncio.run(self._serve(options, instrument, source))

    def _describe_market(self, options, source):
        if options["demo_signal"]:
            how = ("continuing the stored series exactly" if getattr(source, "continues_exactly", False)
                   else "from the last stored close")
            self.stdout.write(self.style.WARNING(
                f"Demo market: synthetic bars with a PLANTED pattern ({how}). On about "
                f"{source.params.signal_rate:.0%} of bars a volume spike's direction drifts the next "
                f"{source.params.signal_persist} bars the same way, so the model has a real, made-up edge to find "
                "and recommendations clear the confidence threshold. Real markets have no such pattern; "
                "--no-demo-signal gives a signal-free market."))
        else:
            self.stdout.write("Demo market: synthetic bars without a planted pattern (a random process: expect the "
                              "model to find no edge and the risk manager to block its recommendations).")
        if source.shift.active:
            self.stdout.write(self.style.WARNING(f"Market regime: {source.shift.describe()}: a market the model's "
                                                 "training history never showed (--regime)."))

    def _ensure_demo_user(self):
        user, password = services.demo_user_ensure()
        if password:
            self.stdout.write(
                self.style.WARNING(
                    f"Demo login created (shown once): username {user.username}  password {password}\n"
                    f"Change it with: .venv/bin/python manage.py changepassword {user.username}"
                )
            )
        else:
            self.stdout.write(f"Log in as {user.username} (its password was printed on the first start; "
                              f"reset it with: .venv/bin/python manage.py changepassword {user.username})")

    def _ensure_history(self, options):
        if options["no_feed"] or options["source"] != "synthetic" or options["history_days"] <= 0:
            return
        try:
            instrument = selectors.instrument_get(symbol=options["symbol"])
        except selectors.UnknownInstrument as exc:
            raise CommandError(str(exc)) from None
        if selectors.bar_latest(instrument=instrument, timeframe=options["timeframe"]) is None:
            self.stdout.write(f"No {instrument} {options['timeframe']} bars yet: generating "
                              f"{options['history_days']} days of synthetic history...")
            call_command("generate_bars", "--symbol", instrument.symbol, "--timeframe", options["timeframe"],
                         "--days", str(options["history_days"]), "--seed", str(options["seed"]),
                         *(["--demo-signal"] if options["demo_signal"] else []), stdout=self.stdout)

    def _ensure_model(self, options):
        """Train a --fast version on first start so the dashboard shows live predictions right away."""
        from mlcore import selectors as ml_selectors
        from mlcore import services as ml_services
        from mlcore.training import TrainingError

        instrument = selectors.instrument_get(symbol=options["symbol"])
        if ml_selectors.model_version_active(instrument=instrument, timeframe=options["timeframe"]) is not None:
            return
        self.stdout.write(f"No active model for {instrument} {options['timeframe']}: training a --fast version "
                          "(about a minute; later: .venv/bin/python manage.py train --symbol NQ)...")
        self.stdout.flush()
        try:
            version = ml_services.model_version_train(symbol=instrument.symbol, timeframe=options["timeframe"],
                                                      preset="fast", seed=options["seed"], promote=True)
        except TrainingError as exc:
            self.stdout.write(self.style.WARNING(f"Could not train a model ({exc}); serving without predictions."))
            return
        self.stdout.write(f"Model version {version.pk} is active. {version.edge_statement}")

    async def _serve(self, options, instrument, source):
        server = uvicorn.Server(server_config(host=options["host"], port=options["port"]))
        stop = asyncio.Event()
        background = [asyncio.create_task(run_periodic_jobs(stop), name="periodic-jobs")]
        if source is not None:
            background.append(
                asyncio.create_task(
                    run_feed(instrument=instrument, timeframe=options["timeframe"], source=source,
                             pace_seconds=options["pace"], max_bars=options["max_bars"], stop=stop),
                    name="feed",
                )
            )
        try:
            await server.serve()  # returns on Ctrl-C / SIGTERM (uvicorn installs the handlers)
        finally:
            stop.set()
            for task in background:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            logger.info("MinhOS stopped")


def server_config(*, host: str, port: int) -> uvicorn.Config:
    """The web server; X-Forwarded-For / -Proto are honoured only from MINHOS_TRUSTED_PROXIES (none by default:
    uvicorn's own default trusts 127.0.0.1, so any local process could choose the audited client address)."""
    trusted = settings.MINHOS_TRUSTED_PROXIES
    return uvicorn.Config("minhos_site.asgi:application", host=host, port=port, log_level="warning", lifespan="off",
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted,
                          ws_per_message_deflate=False)  # small JSON messages: compression costs more than it saves


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}); is MinhOS already running? "
                               f"Pick another port with --port.") from None
