"""ML core app: features, labels, predictors, registry and inference (next issue)."""
from django.apps import AppConfig


class MlcoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mlcore"
