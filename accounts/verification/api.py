"""Request handlers of the verification session endpoints, shared by the DRF views and the socket
tunnel (`signalserver.tunnel`): each takes a `Call` and returns (status, JSON body).

libsignal's registration service sends these requests over an unauthenticated socket; there they
are hot routes, answered without a Django request each (docs/performance.md, "Registration").
"""

from __future__ import annotations

from accounts.verification import services as verification
from accounts.verification.serializers import (
    CreateSessionSerializer,
    RequestCodeSerializer,
    SessionUpdateSerializer,
    SubmitCodeSerializer,
)
from signalserver.fields import validated
from signalserver.tunnel import Call


def create_session(call: Call) -> tuple[int, dict]:
    """`POST /v1/verification/session`."""
    body = validated(CreateSessionSerializer, call.json())
    session = verification.create_session(
        number=body["number"],
        push_token=body["pushToken"],
        push_token_type=body["pushTokenType"],
        remote_ip=call.client,
    )
    return 200, verification.session_response(session)


def get_session(call: Call, session_id: str) -> tuple[int, dict]:
    """`GET /v1/verification/session/{sessionId}`."""
    return 200, verification.session_response(verification.get_session(session_id=session_id))


def update_session(call: Call, session_id: str) -> tuple[int, dict]:
    """`PATCH /v1/verification/session/{sessionId}`."""
    body = validated(SessionUpdateSerializer, call.json())
    session = verification.update_session(
        session_id=session_id,
        push_token=body["pushToken"],
        push_token_type=body["pushTokenType"],
        push_challenge=body["pushChallenge"],
        captcha=body["captcha"],
        remote_ip=call.client,
    )
    return 200, verification.session_response(session)


def request_code(call: Call, session_id: str) -> tuple[int, dict]:
    """`POST /v1/verification/session/{sessionId}/code`."""
    body = validated(RequestCodeSerializer, call.json())
    session = verification.request_code(
        session_id=session_id,
        transport=body["transport"],
        client=body["client"],
        accept_language=call.headers.get("accept-language"),
        remote_ip=call.client,
    )
    return 200, verification.session_response(session)


def submit_code(call: Call, session_id: str) -> tuple[int, dict]:
    """`PUT /v1/verification/session/{sessionId}/code`."""
    body = validated(SubmitCodeSerializer, call.json())
    session = verification.submit_code(session_id=session_id, code=body["code"])
    return 200, verification.session_response(session)
