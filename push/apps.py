import logging

from django.apps import AppConfig

logger = logging.getLogger("push")


class PushConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "push"

    def ready(self):
        from push.sender import configured_platforms

        platforms = configured_platforms()
        if not platforms:
            logger.info("push is off: neither APNs nor FCM is configured (APNS_*, FCM_* settings)")
        elif len(platforms) == 1:
            logger.info("push is configured for one platform only", extra={"platform": next(iter(platforms))})
