from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

from signalserver import health

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
    path("", include("push.urls")),
    path("", include("media.urls")),
]

handler400 = "signalserver.views.bad_request"
handler404 = "signalserver.views.not_found"
handler500 = "signalserver.views.server_error"
