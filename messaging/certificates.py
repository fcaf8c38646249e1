"""Sealed-sender keys and certificates (docs/architecture.md §6).

An offline trust root certifies a server key (a ServerCertificate); the server key signs a
SenderCertificate for each device that asks. Clients verify both signatures against the trust root
compiled into them, so the server never has to be told who sent a sealed message.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from keys.models import Identity, IdentityKey
from messaging.models import ServerCertificate, TrustRoot
from messaging.services import now_ms
from signalserver.crypto import SigningKey
from signalserver.errors import BadRequest, ServiceUnavailable
from signalserver.proto.sealed_sender_pb2 import SenderCertificate
from signalserver.proto.sealed_sender_pb2 import ServerCertificate as ServerCertificateProto

SENDER_CERTIFICATE_LIFETIME_MS = 24 * 3600 * 1000


class TrustRootMismatch(Exception):
    """The private key given does not belong to the stored trust root."""


def get_trust_root() -> TrustRoot | None:
    return TrustRoot.objects.order_by("-pk").first()


@transaction.atomic
def create_trust_root(*, keep_private_key: bool) -> tuple[TrustRoot, SigningKey]:
    """A new trust root; its private key is stored only when `keep_private_key` (development)."""
    key = SigningKey.generate()
    root = TrustRoot.objects.create(public_key=key.public_key, private_key=key.seed if keep_private_key else None)
    return root, key


@transaction.atomic
def certify_server_key(*, trust_root_key: SigningKey) -> ServerCertificate:
    """Create a server key and certify it with the trust root (a rotation when one exists)."""
    root = get_trust_root()
    if root is None or bytes(root.public_key) != trust_root_key.public_key:
        raise TrustRootMismatch()
    server_key = SigningKey.generate()
    key_id = (ServerCertificate.objects.aggregate(last=Max("key_id"))["last"] or 0) + 1
    inner = ServerCertificateProto.Certificate(id=key_id, key=server_key.public_key).SerializeToString()
    certificate = ServerCertificateProto(certificate=inner, signature=trust_root_key.sign(inner))
    return ServerCertificate.objects.create(
        key_id=key_id, certificate=certificate.SerializeToString(), private_key=server_key.seed
    )


def ensure_development_keys() -> tuple[bytes, bool]:
    """For the embedded run: a trust root (kept here) and a server certificate, made on first use.
    Returns the trust root public key and whether anything was created."""
    created = False
    root = get_trust_root()
    if root is None:
        root, _ = create_trust_root(keep_private_key=True)
        created = True
    if not ServerCertificate.objects.exists():
        if root.private_key is None:
            raise TrustRootMismatch()  # an operator's root: certify with `sealed_sender certify`
        certify_server_key(trust_root_key=SigningKey(bytes(root.private_key)))
        created = True
    return bytes(root.public_key), created


def issue_sender_certificate(*, account, device, include_e164: bool) -> bytes:
    """A SenderCertificate for this device, valid 24 hours, signed by the newest server key."""
    if include_e164 and not account.number:
        raise BadRequest("the account has no phone number")
    server = ServerCertificate.objects.order_by("-key_id").first()
    if server is None:
        raise ServiceUnavailable("no sealed-sender server certificate configured")
    identity_key = (
        IdentityKey.objects.filter(account=account, identity=Identity.ACI).values_list("public_key", flat=True).first()
    )
    if identity_key is None:
        raise ServiceUnavailable("the account has no identity key")
    inner = SenderCertificate.Certificate(
        sender_device=device.device_id,
        expires=now_ms() + SENDER_CERTIFICATE_LIFETIME_MS,
        identity_key=bytes(identity_key),
        # The text ACI is read by every libsignal version; the full signer is embedded because a
        # signer id only works for server keys compiled into libsignal.
        sender_uuid_string=str(account.aci),
    )
    inner.signer_certificate.ParseFromString(bytes(server.certificate))
    if include_e164:
        inner.sender_e164 = account.number
    serialized = inner.SerializeToString()
    signature = SigningKey(bytes(server.private_key)).sign(serialized)
    return SenderCertificate(certificate=serialized, signature=signature).SerializeToString()
