from django.urls import path

from signalserver import remote_config

# What Signal clients fetch at start-up besides the core API (spec §9). The other §9 paths name
# features we do not have (spec "Our scope": 404 for absent features) and are left unrouted, so
# they answer the JSON 404 of `signalserver.views.not_found`, over HTTP and over the socket alike.
urlpatterns = [
    path("v2/config", remote_config.RemoteConfigView.as_view()),
]
