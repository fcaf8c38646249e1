from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

from signalserver import health, views

urlpatterns = [
    path("health/live", health.LiveView.as_view()),
    path("health/ready", health.ReadyView.as_view()),
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="docs"),
    path("v1/redoc", SpectacularRedocView.as_view(url_name="openapi-schema")),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("keys.urls")),
    path("", include("messaging.urls")),
    path("", include("messaging.calling_urls")),
    path("", include("push.urls")),
    path("", include("media.urls")),
    path("", include("groups.urls")),
    path("", include("signalserver.startup_urls")),
    # Anything else: the API's JSON 404, also with DEBUG on (Django's would be an HTML page).
    re_path(r"^", csrf_exempt(views.not_found)),
]

handler400 = "signalserver.views.bad_request"
handler404 = "signalserver.views.not_found"
handler500 = "signalserver.views.server_error"
