"""REST API routes of the trading app."""
from django.urls import path

from . import backtest_views, decision_views, views

urlpatterns = [
    path("instruments/", views.InstrumentListApi.as_view(), name="api-instrument-list"),
    path("instruments/<str:symbol>/", views.InstrumentDetailApi.as_view(), name="api-instrument-detail"),
    path("bars/", views.BarListApi.as_view(), name="api-bar-list"),
    # Decisions and execution.
    path("recommendations/", decision_views.RecommendationListApi.as_view(), name="api-recommendation-list"),
    path("recommendations/<int:recommendation_id>/", decision_views.RecommendationDetailApi.as_view(),
         name="api-recommendation-detail"),
    path("recommendations/<int:recommendation_id>/approve/", decision_views.RecommendationApproveApi.as_view(),
         name="api-recommendation-approve"),
    path("recommendations/<int:recommendation_id>/reject/", decision_views.RecommendationRejectApi.as_view(),
         name="api-recommendation-reject"),
    path("orders/", decision_views.OrderListApi.as_view(), name="api-order-list"),
    path("fills/", decision_views.FillListApi.as_view(), name="api-fill-list"),
    path("positions/", decision_views.PositionListApi.as_view(), name="api-position-list"),
    path("accounts/", decision_views.AccountListApi.as_view(), name="api-account-list"),
    path("accounts/<int:account_id>/", decision_views.AccountDetailApi.as_view(), name="api-account-detail"),
    path("accounts/<int:account_id>/equity/", decision_views.AccountEquityApi.as_view(), name="api-account-equity"),
    path("accounts/<int:account_id>/auto-trading/", decision_views.AccountAutoTradingApi.as_view(),
         name="api-account-auto-trading"),
    path("accounts/<int:account_id>/circuit-breaker/reset/", decision_views.AccountCircuitBreakerResetApi.as_view(),
         name="api-account-circuit-breaker-reset"),
    path("accounts/<int:account_id>/trading-state/", decision_views.AccountTradingStateApi.as_view(),
         name="api-account-trading-state"),
    path("trading-configs/", decision_views.TradingConfigListApi.as_view(), name="api-trading-config-list"),
    path("trading-configs/<int:config_id>/", decision_views.TradingConfigDetailApi.as_view(),
         name="api-trading-config-detail"),
    path("kill-switch/", decision_views.KillSwitchApi.as_view(), name="api-kill-switch"),
    path("audit-events/", decision_views.AuditEventListApi.as_view(), name="api-audit-event-list"),
    # Backtests.
    path("backtests/", backtest_views.BacktestListApi.as_view(), name="api-backtest-list"),
    path("backtests/<int:run_id>/", backtest_views.BacktestDetailApi.as_view(), name="api-backtest-detail"),
]
