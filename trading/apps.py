"""Trading app: instruments, bars and feeds now; sizing, risk, approvals and the paper broker later."""
from django.apps import AppConfig


class TradingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "trading"

    def ready(self):
        from . import receivers  # noqa: F401  (connects the bar-closed broadcast)
