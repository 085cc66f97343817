"""Monitoring app: metric snapshots, health score, alerts, drift (later issue)."""
from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"
