"""Monitoring's routes (included by the root URLs by name: nothing imports monitoring)."""
from django.urls import path

from . import prometheus, views

urlpatterns = [
    path("metrics", prometheus.metrics, name="metrics"),
    path("monitoring/", views.monitoring_page, name="monitoring"),
    path("monitoring/data/", views.monitoring_data, name="monitoring-data"),
    path("monitoring/alerts/summary/", views.alerts_summary, name="monitoring-alerts-summary"),
    path("monitoring/alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="monitoring-alert-acknowledge"),
    path("monitoring/snapshot/", views.snapshot_take, name="monitoring-snapshot"),
    path("monitoring/retrain/", views.retrain, name="monitoring-retrain"),
    path("monitoring/rollback/", views.rollback, name="monitoring-rollback"),
    path("monitoring/retrainings/<int:retraining_id>/approve/", views.retraining_approve,
         name="monitoring-retraining-approve"),
    path("monitoring/retrainings/<int:retraining_id>/reject/", views.retraining_reject,
         name="monitoring-retraining-reject"),
]
