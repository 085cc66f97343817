"""Input and output shapes of the ML API."""
from rest_framework import serializers

from minhos_site.api_fields import AwareDateTimeField, PlainCharField
from trading.domain.timeframes import TIMEFRAMES

from ..models import ModelVersion, Prediction, Retraining

MAX_ID = 2**63 - 1


class ModelVersionFilterSerializer(serializers.Serializer):
    symbol = PlainCharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    status = serializers.ChoiceField(choices=ModelVersion.Status.values, required=False)


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol")

    class Meta:
        model = ModelVersion
        fields = ["id", "symbol", "timeframe", "status", "created_at", "promoted_at", "retired_at", "preset", "seed",
                  "data_start", "data_end", "n_bars", "feature_names", "feature_window", "sequence_length",
                  "hyperparameters", "label_settings", "payoff_ratio", "has_edge", "edge_statement", "metrics",
                  "artifacts", "train_seconds", "member_seconds"]


class RollbackInputSerializer(serializers.Serializer):
    symbol = PlainCharField()
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")


class PredictionFilterSerializer(serializers.Serializer):
    symbol = PlainCharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    # allow_null: an absent boolean in a query string would otherwise read as false (DRF's HTML-input rule).
    resolved = serializers.BooleanField(
        required=False, allow_null=True,
        help_text="true: only predictions whose outcome is resolved; false: only those without one (pending or "
                  "unresolvable).")
    outcome_status = serializers.ChoiceField(choices=Prediction.OutcomeStatus.values, required=False)
    version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="Model version id.")
    shadow = serializers.BooleanField(
        required=False, default=False,
        help_text="true: only shadow predictions (challengers predicting beside the active version, never sized); "
                  "false (the default): only the market's own.")
    since = AwareDateTimeField(required=False, help_text="Inclusive lower bound on the bar time; ISO 8601 with offset "
                                                         "or Z.")
    until = AwareDateTimeField(required=False, help_text="Exclusive upper bound on the bar time; ISO 8601 with "
                                                         "offset or Z.")

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError(
                {"until": ["until must be later than since (since is inclusive, until exclusive)."]})
        return attrs


class PredictionOutputSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol")
    timeframe = serializers.CharField(source="bar.timeframe")
    bar_timestamp = serializers.DateTimeField(source="bar.timestamp")

    class Meta:
        model = Prediction
        fields = ["id", "symbol", "timeframe", "bar_timestamp", "version", "created_at", "p_long", "p_short", "side",
                  "confidence", "agreement", "members", "latency_ms", "shadow", "outcome_status", "outcome_long",
                  "outcome_short", "return_long", "return_short", "exit_long_at", "exit_short_at", "resolved_at",
                  "outcome_note"]


class RetrainingFilterSerializer(serializers.Serializer):
    symbol = PlainCharField(required=False, max_length=20)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    status = serializers.ChoiceField(choices=Retraining.Status.values, required=False)


class RetrainingStartSerializer(serializers.Serializer):
    symbol = PlainCharField(max_length=20)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    reason = PlainCharField(text=True, required=False, allow_blank=True, max_length=2000, default="")


class RetrainingRejectSerializer(serializers.Serializer):
    note = PlainCharField(text=True, required=False, allow_blank=True, max_length=2000, default="")


class RetrainingOutputSerializer(serializers.Serializer):
    """A retraining from trigger to decision: both models' figures per side on the same unseen bars, the paired
    test, the rule applied (its text and version) and why."""

    id = serializers.IntegerField()
    symbol = serializers.CharField()
    timeframe = serializers.CharField()
    trigger = serializers.ChoiceField(choices=Retraining.Trigger.values)
    requested_by = serializers.CharField()
    requested_at = serializers.CharField()
    status = serializers.ChoiceField(choices=Retraining.Status.values)
    champion = serializers.IntegerField(allow_null=True)
    challenger = serializers.IntegerField(allow_null=True)
    decision = serializers.CharField(help_text="What the rule said: promote, or the code of why not.")
    reason = serializers.CharField()
    decided_by = serializers.CharField()
    decided_at = serializers.CharField(allow_null=True)
    window = serializers.DictField()
    sides = serializers.DictField()
    shadow = serializers.DictField()
    rule = serializers.CharField()
    rule_version = serializers.IntegerField()
    policy = serializers.DictField()
    error = serializers.CharField()
    note = serializers.CharField()
