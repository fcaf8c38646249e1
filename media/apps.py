from django.apps import AppConfig


class MediaConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'media'

    def ready(self):
        from media.services import purge_attachments
        from signalserver import purges

        purges.register_purge(purge_attachments)  # the embedded run's hourly purges (signalserver.purges)
