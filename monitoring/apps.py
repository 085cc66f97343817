"""Monitoring app: outcomes folded into live metrics, drift, the health score that sizing reads, alerts."""
from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self):
        from . import receivers  # noqa: F401 - connects the receivers
