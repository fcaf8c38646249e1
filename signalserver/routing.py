"""WebSocket routes (spec §4.7); the messaging app adds its consumers here."""

websocket_urlpatterns: list = []
