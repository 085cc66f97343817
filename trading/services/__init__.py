"""Writes of the trading app, one module per area; everything is importable from `trading.services`."""
from .market import (  # noqa: F401
    IngestReport,
    OutOfOrderBar,
    bar_emit_closed,
    bar_store_closed,
    bar_time_bounds,
    bars_import_file,
    bars_ingest,
    demo_user_ensure,
    feed_publish_bar,
    feed_status_heartbeat,
    feed_status_record_bar,
    feed_status_start,
    feed_status_stop,
    instrument_get_or_create,
    market_push,
)
from .accounts import (  # noqa: F401
    KILL_SWITCH_REASON_MAX,
    PermissionRefused,
    account_default_get,
    audit_record,
    audit_refusal_record,
    auto_trading_set,
    circuit_breaker_reset,
    circuit_breaker_trip,
    kill_switch_set,
    model_version_audit_record,
    trading_config_changes_parse,
    trading_config_get,
    trading_config_update,
    trading_state_set,
)
from .recommendations import (  # noqa: F401
    RecommendationError,
    RecommendationNotPending,
    RecommendationRefusedByRisk,
    RecommendationStale,
    recommendation_approve,
    recommendation_reject,
    recommendations_create_for_prediction,
    recommendations_expire,
)
from .execution import (  # noqa: F401
    ReconcileReport,
    account_reconcile,
    broker_process_bar,
)
