"""ASGI entry point: Django (REST, admin) for HTTP, Channels for WebSockets, on one port."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalserver.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from media import avatars, tus  # noqa: E402
from signalserver.client_address import ClientAddressMiddleware  # noqa: E402
from signalserver.middleware import api_middleware  # noqa: E402
from signalserver.metrics_export import start_exporter  # noqa: E402
from signalserver.request_ids import RequestIdMiddleware  # noqa: E402
from signalserver.routing import websocket_urlpatterns  # noqa: E402
from signalserver.static import StaticFiles  # noqa: E402

static_files = StaticFiles()


class APIHandler(ASGIHandler):
    """Django for every request but the admin's pages, through the API's shorter middleware list
    (`signalserver.middleware.api_middleware`)."""

    def load_middleware(self, is_async=False):
        every = settings.MIDDLEWARE
        settings.MIDDLEWARE = api_middleware(every)
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = every


api_asgi_app = APIHandler()
ADMIN_PREFIX = "/admin"
start_exporter()  # the metrics port, when METRICS_PORT is set (never this application's port)


async def http_application(scope, receive, send):
    """Attachment uploads and downloads (media.tus) stream their bodies, static files are
    WhiteNoise's (signalserver.static); everything else is Django, the admin's pages apart."""
    path = scope["path"]
    if static_files.serves(path):
        await static_files(scope, receive, send)
    elif path == tus.PREFIX or path.startswith(tus.PREFIX + "/"):
        await tus.app(scope, receive, send)
    elif avatars.refused_unread(scope):
        await tus.respond(send, 400, {}, body={"code": 400, "message": "EntityTooLarge: the upload exceeds the largest avatar"})
    elif path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        await django_asgi_app(scope, receive, send)  # browser pages: every middleware in settings
    else:
        await api_asgi_app(scope, receive, send)


# Request ids outermost: a refusal of a banned address is answered with one too.
application = RequestIdMiddleware(
    ClientAddressMiddleware(
        ProtocolTypeRouter(
            {
                "http": http_application,
                "websocket": URLRouter(websocket_urlpatterns),
            }
        )
    )
)

# Garbage collection tuned for a server of many long-lived sockets (docs/performance.md): what
# start-up loaded is never garbage, so collections stop scanning it (freeze), and the youngest
# generation is collected after 50,000 allocations instead of 700. A collection that ran every
# few hundred frames, scanning every socket's objects, cost 10-15 % of relay throughput.
if settings.TUNE_GARBAGE_COLLECTION:
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
