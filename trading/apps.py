"""Trading app: instruments, bars and feeds; sizing, risk, approvals, the paper broker, positions and P&L."""
from django.apps import AppConfig


class TradingAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "trading"

    def ready(self):
        from . import receivers  # noqa: F401  (a stored bar starts its workflow; orders go to the broker)
