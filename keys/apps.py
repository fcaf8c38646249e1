from django.apps import AppConfig


class KeysConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'keys'

    def ready(self):
        from keys import api
        from signalserver import tunnel

        # Hot routes over sockets: a bundle for every new conversation, a key count at every start.
        tunnel.register("GET", r"/v2/keys/(?P<service_id>[^/]+)/(?P<device_id>[^/]+)", api.get_prekey_bundle_batched)
        tunnel.register("GET", r"/v2/keys", api.get_key_counts)
