"""The model registry (versions, artifacts, training runs) and persisted predictions."""
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.PROTECT, related_name="model_versions")
    timeframe = models.CharField(max_length=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    preset = models.CharField(max_length=10)
    seed = models.IntegerField()
    data_start = models.DateTimeField()
    data_end = models.DateTimeField()
    n_bars = models.IntegerField()
    feature_names = models.JSONField()
    feature_window = models.IntegerField()
    sequence_length = models.IntegerField()
    hyperparameters = models.JSONField()
    label_settings = models.JSONField()
    # b in Kelly's f* = p - (1 - p) / b: the same take-profit / stop-loss ratio the labels were made with.
    payoff_ratio = models.FloatField()
    metrics = models.JSONField(default=dict)
    # 0-100, written by monitoring's snapshots (see monitoring.domain.health); None until it has scored this version,
    # and sizing then reads the provisional score of the out-of-sample verdict alone (trading never sizes an
    # unscored "No edge" version as if it were healthy).
    health_score = models.FloatField(null=True, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    # One line saying why the score is what it is (the weakest components), shown on recommendation cards.
    health_reason = models.CharField(max_length=300, blank=True)
    # Reference distributions of the training window for drift (mlcore.domain.drift.reference_bins): per feature
    # and for the out-of-sample calibrated probabilities, bin edges and proportions.
    drift_reference = models.JSONField(default=dict, blank=True)
    has_edge = models.BooleanField(default=False)
    edge_statement = models.TextField(blank=True)
    # {relative path: sha256}; files live in default_storage under `artifact_root`.
    artifacts = models.JSONField(default=dict)
    artifact_root = models.CharField(max_length=255, blank=True)
    train_seconds = models.FloatField(default=0)
    member_seconds = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "timeframe"], condition=Q(status="active"), name="one_active_version_per_market"
            )
        ]
        ordering = ["-created_at"]
        permissions = [("promote_modelversion", "Can promote and roll back model versions")]

    def __str__(self):
        return f"{self.instrument.symbol} {self.timeframe} v{self.pk} ({self.status})"


class TrainingRun(models.Model):
    """One training attempt; at most one runs per market, so a second `train` is refused with a clear error."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="training_runs")
    timeframe = models.CharField(max_length=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    preset = models.CharField(max_length=10)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "timeframe"], condition=Q(status="running"), name="one_training_run_per_market"
            )
        ]
        ordering = ["-started_at"]


class Prediction(models.Model):
    class OutcomeStatus(models.TextChoices):
        PENDING = "pending"  # its horizon has not passed yet
        RESOLVED = "resolved"
        UNRESOLVABLE = "unresolvable"  # the rule cannot say (no ATR, or a gap in the bars before any barrier)

    class Outcome(models.TextChoices):
        TAKE_PROFIT = "take_profit"
        STOP = "stop"
        TIMEOUT = "timeout"

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="predictions")
    bar = models.ForeignKey("trading.Bar", on_delete=models.CASCADE, related_name="predictions")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    created_at = models.DateTimeField(auto_now_add=True)
    # Calibrated probabilities that each side's take-profit comes before its stop within the horizon.
    p_long = models.FloatField()
    p_short = models.FloatField()
    side = models.CharField(max_length=5, choices=[("long", "long"), ("short", "short")])
    confidence = models.FloatField()
    agreement = models.FloatField()
    members = models.JSONField()
    latency_ms = models.FloatField()
    # ATR of the predicted bar (price points) and the median ATR of the window it was read from: the bracket and
    # the position size are built from the same ATR the labels used, and the ratio scales size down in spikes.
    atr = models.FloatField(null=True, blank=True)
    atr_reference = models.FloatField(null=True, blank=True)
    # The outcome, by the labels' triple-barrier rule (mlcore.domain.labels.barrier_outcome), once the horizon has
    # passed: per side, which barrier came first, the return it realised (fraction of the entry close) and the bar
    # it resolved on.
    outcome_status = models.CharField(max_length=12, choices=OutcomeStatus.choices, default=OutcomeStatus.PENDING)
    outcome_long = models.CharField(max_length=11, choices=Outcome.choices, blank=True)
    outcome_short = models.CharField(max_length=11, choices=Outcome.choices, blank=True)
    return_long = models.FloatField(null=True, blank=True)
    return_short = models.FloatField(null=True, blank=True)
    exit_long_at = models.DateTimeField(null=True, blank=True)  # timestamp of the bar the long side resolved on
    exit_short_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)  # wall clock
    outcome_note = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bar", "version"], name="one_prediction_per_bar_and_version")]
        indexes = [models.Index(fields=["instrument", "-created_at"]),
                   models.Index(fields=["instrument", "outcome_status"], name="prediction_outcome_status")]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.instrument_id} {self.side} {self.confidence:.2f} (v{self.version_id})"
