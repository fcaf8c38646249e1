from django.urls import path

from signalserver import remote_config

# What Signal clients fetch at start-up besides the core API. The other start-up paths name
# features we do not have (404 for absent features, docs/api.md) and are left unrouted, so
# they answer the JSON 404 of `signalserver.views.not_found`, over HTTP and over the socket alike.
urlpatterns = [
    path("v2/config", remote_config.RemoteConfigView.as_view()),
]
