"""Monitoring's routes (included by the root URLs by name: nothing imports monitoring)."""
from django.urls import path

from . import prometheus

urlpatterns = [
    path("metrics", prometheus.metrics, name="metrics"),
]
