"""WebSocket routes."""

from django.urls import path

from accounts.consumers import ProvisioningConsumer
from messaging.consumers import ChatConsumer

websocket_urlpatterns: list = [
    path("v1/websocket/", ChatConsumer.as_asgi()),
    path("v1/websocket/provisioning/", ProvisioningConsumer.as_asgi()),
]
