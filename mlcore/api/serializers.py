"""Input and output shapes of the ML API."""
from rest_framework import serializers

from trading.domain.timeframes import TIMEFRAMES

from ..models import ModelVersion, Prediction


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


class PredictionOutputSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol")
    timeframe = serializers.CharField(source="bar.timeframe")
    bar_timestamp = serializers.DateTimeField(source="bar.timestamp")

    class Meta:
        model = Prediction
        fields = ["id", "symbol", "timeframe", "bar_timestamp", "version", "created_at", "p_long", "p_short", "side",
                  "confidence", "agreement", "members", "latency_ms"]
