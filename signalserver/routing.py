"""WebSocket routes (spec §4.7)."""

from django.urls import path

from messaging.consumers import ChatConsumer

websocket_urlpatterns: list = [
    path("v1/websocket/", ChatConsumer.as_asgi()),
]
