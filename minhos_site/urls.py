"""Root URLs: dashboard, probes and /metrics, backtests, auth, admin, REST API and its docs."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from minhos_site.token_api import TokenObtainApi
from trading import chart_views, views as trading_views

urlpatterns = [
    path("", trading_views.dashboard, name="dashboard"),
    path("healthz", trading_views.healthz, name="healthz"),
    path("readyz", trading_views.readyz, name="readyz"),
    path("", include("monitoring.urls")),
    path("chart/overlays/", chart_views.chart_overlays, name="chart-overlays"),
    path("", include("trading.backtest_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("trading.api.urls")),
    path("api/", include("mlcore.api.urls")),
    path("api/auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
