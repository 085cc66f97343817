"""Monitoring's records: metric snapshots (with the health score and its parts), alert rules and alerts, webhook
deliveries, and the audit of retrainings monitoring queued."""
from django.conf import settings
from django.db import models
from django.db.models import Q


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class MetricSnapshot(models.Model):
    """Everything monitoring knew about one market's active version at one moment."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        ON_DEMAND = "on_demand"
        PROMOTION = "promotion"

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="metric_snapshots")
    timeframe = models.CharField(max_length=4)
    version = models.ForeignKey("mlcore.ModelVersion", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="metric_snapshots")
    taken_at = models.DateTimeField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.SCHEDULE)
    health_score = models.FloatField(null=True, blank=True)
    # [{name, weight, score (0..1), contribution (points), status, detail}], in the formula's order.
    health_components = models.JSONField(default=list)
    health_caps = models.JSONField(default=list)  # caps that applied: [{reason, cap}]
    metrics = models.JSONField(default=dict)  # live model metrics per window (see monitoring.domain.metrics)
    drift = models.JSONField(default=dict)
    operations = models.JSONField(default=dict)  # latency, rate, freshness, workers, queues
    seconds = models.FloatField(default=0)  # how long the snapshot took to compute

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["instrument", "timeframe", "-taken_at"], name="snapshot_market_time")]

    def __str__(self):
        return f"{self.instrument_id} {self.timeframe} v{self.version_id} {self.taken_at:%Y-%m-%d %H:%M:%S} " \
               f"health {self.health_score}"


class AlertRule(models.Model):
    """One cause of alerts and its threshold, editable in the admin. The codes are fixed (monitoring evaluates
    each one); what a user changes is the threshold, the severity, whether it is on, and the retraining hook."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    threshold = models.FloatField(help_text="What the rule compares against; its description says the unit.")
    enabled = models.BooleanField(default=True)
    queue_retraining = models.BooleanField(
        default=False, help_text="Start a retraining of the market when this alert opens (recorded on the monitoring "
                                 "page; at most one in flight per market, and one per cooldown of the market's "
                                 "retraining policy).")

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"  # a person has seen it; it stays until its cause clears
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="alerts")
    # The de-duplication key: one alert not yet resolved per cause (rule + market, or rule + queue).
    cause = models.CharField(max_length=200)
    instrument = models.ForeignKey("trading.Instrument", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="alerts")
    timeframe = models.CharField(max_length=4, blank=True)
    version = models.ForeignKey("mlcore.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="alerts")
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    message = models.TextField()
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    times_seen = models.PositiveIntegerField(default=1)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledgement_note = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["cause"], condition=~Q(status="resolved"), name="one_unresolved_alert_per_cause"),
        ]
        indexes = [models.Index(fields=["status", "-opened_at"], name="alert_status_time")]
        permissions = [("acknowledge_alert", "Can acknowledge alerts")]

    def __str__(self):
        return f"[{self.severity}] {self.cause}: {self.status}"


class WebhookDelivery(models.Model):
    """One alert notice (opened or resolved) posted to the configured webhook: attempts and the last error kept."""

    class Event(models.TextChoices):
        OPENED = "opened"
        RESOLVED = "resolved"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # gave up after the last retry

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=8, choices=Event.choices)
    url = models.URLField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response_status = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "event"], name="one_delivery_per_alert_event")]
