"""ASGI entry point: Django (REST, admin) for HTTP, Channels for WebSockets, on one port."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalserver.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from signalserver.client_address import ClientAddressMiddleware  # noqa: E402
from signalserver.routing import websocket_urlpatterns  # noqa: E402

application = ClientAddressMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)
