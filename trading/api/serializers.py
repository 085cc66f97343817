"""Input and output serializers of the trading REST API: they parse queries and shape responses, nothing more."""
from datetime import UTC

from rest_framework import serializers

from minhos_site.api_fields import AwareDateTimeField, PlainCharField
from trading.domain.timeframes import TIMEFRAMES
from trading.models import Bar, Instrument

BAR_PAGE_SIZE = 500
BAR_MAX_PAGE_SIZE = 5000

class InstrumentOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Instrument
        ref_name = "Instrument"  # the schema component name; "Output" is our layering, not the client's concern
        fields = ("symbol", "name", "exchange", "tick_size", "point_value", "currency", "active")
        read_only_fields = fields


class BarListInputSerializer(serializers.Serializer):
    """The query of GET /api/bars/."""

    symbol = PlainCharField(max_length=20, help_text="Instrument symbol, e.g. NQ.")
    timeframe = serializers.ChoiceField(
        choices=list(TIMEFRAMES),
        default="1m",
        help_text=f"Bar length, one of {', '.join(TIMEFRAMES)}.",
        error_messages={"invalid_choice": f'"{{input}}" is not a timeframe; use one of {", ".join(TIMEFRAMES)}.'},
    )
    start = AwareDateTimeField(
        required=False, help_text="Inclusive lower bound on the bar open time; ISO 8601 with offset or Z."
    )
    end = AwareDateTimeField(
        required=False, help_text="Exclusive upper bound on the bar open time; ISO 8601 with offset or Z."
    )
    # The paginator reads page_size itself; it is declared here so that bad values are refused, not silently replaced.
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=BAR_MAX_PAGE_SIZE,
        help_text=f"Bars per page, default {BAR_PAGE_SIZE}, at most {BAR_MAX_PAGE_SIZE}.",
    )

    def validate(self, attrs):
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError(
                {"end": ["end must be later than start (start is inclusive, end exclusive)."]}
            )
        return attrs


class BarOutputSerializer(serializers.ModelSerializer):
    timestamp = serializers.DateTimeField(default_timezone=UTC, read_only=True, help_text="Bar open time, UTC.")

    class Meta:
        model = Bar
        ref_name = "Bar"
        fields = ("timestamp", "open", "high", "low", "close", "volume")
        read_only_fields = fields
