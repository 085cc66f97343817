"""Routes of the backtest pages (included by the root URLs)."""
from django.urls import path

from . import backtest_views

urlpatterns = [
    path("backtests/", backtest_views.backtest_list, name="backtests"),
    path("backtests/bar-range/", backtest_views.backtest_bar_range, name="backtest-bar-range"),
    path("backtests/<int:run_id>/", backtest_views.backtest_detail, name="backtest"),
    path("backtests/<int:run_id>/progress/", backtest_views.backtest_progress, name="backtest-progress"),
    path("backtests/<int:run_id>/trades/<int:recommendation_id>/", backtest_views.backtest_trade,
         name="backtest-trade"),
]
