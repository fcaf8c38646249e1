from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        from accounts import views
        from accounts.profiles import api as profile_api
        from accounts.profiles.services import purge_replaced_profiles
        from accounts.registration import api as registration_api
        from accounts.retention import purge_account_records
        from accounts.tokens.services import authenticate_bearer
        from accounts.usernames.services import purge_expired_claims
        from accounts.verification import api as verification_api
        from signalserver import auth, purges, tunnel

        # The shared package imports no app: what it calls of this one is registered here.
        auth.register_bearer_authenticator(authenticate_bearer)
        for purge in (purge_replaced_profiles, purge_expired_claims, purge_account_records):
            purges.register_purge(purge)

        # Profile reads are hot routes over sockets, batched across them: a client reads every
        # contact's at start-up.
        tunnel.register("GET", r"/v1/profile/(?P<service_id>(?:PNI:)?[0-9A-Fa-f-]+)", profile_api.get_profile_batched)
        tunnel.register("GET", r"/v1/profile/(?P<service_id>(?:PNI:)?[0-9A-Fa-f-]+)/(?P<version>[^/]+)", profile_api.get_versioned_profile_batched)
        # Asked by clients at start-up.
        tunnel.register("GET", r"/v1/accounts/whoami", views.whoami)
        # Registration, as libsignal's registration service sends it over an unauthenticated socket.
        session = r"/v1/verification/session/(?P<session_id>[^/]+)"
        tunnel.register("POST", r"/v1/verification/session", verification_api.create_session)
        tunnel.register("GET", session, verification_api.get_session)
        tunnel.register("PATCH", session, verification_api.update_session)
        tunnel.register("POST", session + "/code", verification_api.request_code)
        tunnel.register("PUT", session + "/code", verification_api.submit_code)
        tunnel.register("POST", r"/v1/registration", registration_api.register)
