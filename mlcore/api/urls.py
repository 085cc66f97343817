"""REST API routes of the ML core."""
from django.urls import path

from . import views

urlpatterns = [
    path("model-versions/", views.ModelVersionListApi.as_view(), name="api-model-version-list"),
    path("model-versions/rollback/", views.ModelVersionRollbackApi.as_view(), name="api-model-version-rollback"),
    path("model-versions/<int:version_id>/", views.ModelVersionDetailApi.as_view(), name="api-model-version-detail"),
    path("model-versions/<int:version_id>/promote/", views.ModelVersionPromoteApi.as_view(),
         name="api-model-version-promote"),
    path("predictions/", views.PredictionListApi.as_view(), name="api-prediction-list"),
]
