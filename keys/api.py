"""Request handlers of the hot key endpoints, shared by the DRF views and the WebSocket tunnel
(`signalserver.tunnel`): each takes a `Call` and returns (status, JSON body).

A client fetches a bundle for every new conversation, and counts its own keys at every start, so
these skip DRF serializers; over sockets, bundle fetches of all the process's sockets are answered
in batches (`keys.services.fetch_prekey_bundles`), as sends are (docs/architecture.md §4).
"""

from __future__ import annotations

from keys.models import Identity
from keys.services import BundleRequest, PreKeyBundle, count_one_time_keys, fetch_prekey_bundles
from signalserver.auth import optional_access
from signalserver.batching import loop_batcher
from signalserver.errors import Unauthorized, UnprocessableEntity
from signalserver.tunnel import Call
from signalserver.wire import ServiceId, b64encode, b64encode_unpadded

MAX_FETCHES_PER_BATCH = 256


def get_prekey_bundle(call: Call, service_id: str, device_id: str) -> tuple[int, dict]:
    """`GET /v2/keys/{serviceId}/{deviceId}` over HTTP (PreKeyBundleView)."""
    outcome = fetch_prekey_bundles([_bundle_request(call, service_id, device_id)])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return 200, bundle_json(outcome)


async def get_prekey_bundle_batched(call: Call, service_id: str, device_id: str) -> tuple[int, dict]:
    """`get_prekey_bundle` for the socket tunnel: the fetch joins the batch of the loop's sockets."""
    request = _bundle_request(call, service_id, device_id)
    bundle = await loop_batcher(fetch_prekey_bundles, MAX_FETCHES_PER_BATCH).submit(request)
    return 200, bundle_json(bundle)


def _bundle_request(call: Call, service_id: str, device_id: str) -> BundleRequest:
    """The fetch a request asks for, after the checks that need no database."""
    try:
        target = ServiceId.parse(service_id)
    except ValueError:
        raise UnprocessableEntity("invalid service id") from None
    access_key, group_send_token = optional_access(call.headers, authenticated=call.principal is not None)
    return BundleRequest(call.principal, target, device_id, access_key, group_send_token)


def bundle_json(bundle: PreKeyBundle) -> dict:
    """A bundle as Signal's JSON: keys in base64, signatures unpadded."""
    return {
        "identityKey": b64encode(bundle.identity_key),
        "devices": [
            {
                "deviceId": device.device_id,
                "registrationId": device.registration_id,
                "signedPreKey": _signed_key(device.signed_prekey),
                "preKey": (
                    {"keyId": device.pre_key.key_id, "publicKey": b64encode(device.pre_key.public_key)}
                    if device.pre_key is not None
                    else None
                ),
                "pqPreKey": _signed_key(device.pq_pre_key),
            }
            for device in bundle.devices
        ],
    }


def _signed_key(key) -> dict:
    return {"keyId": key.key_id, "publicKey": b64encode(key.public_key), "signature": b64encode_unpadded(key.signature)}


def identity_of(text: str | None) -> Identity:
    """`aci` (the default) or `pni`, case-insensitive."""
    value = (text or "aci").lower()
    if value not in ("aci", "pni"):
        raise UnprocessableEntity("identity must be aci or pni")
    return Identity.PNI if value == "pni" else Identity.ACI


def get_key_counts(call: Call) -> tuple[int, dict]:
    """`GET /v2/keys?identity=aci|pni`: how many one-time keys the device has left."""
    if call.principal is None:
        raise Unauthorized()
    count, pq_count = count_one_time_keys(
        account=call.principal.account, device=call.principal.device, identity=identity_of(call.query.get("identity"))
    )
    return 200, {"count": count, "pqCount": pq_count}
