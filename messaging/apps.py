from django.apps import AppConfig


class MessagingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "messaging"

    def ready(self):
        from django.conf import settings

        from messaging import api, sealing
        from messaging.reports import purge_reviewed_spam_reports
        from messaging.selectors import queue_figures
        from messaging.services import purge_expired_messages
        from signalserver import metrics_export, purges, tunnel

        if settings.PRODUCTION:
            sealing.queue_keys()  # a missing or malformed queue key stops the start, not the first send

        # The shared package imports no app: what it calls of this one is registered here.
        metrics_export.register_queue_figures(queue_figures)
        for purge in (purge_expired_messages, purge_reviewed_spam_reports):
            purges.register_purge(purge)

        # The hottest tunnelled requests: served without building a Django request.
        tunnel.register("PUT", r"/v1/messages/multi_recipient", api.put_multi_recipient_message)
        tunnel.register("PUT", r"/v1/messages/(?P<destination>[^/]+)", api.put_messages_batched)
        # Asked by clients at start-up (and daily).
        tunnel.register("GET", r"/v1/certificate/delivery", api.get_delivery_certificate)
