"""Limiter overrides from the command line, as in the admin (e.g. for a load test):

  ratelimit list                                   every limiter: default and override
  ratelimit set NAME BUCKET_SIZE PERMIT_SECONDS [--account ACI]
  ratelimit clear NAME [--account ACI]

Every change holds from the next request of every node and is recorded in the operator log.
"""

import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Account
from signalserver import operator_settings
from signalserver.limiters import LIMITERS
from signalserver.models import LimitOverride, record_operator_action


class Command(BaseCommand):
    help = "List, set and clear rate-limit overrides."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("list")
        set_ = commands.add_parser("set")
        set_.add_argument("name", choices=sorted(LIMITERS))
        set_.add_argument("bucket_size", type=int)
        set_.add_argument("permit_seconds", type=float)
        set_.add_argument("--account")
        clear = commands.add_parser("clear")
        clear.add_argument("name", choices=sorted(LIMITERS))
        clear.add_argument("--account")

    def handle(self, *args, command, **options):
        if command == "list":
            overrides = {(o.limiter, o.account_id): o for o in LimitOverride.objects.all()}
            for name, limiter in sorted(LIMITERS.items()):
                default = limiter.default
                line = f"{name:28} {default.bucket_size} per {default.permit_seconds:g} s ({limiter.keyed_by})"
                for (limiter_name, account), override in sorted(overrides.items(), key=str):
                    if limiter_name == name:
                        line += f"\n{'':28} override for {account or 'everyone'}: {override.bucket_size} per {override.permit_seconds:g} s"
                self.stdout.write(line)
            return
        account = self._account(options["account"])
        scope = f"account {account.aci}" if account else "everyone"
        with transaction.atomic():
            if command == "set":
                if options["bucket_size"] <= 0 or options["permit_seconds"] <= 0:
                    raise CommandError("the bucket size and the seconds per permit must be positive")
                LimitOverride.objects.update_or_create(
                    limiter=options["name"],
                    account=account,
                    defaults={"bucket_size": options["bucket_size"], "permit_seconds": options["permit_seconds"]},
                )
                detail = f"{options['bucket_size']} per {options['permit_seconds']:g} s"
                record_operator_action(None, "set limit", f"{options['name']} for {scope}", detail)
            else:
                LimitOverride.objects.filter(limiter=options["name"], account=account).delete()
                record_operator_action(None, "remove limit override", f"{options['name']} for {scope}")
            operator_settings.changed()
        self.stdout.write(f"{command} {options['name']} for {scope}: holds from the next request")

    def _account(self, aci):
        if aci is None:
            return None
        try:
            return Account.objects.get(aci=uuid.UUID(aci))
        except (ValueError, Account.DoesNotExist):
            raise CommandError(f"no account {aci}") from None
