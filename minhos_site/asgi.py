"""ASGI entry point: HTTP through Django, websockets through Channels with session auth from this site's own pages."""
import logging
import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minhos_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from minhos_site.origins import SameOriginValidator  # noqa: E402
from minhos_site.routing import websocket_urlpatterns  # noqa: E402

if settings.MINHOS_INSECURE_HTTP:
    logging.getLogger(__name__).warning(
        "MINHOS_INSECURE_HTTP=1: serving plain HTTP with no redirect to HTTPS, no Secure cookies and no HSTS; "
        "session cookies and passwords cross the network in clear text. Only on a private host or network.")

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
