"""MinhOS project package: settings, URLs, ASGI and Celery wiring (no business logic)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
