"""Request handlers of the profile reads, shared by the DRF views and the WebSocket tunnel
(`signalserver.tunnel`): each takes a `Call` and returns (status, JSON body).

A client reads every contact's profile at start-up, many at once over its socket; there the reads
of all the process's sockets are answered in batches (`accounts.profiles.services.read_profiles`),
as bundle fetches and sends are (docs/architecture.md §4).
"""

from __future__ import annotations

from accounts.profiles.services import ProfileRead, read_profiles
from signalserver.auth import optional_access, optional_access_key
from signalserver.batching import loop_batcher
from signalserver.errors import UnprocessableEntity
from signalserver.tunnel import Call
from signalserver.wire import ServiceId, b64encode

MAX_READS_PER_BATCH = 256


def parse_service_id(value: str, *, aci_only: bool = False) -> ServiceId:
    """A service id of a path or body (422 for anything else; `aci_only`: 422 for a PNI)."""
    try:
        target = ServiceId.parse(value)
    except ValueError:
        raise UnprocessableEntity("invalid service id") from None
    if aci_only and target.is_pni:
        raise UnprocessableEntity("an ACI is required")
    return target


def get_profile(call: Call, service_id: str) -> tuple[int, dict]:
    """`GET /v1/profile/{serviceId}` over HTTP (ProfileView)."""
    return 200, profile_json(_one(_profile_read(call, service_id)))


async def get_profile_batched(call: Call, service_id: str) -> tuple[int, dict]:
    """`get_profile` for the socket tunnel: the read joins the batch of the loop's sockets."""
    return 200, profile_json(await _batched(_profile_read(call, service_id)))


def get_versioned_profile(call: Call, service_id: str, version: str) -> tuple[int, dict]:
    """`GET /v1/profile/{aci}/{version}` over HTTP (VersionedProfileView)."""
    return 200, profile_json(_one(_versioned_read(call, service_id, version)))


async def get_versioned_profile_batched(call: Call, service_id: str, version: str) -> tuple[int, dict]:
    """`get_versioned_profile` for the socket tunnel, in the same batches as `get_profile_batched`."""
    return 200, profile_json(await _batched(_versioned_read(call, service_id, version)))


def _profile_read(call: Call, service_id: str) -> ProfileRead:
    """The read a request asks for, after the checks that need no database."""
    target = parse_service_id(service_id)
    access_key, group_send_token = optional_access(call.headers, authenticated=call.principal is not None)
    return ProfileRead(call.principal, target, access_key, group_send_token)


def _versioned_read(call: Call, service_id: str, version: str) -> ProfileRead:
    target = parse_service_id(service_id, aci_only=True)
    access_key = optional_access_key(call.headers, authenticated=call.principal is not None)
    return ProfileRead(call.principal, target, access_key, version=version.lower())


def _one(read: ProfileRead) -> dict:
    outcome = read_profiles([read])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def _batched(read: ProfileRead) -> dict:
    return await loop_batcher(read_profiles, MAX_READS_PER_BATCH).submit(read)


def profile_json(profile: dict) -> dict:
    """A profile read as JSON: bytes as base64."""
    return {name: b64encode(value) if isinstance(value, bytes) else value for name, value in profile.items()}
