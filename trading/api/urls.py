"""REST API routes of the trading app."""
from django.urls import path

from . import views

urlpatterns = [
    path("instruments/", views.InstrumentListApi.as_view(), name="api-instrument-list"),
    path("instruments/<str:symbol>/", views.InstrumentDetailApi.as_view(), name="api-instrument-detail"),
    path("bars/", views.BarListApi.as_view(), name="api-bar-list"),
]
