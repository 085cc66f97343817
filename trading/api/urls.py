"""REST API routes of the trading app."""
urlpatterns = []
