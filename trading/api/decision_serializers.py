"""Input and output serializers of the decision API (recommendations, accounts, configuration, kill switch, audit,
orders, fills, positions): they parse requests and shape responses; the services hold the rules."""
from datetime import UTC
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from minhos_site.api_fields import PlainCharField
from trading.domain.config_ranges import CONFIG_RANGES, SettingRange
from trading.domain.timeframes import TIMEFRAMES
from trading.models import (
    AuditEvent,
    EquitySnapshot,
    Fill,
    KillSwitch,
    Order,
    Position,
    Recommendation,
    TradingConfig,
    TradingState,
)

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_ID = 2**63 - 1


def _page_size():
    # The paginator reads page_size itself; declared so that a bad value is refused rather than silently replaced.
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE,
                                    help_text=f"Rows per page, default {PAGE_SIZE}, at most {MAX_PAGE_SIZE}.")


def _id_filter(help_text: str):
    # Bounded like the id columns (64-bit): a larger number is a 400 here, not an overflow in the database driver.
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text=help_text)


def _account_filter():
    return _id_filter("Account id.")


# --- filters ----------------------------------------------------------------------------------------------------


class RecommendationFilterSerializer(serializers.Serializer):
    symbol = PlainCharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    state = serializers.ChoiceField(choices=Recommendation.State.choices, required=False)
    account = _account_filter()
    page_size = _page_size()


class AccountFilterSerializer(serializers.Serializer):
    """Orders, fills: optionally one account's."""

    account = _account_filter()
    page_size = _page_size()


class PositionFilterSerializer(serializers.Serializer):
    account = _account_filter()
    open_only = serializers.BooleanField(required=False, default=False,
                                         help_text="Only positions that are not flat.")


class TradingConfigFilterSerializer(serializers.Serializer):
    account = _account_filter()
    symbol = PlainCharField(required=False, max_length=20, help_text="Instrument symbol, e.g. NQ.")


class AuditEventFilterSerializer(serializers.Serializer):
    account = _account_filter()
    recommendation = _id_filter("Recommendation id.")
    action = serializers.ChoiceField(choices=AuditEvent.Action.choices, required=False)
    page_size = _page_size()


class PageSizeSerializer(serializers.Serializer):
    page_size = _page_size()


# --- inputs of writes ---------------------------------------------------------------------------------------------


def _setting_schema(setting: SettingRange) -> dict:
    number = {"type": "integer" if setting.kind is int else "number", "minimum": setting.low,
              "maximum": setting.high}
    if setting.low_open:
        number["exclusiveMinimum"] = True
    if setting.high_open:
        number["exclusiveMaximum"] = True
    if setting.kind is Decimal:
        number = {k: float(v) if isinstance(v, Decimal) else v for k, v in number.items()}
        # Money may also be sent as a decimal string, as it is returned.
        return {"oneOf": [number, {"type": "string", "format": "decimal",
                                   "pattern": rf"^\d+(\.\d{{1,{setting.places}}})?$"}]}
    return number


class _SettingField(serializers.Field):
    """One trading setting, parsed by its entry in `CONFIG_RANGES` exactly as the service parses it."""

    setting: SettingRange

    def to_internal_value(self, data):
        try:
            return self.setting.parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


def _setting_field(name: str, help_text: str) -> _SettingField:
    setting = CONFIG_RANGES[name]
    field_class = extend_schema_field(_setting_schema(setting))(
        type(f"{name.title().replace('_', '')}Field", (_SettingField,), {"setting": setting}))
    return field_class(required=False, help_text=f"{help_text}, {setting.describe()}.")


class TradingConfigUpdateInputSerializer(serializers.Serializer):
    """The PATCH body: any of the settings, each in its range from `CONFIG_RANGES` (the schema states them). The view
    hands the body to the service, which checks the permission first and then parses each value by the same table."""

    kelly_fraction = _setting_field("kelly_fraction", "Share of full Kelly to bet")
    min_confidence = _setting_field("min_confidence", "Confidence threshold for sizing and for risk")
    max_contracts = _setting_field("max_contracts", "Cap of one recommendation's size")
    max_position_contracts = _setting_field("max_position_contracts", "Cap of the net position in the instrument")
    max_total_contracts = _setting_field("max_total_contracts", "Cap of the account's contracts over every instrument")
    daily_loss_limit = _setting_field("daily_loss_limit", "The day's loss that trips the circuit breaker")
    max_drawdown = _setting_field("max_drawdown", "Drawdown from peak equity at which risk blocks")
    max_trades_per_day = _setting_field("max_trades_per_day", "Entries per trading day")
    stale_after_seconds = _setting_field("stale_after_seconds", "Risk blocks when the last bar is older than this")
    health_floor = _setting_field("health_floor", "Model health under which risk blocks")
    health_full_size_floor = _setting_field("health_full_size_floor",
                                            "Model health from which Kelly sizes in full (scaled down under it)")
    recommendation_ttl_bars = _setting_field("recommendation_ttl_bars", "Bars a recommendation can be approved in")
    slippage_ticks = _setting_field("slippage_ticks", "Slippage of paper fills")
    commission_per_contract = _setting_field("commission_per_contract", "Commission per contract and fill")

    class Meta:
        ref_name = "TradingConfigUpdate"


class _RequiredBooleanField(serializers.BooleanField):
    """A boolean that must be sent. DRF reads a boolean missing from a form body as false (an unticked checkbox),
    so `-d reason=x` released the kill switch; here a missing value is missing, in form and JSON bodies alike."""

    default_empty_html = empty


class NoValueInputSerializer(serializers.Serializer):
    """The body of a control that takes no value (the circuit breaker's reset): empty. A body that sends values is
    refused by name rather than ignored, since it asks for something this control does not do."""

    # Sent by a browser form along with its fields; not a value of the control.
    IGNORED = {"csrfmiddlewaretoken"}

    def validate(self, attrs):
        sent = set(self.initial_data) if hasattr(self.initial_data, "keys") else set()
        if sent - self.IGNORED:
            raise serializers.ValidationError({str(name)[:80]: ["This control takes no value."]
                                               for name in sorted(sent - self.IGNORED)})
        return attrs


class AutoTradingInputSerializer(serializers.Serializer):
    enabled = _RequiredBooleanField(help_text="true: risk-approved recommendations go straight to the broker.")


class TradingStateInputSerializer(serializers.Serializer):
    trading_state = serializers.ChoiceField(choices=TradingState.choices,
                                            help_text="ACTIVE, REDUCING (exposure-reducing trades only) or HALTED.")


class KillSwitchInputSerializer(serializers.Serializer):
    engaged = _RequiredBooleanField(help_text="true: nothing trades on any account; false releases it.")
    reason = PlainCharField(text=True, required=False, allow_blank=True, default="", max_length=1000)


# --- outputs ------------------------------------------------------------------------------------------------------


class RecommendationOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="Who approved or rejected it; null until decided, or when "
                                                        "auto-trading or expiry closed it.")
    bar_timestamp = serializers.DateTimeField(default_timezone=UTC, read_only=True,
                                              help_text="Open time of the predicted bar, UTC.")
    expires_after = serializers.DateTimeField(default_timezone=UTC, read_only=True,
                                              help_text="Approval is refused once a bar later than this exists.")
    kelly = serializers.DictField(read_only=True, help_text="Every Kelly sizing factor.")
    risk = serializers.DictField(read_only=True, help_text="The risk verdict with each check.")
    reasons = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Recommendation
        ref_name = "Recommendation"
        fields = ("id", "account", "account_name", "symbol", "timeframe", "state", "state_label", "side", "contracts",
                  "kelly_contracts", "probability", "payoff_ratio", "confidence", "agreement", "reference_price",
                  "atr", "stop_distance", "take_profit_distance", "horizon_bars", "bar_timestamp", "expires_after",
                  "kelly", "risk", "risk_decision", "reasons", "model_version", "prediction", "created_at",
                  "decided_at", "decided_by", "executed_at")
        read_only_fields = fields


class RecommendationConflictSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Why the decision was refused.")
    state = serializers.ChoiceField(choices=Recommendation.State.choices,
                                    help_text="The recommendation's state after the refusal.")


class AccountSummaryOutputSerializer(serializers.Serializer):
    """`selectors.account_summary`: money as strings with two decimals, drawdown as a fraction of peak equity."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    currency = serializers.CharField()
    starting_equity = serializers.DecimalField(max_digits=16, decimal_places=2)
    equity = serializers.DecimalField(max_digits=16, decimal_places=2)
    realized_pnl = serializers.DecimalField(max_digits=16, decimal_places=2, help_text="Net of commissions.")
    unrealized_pnl = serializers.DecimalField(max_digits=16, decimal_places=2)
    daily_pnl = serializers.DecimalField(max_digits=16, decimal_places=2)
    peak_equity = serializers.DecimalField(max_digits=16, decimal_places=2)
    drawdown = serializers.FloatField()
    trades_today = serializers.IntegerField()
    auto_trading = serializers.BooleanField()
    trading_state = serializers.ChoiceField(choices=TradingState.choices)
    circuit_breaker_tripped = serializers.BooleanField()
    circuit_breaker_reason = serializers.CharField(allow_blank=True)
    settlement_fault = serializers.CharField(
        allow_blank=True, help_text="Why settling the last bar failed (new entries are blocked); empty when it did not.")
    settlement_fault_at = serializers.DateTimeField(allow_null=True)
    kill_switch = serializers.BooleanField(help_text="Whether the global kill switch is engaged.")


class EquitySnapshotOutputSerializer(serializers.ModelSerializer):
    timestamp = serializers.DateTimeField(default_timezone=UTC, read_only=True,
                                          help_text="Market time of the mark (the bar's close), UTC.")

    class Meta:
        model = EquitySnapshot
        ref_name = "EquitySnapshot"
        fields = ("timestamp", "equity", "realized_pnl", "unrealized_pnl", "peak_equity", "drawdown")
        read_only_fields = fields


class TradingConfigOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = TradingConfig
        ref_name = "TradingConfig"
        fields = ("id", "account", "account_name", "symbol", *CONFIG_RANGES, "updated_at")
        read_only_fields = fields


class KillSwitchOutputSerializer(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="null if never changed, or changed by the system.")

    class Meta:
        model = KillSwitch
        ref_name = "KillSwitch"
        fields = ("engaged", "changed_at", "changed_by", "reason")
        read_only_fields = fields


class AuditEventOutputSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                        help_text="null for what the system did by itself (auto-approval, a "
                                                  "breaker trip).")
    details = serializers.DictField(read_only=True)

    class Meta:
        model = AuditEvent
        ref_name = "AuditEvent"
        fields = ("id", "at", "user", "action", "account", "recommendation", "state_before", "state_after",
                  "client_address", "details")
        read_only_fields = fields


# "side" is long/short on predictions and recommendations; an order's buy/sell is documented as text so the two
# choice sets do not collide over one enum name in the schema.
_ORDER_SIDE = {"read_only": True, "help_text": "buy or sell."}


class OrderOutputSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    side = serializers.CharField(**_ORDER_SIDE)

    class Meta:
        model = Order
        ref_name = "Order"
        fields = ("id", "account", "symbol", "timeframe", "recommendation", "parent", "kind", "side", "quantity",
                  "status", "placed_at", "after_bar_timestamp", "take_profit", "stop_loss", "horizon_bars",
                  "bars_held", "closed")
        read_only_fields = fields


class FillOutputSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    side = serializers.CharField(**_ORDER_SIDE)

    class Meta:
        model = Fill
        ref_name = "Fill"
        fields = ("id", "order", "account", "symbol", "side", "quantity", "price", "commission", "timestamp",
                  "created_at")
        read_only_fields = fields


class PositionOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = Position
        ref_name = "Position"
        fields = ("id", "account", "account_name", "symbol", "quantity", "average_price", "mark_price",
                  "realized_pnl", "unrealized_pnl", "commissions", "fills", "updated_at")
        read_only_fields = fields
