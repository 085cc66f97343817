"""Input and output shapes of the ML API."""
from rest_framework import serializers

from minhos_site.api_fields import AwareDateTimeField
from trading.domain.timeframes import TIMEFRAMES

from ..models import ModelVersion, Prediction

MAX_ID = 2**63 - 1


class ModelVersionFilterSerializer(serializers.Serializer):
    symbol = serializers.CharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")
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
    symbol = serializers.CharField()
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")


class PredictionFilterSerializer(serializers.Serializer):
    symbol = serializers.CharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    # allow_null: an absent boolean in a query string would otherwise read as false (DRF's HTML-input rule).
    resolved = serializers.BooleanField(
        required=False, allow_null=True,
        help_text="true: only predictions whose outcome is resolved; false: only those without one (pending or "
                  "unresolvable).")
    outcome_status = serializers.ChoiceField(choices=Prediction.OutcomeStatus.values, required=False)
    version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="Model version id.")
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
                  "confidence", "agreement", "members", "latency_ms", "outcome_status", "outcome_long",
                  "outcome_short", "return_long", "return_short", "exit_long_at", "exit_short_at", "resolved_at",
                  "outcome_note"]
