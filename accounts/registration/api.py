"""The request handler of `POST /v1/registration`, shared by the DRF view and the socket tunnel
(`signalserver.tunnel`), where it is a hot route: libsignal's registration service registers over
an unauthenticated socket (docs/performance.md, "Registration")."""

from __future__ import annotations

from accounts.registration.serializers import RegistrationSerializer
from accounts.registration.services import register_account
from accounts.serializers import account_identity
from signalserver.auth import parse_basic_header
from signalserver.errors import Unauthorized
from signalserver.fields import validated
from signalserver.tunnel import Call


def register(call: Call) -> tuple[int, dict]:
    """Not device-authenticated: the Basic header carries the number being registered and the new
    primary device's password (over a socket, the frame's header: the socket has no credentials)."""
    credentials = parse_basic_header(call.headers.get("authorization"))
    if credentials is None:
        raise Unauthorized()
    number, password = credentials
    result = register_account(
        number=number,
        password=password,
        user_agent=call.headers.get("x-signal-agent", ""),
        **validated(RegistrationSerializer, call.json()),
    )
    identity = account_identity(
        result.account, storage_capable=result.storage_capable, new_account=not result.reregistration
    )
    return 200, {**identity, "reregistration": result.reregistration}
