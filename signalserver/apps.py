from django.apps import AppConfig


class SignalserverConfig(AppConfig):
    name = "signalserver"
    verbose_name = "signalserver"

    def ready(self):
        from django.db.models.signals import post_migrate

        from signalserver import schema  # noqa: F401  (registers OpenAPI extensions)
        from signalserver import remote_config, tunnel

        # Asked by clients at every start: a hot route over sockets.
        tunnel.register("GET", r"/v2/config", remote_config.get_config)

        # For every app: the permissions of later apps only exist once their own signal has run.
        post_migrate.connect(ensure_moderator_group, dispatch_uid="signalserver-moderators")


MODERATOR_GROUP = "moderators"
# Moderators review spam reports and ban or unban senders, and read the operator log; nothing else.
MODERATOR_PERMISSIONS = [
    ("messaging", "view_spamreport"),
    ("messaging", "change_spamreport"),
    ("accounts", "view_account"),
    ("accounts", "ban_account"),
    ("signalserver", "view_operatoraction"),
]


def ensure_moderator_group(using="default", apps=None, **kwargs):
    """After every migrate: the moderators group exists with exactly its permissions."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import Q

    wanted = Q()
    for app_label, codename in MODERATOR_PERMISSIONS:
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    group, _ = Group.objects.using(using).get_or_create(name=MODERATOR_GROUP)
    group.permissions.set(Permission.objects.using(using).filter(wanted))
