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
    path("retrainings/", views.RetrainingListApi.as_view(), name="api-retraining-list"),
    path("retrainings/<int:retraining_id>/", views.RetrainingDetailApi.as_view(), name="api-retraining-detail"),
    path("retrainings/<int:retraining_id>/approve/", views.RetrainingApproveApi.as_view(),
         name="api-retraining-approve"),
    path("retrainings/<int:retraining_id>/reject/", views.RetrainingRejectApi.as_view(), name="api-retraining-reject"),
]
