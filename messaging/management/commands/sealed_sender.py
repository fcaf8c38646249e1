"""Operator commands for sealed-sender keys (docs/architecture.md §6).

  sealed_sender trust-root                         print the trust root public key (base64)
  sealed_sender create-trust-root --private-key-out FILE
                                                   make a trust root; its private key goes to FILE only
  sealed_sender certify --trust-root-private-key FILE
                                                   certify a new server key (first one, or a rotation)
  sealed_sender development                        embedded run: make a development pair if missing
"""

import os
import pathlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messaging.certificates import (
    TrustRootMismatch,
    certify_server_key,
    create_trust_root,
    ensure_development_keys,
    get_trust_root,
)
from signalserver.crypto import SigningKey
from signalserver.wire import b64decode, b64encode


class Command(BaseCommand):
    help = "Manage the sealed-sender trust root and server certificates."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("trust-root", help="print the trust root public key clients must be built with")
        create = sub.add_parser("create-trust-root", help="create a trust root key pair")
        create.add_argument("--private-key-out", required=True, help="file for the private key (kept offline)")
        create.add_argument("--force", action="store_true", help="replace an existing trust root")
        certify = sub.add_parser("certify", help="certify a new server key with the trust root")
        certify.add_argument("--trust-root-private-key", required=True, help="file written by create-trust-root")
        sub.add_parser("development", help="create a development trust root and server key if none exist")

    def handle(self, *args, action, **options):
        getattr(self, "_" + action.replace("-", "_"))(**options)

    def _trust_root(self, **options):
        root = get_trust_root()
        if root is None:
            raise CommandError("no trust root yet: run `sealed_sender create-trust-root`")
        self.stdout.write(b64encode(bytes(root.public_key)))

    def _create_trust_root(self, *, private_key_out, force, **options):
        if get_trust_root() is not None and not force:
            raise CommandError("a trust root exists; replacing it invalidates every client build (use --force)")
        path = pathlib.Path(private_key_out)
        root, key = create_trust_root(keep_private_key=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(b64encode(key.seed) + "\n")
        self.stdout.write(f"trust root public key: {b64encode(bytes(root.public_key))}")
        self.stdout.write(f"private key written to {path}: keep it offline; it is needed only to certify server keys")

    def _certify(self, *, trust_root_private_key, **options):
        try:
            seed = b64decode(pathlib.Path(trust_root_private_key).read_text().strip())
            key = SigningKey(seed)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the trust root private key: {exc}") from None
        try:
            certificate = certify_server_key(trust_root_key=key)
        except TrustRootMismatch:
            raise CommandError("that private key does not belong to the stored trust root") from None
        self.stdout.write(f"server certificate {certificate.key_id} now signs sender certificates")

    def _development(self, **options):
        if settings.SIGNALSERVER_ENV == "production":
            raise CommandError("development keys are refused in production mode")
        try:
            public_key, created = ensure_development_keys()
        except TrustRootMismatch:
            raise CommandError("the trust root's private key is offline: run `sealed_sender certify`") from None
        if created:
            self.stdout.write(f"created a development sealed-sender trust root: {b64encode(public_key)}")
        else:
            self.stdout.write(f"sealed-sender trust root: {b64encode(public_key)}")
