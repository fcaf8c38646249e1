from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        from accounts import profile_views, views
        from signalserver import tunnel

        # Profile reads are hot routes over sockets: a client reads every contact's at start-up.
        tunnel.register("GET", r"/v1/profile/(?P<service_id>(?:PNI:)?[0-9A-Fa-f-]+)", profile_views.get_profile)
        tunnel.register("GET", r"/v1/profile/(?P<service_id>(?:PNI:)?[0-9A-Fa-f-]+)/(?P<version>[^/]+)", profile_views.get_versioned_profile)
        # Asked by clients at start-up.
        tunnel.register("GET", r"/v1/accounts/whoami", views.whoami)
