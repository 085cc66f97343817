"""Input and output shapes of the backtest API; the rules (market, window, version, look-ahead) are
trading.backtest's."""
from rest_framework import serializers

from minhos_site.api_fields import AwareDateTimeField, PlainCharField
from trading.backtest import BREAKER_DAILY, BREAKER_HOLD, ENGINE_MEMORY, ENGINES
from trading.domain.timeframes import TIMEFRAMES
from trading.models import BacktestRun

MAX_ID = 2**63 - 1


class _FromTo:
    """Declares "from" and "to" (Python keywords, so not class attributes): `window_fields()` gives both."""

    def get_fields(self):
        return {**super().get_fields(), **self.window_fields()}

    def window_fields(self) -> dict:
        raise NotImplementedError


class BacktestStartSerializer(_FromTo, serializers.Serializer):
    symbol = PlainCharField(max_length=20, help_text="The real market to replay, e.g. NQ.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    version = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID, default=None,
                                       help_text="Model version id; absent or null: the market's active version.")
    approval = serializers.ChoiceField(choices=BacktestRun.Approval.choices, default=BacktestRun.Approval.APPROVE,
                                       help_text="approve: auto-approve what risk approves; record: approve nothing.")
    allow_lookahead = serializers.BooleanField(
        default=False, help_text="Run even if the version was trained on bars inside the window (then flagged).")
    breaker = serializers.ChoiceField(choices=[BREAKER_HOLD, BREAKER_DAILY], default=BREAKER_HOLD,
                                      help_text="hold: a tripped circuit breaker stays tripped to the end (as live); "
                                                "daily: reset at the next trading day's first bar (audited).")
    engine = serializers.ChoiceField(choices=list(ENGINES), default=ENGINE_MEMORY,
                                     help_text="memory: the per-bar engine in memory, records written at the end "
                                               "(default); db: bar by bar through the live services (the reference).")

    def window_fields(self) -> dict:
        return {"from": AwareDateTimeField(help_text="First bar replayed (its open time); ISO 8601 with offset or Z."),
                "to": AwareDateTimeField(help_text="Bars up to and including this open time are replayed.")}


class BacktestRunOutputSerializer(_FromTo, serializers.ModelSerializer):
    """A run without its report: what it replays, with what, and how far it got."""

    symbol = serializers.CharField(source="instrument.symbol")
    # A string, not an enum: the schema's enum naming collides with the other models' "status" choices.
    status = serializers.CharField(read_only=True, help_text=f"One of {', '.join(BacktestRun.Status.values)}.")
    progress = serializers.SerializerMethodField(help_text="Percent of the window's bars replayed.")
    requested_by = serializers.SerializerMethodField()

    class Meta:
        model = BacktestRun
        fields = ["id", "symbol", "timeframe", "model_version", "approval", "lookahead", "status", "bars_total",
                  "bars_done", "progress", "error", "requested_by", "via", "account", "market", "created_at",
                  "started_at", "finished_at"]

    def window_fields(self) -> dict:
        return {"from": serializers.DateTimeField(source="start", read_only=True),
                "to": serializers.DateTimeField(source="end", read_only=True)}

    def get_progress(self, run: BacktestRun) -> float:
        if run.status == BacktestRun.Status.DONE:
            return 100.0
        return round(100 * run.bars_done / run.bars_total, 1) if run.bars_total else 0.0

    def get_requested_by(self, run: BacktestRun) -> str | None:
        return run.requested_by.get_username() if run.requested_by_id else None


class BacktestRunDetailOutputSerializer(BacktestRunOutputSerializer):
    """A run with the configuration it copied and its full report (empty until it is done)."""

    class Meta(BacktestRunOutputSerializer.Meta):
        fields = [*BacktestRunOutputSerializer.Meta.fields, "config", "report"]
