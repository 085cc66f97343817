"""The model registry (versions, artifacts, training runs) and persisted predictions."""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"
        # A challenger predicting live bars beside the active version (stored as shadow predictions, never sized).
        SHADOW = "shadow"

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
    """One training attempt; at most one is queued or runs per market, so a second `train` is refused with a clear
    error. A queued run is what the `train_version` task carries (its id): a delivery of a run already taken up, ended
    or failed trains nothing. While it runs, its processes beat (`heartbeats`, as a retraining's do): one killed
    mid-fit is failed by the watchdog within MINHOS_TRAINING_HEARTBEAT_TIMEOUT, and the market can train again."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    IN_FLIGHT = (Status.QUEUED, Status.RUNNING)

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="training_runs")
    timeframe = models.CharField(max_length=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    preset = models.CharField(max_length=10)
    # What a queued run trains with (the task carries the run's id only).
    seed = models.IntegerField(default=0, db_default=0)
    label_settings = models.JSONField(default=dict, blank=True)
    promote = models.BooleanField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)  # queued at, then taken up at
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    # The last beat of any of its processes and what it was doing (see RetrainingHeartbeat for each part's own).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "timeframe"], condition=Q(status__in=["queued", "running"]),
                name="one_training_run_per_market"
            )
        ]
        ordering = ["-started_at"]

    def __str__(self):
        return f"training run #{self.pk} {self.instrument.symbol} {self.timeframe} ({self.status})"


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
    # A shadow prediction: a challenger's, made beside the active version's for its promotion record. It is never
    # sized, traded or shown as the market's prediction.
    shadow = models.BooleanField(default=False, db_default=False)
    # A backtest's prediction (of a bar of its private market): kept for its report, never counted by monitoring.
    backtest = models.BooleanField(default=False, db_default=False)
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


class RetrainingPolicy(models.Model):
    """How one market retrains: its windows, its shadow run and whether a decision to promote is applied at once
    (automatic) or proposed to a person holding mlcore.promote_modelversion (manual, the default)."""

    class Promotion(models.TextChoices):
        MANUAL = "manual"
        AUTOMATIC = "automatic"

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="retraining_policies")
    timeframe = models.CharField(max_length=4)
    promotion = models.CharField(max_length=10, choices=Promotion.choices, default=Promotion.MANUAL)
    scheduled = models.BooleanField(default=True, help_text="The nightly schedule retrains this market.")
    window_bars = models.PositiveIntegerField(
        default=20_000, validators=[MinValueValidator(1_000), MaxValueValidator(2_000_000)],
        help_text="Bars the challenger trains on: the latest ones before the comparison stretch (1,000-2,000,000).")
    holdout_bars = models.PositiveIntegerField(
        default=2_000, validators=[MinValueValidator(200), MaxValueValidator(200_000)],
        help_text="At most this many of the newest bars, unseen by both models, score champion against challenger "
                  "(200-200,000).")
    min_new_bars = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(100), MaxValueValidator(1_000_000)],
        help_text="Bars needed after the champion's last training bar before a retraining runs (100-1,000,000).")
    shadow_bars = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(100_000)],
        help_text="Live bars a challenger worth promoting first predicts in shadow (0: no shadow run; at most "
                  "100,000).")
    cooldown_minutes = models.PositiveIntegerField(
        default=360, validators=[MaxValueValidator(7 * 24 * 60)],
        help_text="Minutes between two retrainings started by monitoring's degradation hook (at most a week).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe"], name="one_retraining_policy_per_market"),
            models.CheckConstraint(condition=Q(window_bars__gte=1_000) & Q(window_bars__lte=2_000_000),
                                   name="retraining_window_bars_range"),
            models.CheckConstraint(condition=Q(holdout_bars__gte=200) & Q(holdout_bars__lte=200_000),
                                   name="retraining_holdout_bars_range"),
            models.CheckConstraint(condition=Q(min_new_bars__gte=100) & Q(min_new_bars__lte=1_000_000),
                                   name="retraining_min_new_bars_range"),
            models.CheckConstraint(condition=Q(shadow_bars__lte=100_000), name="retraining_shadow_bars_range"),
            models.CheckConstraint(condition=Q(cooldown_minutes__lte=7 * 24 * 60),
                                   name="retraining_cooldown_range"),
        ]
        verbose_name_plural = "retraining policies"

    def __str__(self):
        return f"{self.instrument.symbol} {self.timeframe}: {self.promotion}"


class Retraining(models.Model):
    """One retraining from its trigger to its decision: the challenger, both models' scores on the same unseen bars,
    the rule applied and why, who decided. Kept for audit, whatever became of it."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        DEGRADATION = "degradation"
        MANUAL = "manual"

    class Status(models.TextChoices):
        QUEUED = "queued"
        TRAINING = "training"
        SHADOW = "shadow"  # the challenger predicts live bars beside the champion until its record is long enough
        PROPOSED = "proposed"  # the rule says promote; a person decides (manual policy)
        PROMOTED = "promoted"
        KEPT = "kept"  # the rule says keep the champion
        REJECTED = "rejected"  # a person turned a proposal down, or the promotion was refused (e.g. a bad artifact)
        ROLLED_BACK = "rolled_back"  # promoted, then rolled back
        FAILED = "failed"  # the training or the scoring failed: nothing was promoted
        SKIPPED = "skipped"  # not started: one in flight, the cooldown, too few new bars

    IN_FLIGHT = (Status.QUEUED, Status.TRAINING, Status.SHADOW)

    instrument = models.ForeignKey("trading.Instrument", on_delete=models.CASCADE, related_name="retrainings")
    timeframe = models.CharField(max_length=4)
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    requested_by = models.CharField(max_length=150, help_text='"schedule", "monitoring" or the username')
    requested_at = models.DateTimeField()
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    champion = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    challenger = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="retrainings")
    policy = models.JSONField(default=dict, help_text="The market's policy when the retraining was requested.")
    started_at = models.DateTimeField(null=True, blank=True)
    trained_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # The bars: the challenger's training window and the stretch both were scored on (ISO times, counts).
    window = models.JSONField(default=dict)
    # Per side: both models' metrics on the stretch, the challenger's verdict against the baselines, the paired test.
    scores = models.JSONField(default=dict)
    shadow = models.JSONField(default=dict)
    rule = models.TextField(blank=True)
    rule_version = models.PositiveSmallIntegerField(default=0)
    decision = models.CharField(max_length=20, blank=True, help_text="What the rule said: promote, or the code of "
                                                                      "why not")
    decision_reason = models.TextField(blank=True)
    decided_by = models.CharField(max_length=150, blank=True, help_text='"automatic" or the username')
    note = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # The last sign of life of a process training it (any of its parts, see RetrainingHeartbeat) and what it said
    # it was doing: the page shows both, and a silent one is failed within MINHOS_TRAINING_HEARTBEAT_TIMEOUT.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=300, blank=True)
    # The distributed plan its member fits were dispatched with: a redelivered retraining task dispatches nothing.
    plan_key = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe"],
                                    condition=Q(status__in=["queued", "training", "shadow"]),
                                    name="one_retraining_in_flight_per_market"),
        ]
        indexes = [models.Index(fields=["instrument", "timeframe", "-requested_at"], name="retraining_market_recent")]
        ordering = ["-requested_at", "-id"]

    def __str__(self):
        return f"retraining #{self.pk} {self.instrument.symbol} {self.timeframe} ({self.status})"


class RetrainingHeartbeat(models.Model):
    """One process's part of a retraining (the run, a member fit, the assembly) and its last sign of life, written by
    a thread of that process while the part runs. A part that neither ended nor beat for
    MINHOS_TRAINING_HEARTBEAT_TIMEOUT lost its process (a killed worker): its retraining is failed, with an alert,
    long before Redis would deliver the killed task again."""

    # Whose part it is: a retraining's, or a training run's (`manage.py train`, `train_version`, a distributed one).
    retraining = models.ForeignKey(Retraining, on_delete=models.CASCADE, related_name="heartbeats", null=True,
                                   blank=True)
    training_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="heartbeats", null=True,
                                     blank=True)
    part = models.CharField(max_length=100, help_text='"run", "fit <unit>" or "collect"')
    worker = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    progress = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["retraining", "part"], name="one_heartbeat_per_part"),
            models.UniqueConstraint(fields=["training_run", "part"], name="one_heartbeat_per_training_run_part"),
            models.CheckConstraint(condition=Q(retraining__isnull=False, training_run__isnull=True)
                                   | Q(retraining__isnull=True, training_run__isnull=False),
                                   name="heartbeat_of_a_retraining_or_a_training_run"),
        ]
        ordering = ["started_at", "id"]

    def __str__(self):
        owner = (f"retraining #{self.retraining_id}" if self.retraining_id
                 else f"training run #{self.training_run_id}")
        return f"{owner} {self.part} ({self.worker} pid {self.pid})"
