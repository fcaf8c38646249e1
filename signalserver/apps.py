from django.apps import AppConfig


class SignalserverConfig(AppConfig):
    name = "signalserver"
    verbose_name = "signalserver"

    def ready(self):
        from signalserver import schema  # noqa: F401  (registers OpenAPI extensions)
