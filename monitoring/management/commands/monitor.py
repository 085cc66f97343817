"""`manage.py monitor --symbol SYM --timeframe TF [--json]`: take a monitoring snapshot now, store it and print it."""
import json as jsonlib

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from monitoring import selectors, services
from monitoring.models import MetricSnapshot


class Command(BaseCommand):
    help = ("Compute and store a monitoring snapshot of a market's active version now (health score and its "
            "components, live metrics, drift, operations, alerts) and print it.")

    def add_arguments(self, parser):
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", default="1m")
        parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

    def handle(self, *args, symbol, timeframe, json, **options):
        try:
            result = services.snapshot_for_market(symbol=symbol, timeframe=timeframe,
                                                  trigger=MetricSnapshot.Trigger.ON_DEMAND)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        snapshot = result.snapshot
        alerts = [services.alert_payload(a) for a in selectors.alert_list(unresolved=True)]
        report = {
            "symbol": symbol, "timeframe": timeframe, "snapshot": snapshot.pk, "version": snapshot.version_id,
            "taken_at": services._iso(snapshot.taken_at), "seconds": snapshot.seconds,
            "health_score": snapshot.health_score, "components": snapshot.health_components,
            "caps": snapshot.health_caps, "metrics": snapshot.metrics, "drift": snapshot.drift,
            "operations": snapshot.operations, "open_alerts": alerts,
        }
        if json:
            self.stdout.write(jsonlib.dumps(report))
            return
        self.stdout.write(f"{symbol} {timeframe} v{snapshot.version_id}: health {snapshot.health_score:.1f}/100 "
                          f"(snapshot #{snapshot.pk}, {snapshot.seconds:.3f} s)")
        for c in snapshot.health_components:
            self.stdout.write(f"  {c['name']:<12} {c['contribution']:>6.1f} / {c['weight']:<3} {c['status']:<9} "
                              f"{c['detail']}")
        for cap in snapshot.health_caps:
            self.stdout.write(f"  capped at {cap['cap']:.0f}: {cap['reason']}")
        chosen = snapshot.metrics["windows"]["count"]["chosen"]
        hit = chosen["hit_rate"]
        self.stdout.write(f"  outcomes in the count window: {chosen['n']} (verdicts from {chosen['min_count']})")
        if hit["n"]:
            self.stdout.write(f"  hit rate {hit['realised_rate']:.1%} against {hit['expected_rate']:.1%} expected")
        drift = snapshot.drift
        if drift.get("max_feature"):
            self.stdout.write(f"  drift: largest PSI {drift['max_psi']:.3f} ({drift['max_feature']})")
        for alert in alerts:
            self.stdout.write(f"  ALERT [{alert['severity']}] {alert['status']}: {alert['message']}")
