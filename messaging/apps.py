from django.apps import AppConfig


class MessagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messaging"

    def ready(self):
        from messaging import api
        from signalserver import tunnel

        # The hottest tunnelled request: served without building a Django request.
        tunnel.register("PUT", r"/v1/messages/(?P<destination>(?!multi_recipient$)[^/]+)", api.put_messages)
