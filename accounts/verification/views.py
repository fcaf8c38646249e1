"""Verification session endpoints: thin views over the handlers of `accounts.verification.api`."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from accounts.verification import api
from accounts.verification.serializers import (
    CreateSessionSerializer,
    ErrorSerializer,
    NumberNotNormalizedSerializer,
    RequestCodeSerializer,
    SenderFailureSerializer,
    SessionUpdateSerializer,
    SubmitCodeSerializer,
    VerificationSessionSerializer,
)
from signalserver.schema import unprocessable
from signalserver.tunnel import Call, render

TAGS = ["verification"]

SESSION_ID = OpenApiParameter(
    "session_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Session id as returned at creation (URL-safe base64 of 16 bytes, padding optional)",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    description="Seconds to wait before trying again; absent when waiting will not help",
    response=[429],
)
ACCEPT_LANGUAGE = OpenApiParameter(
    "Accept-Language",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Preferred languages for the SMS/voice message",
)


def _session(description: str) -> OpenApiResponse:
    return OpenApiResponse(VerificationSessionSerializer, description=description)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


INVALID_BODY = unprocessable("The body failed validation")
BAD_ID = _error("Session id of the wrong length")
UNDECODABLE_ID = unprocessable("Session id is not URL-safe base64, or the body failed validation")
UNKNOWN_SESSION = _error("No such session, or it expired")


class CreateSessionView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the handler (accounts.verification.api) parses the raw body

    @extend_schema(
        tags=TAGS,
        operation_id="createVerificationSession",
        summary="Start verifying a phone number",
        description=(
            "Creates a session for the number. `captcha` is requested whenever a captcha provider is "
            "configured; with `pushToken`/`pushTokenType` a push challenge is sent to that token and "
            "`pushChallenge` is requested first. Supply them with PATCH, then request a code."
        ),
        parameters=[RETRY_AFTER],
        request={"application/json": CreateSessionSerializer},
        responses={
            200: _session("The new session"),
            400: OpenApiResponse(NumberNotNormalizedSerializer, description="The number is not in E.164 form"),
            422: INVALID_BODY,
            429: _error("Too many sessions for this number or from this address; wait Retry-After seconds"),
        },
    )
    def post(self, request):
        return render(api.create_session(Call.from_drf(request)))


class SessionView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the handler (accounts.verification.api) parses the raw body

    @extend_schema(
        tags=TAGS,
        operation_id="getVerificationSession",
        summary="Get a verification session",
        parameters=[SESSION_ID],
        responses={200: _session("The session"), 400: BAD_ID, 404: UNKNOWN_SESSION, 422: UNDECODABLE_ID},
    )
    def get(self, request, session_id):
        return render(api.get_session(Call.from_drf(request), session_id))

    @extend_schema(
        tags=TAGS,
        operation_id="updateVerificationSession",
        summary="Supply requested information",
        description=(
            "Handled in this order: a push token (sends the push challenge, again if asked), "
            "`pushChallenge`, `captcha`. A correct push challenge or a valid captcha satisfies both; "
            "`allowedToRequestCode` becomes true when nothing is requested any more. Changes made "
            "before a rejection are kept."
        ),
        parameters=[SESSION_ID, RETRY_AFTER],
        request={"application/json": SessionUpdateSerializer},
        responses={
            200: _session("The updated session"),
            400: BAD_ID,
            403: _session("Push challenge wrong or captcha rejected; the body is the session"),
            404: UNKNOWN_SESSION,
            422: UNDECODABLE_ID,
            429: _error("Too many push challenges or captcha attempts in this session; wait Retry-After seconds"),
            503: _error("The captcha provider could not be reached"),
        },
    )
    def patch(self, request, session_id):
        return render(api.update_session(Call.from_drf(request), session_id))


class SessionCodeView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []  # the handler (accounts.verification.api) parses the raw body

    @extend_schema(
        tags=TAGS,
        operation_id="requestVerificationCode",
        summary="Send a verification code by SMS or voice",
        description=(
            "Allowed once `allowedToRequestCode` is true. Voice calls are possible only after an SMS. "
            "Waits between sends grow, within a session and across the sessions of one number; see "
            "`nextSms`/`nextCall` in the session. Each code replaces the "
            "previous one. signalserver extension: a server run with the development sender (never in "
            "production mode) sends no message and every code is the operator's fixed development code."
        ),
        parameters=[SESSION_ID, ACCEPT_LANGUAGE, RETRY_AFTER],
        request={"application/json": RequestCodeSerializer},
        responses={
            200: _session("The code was sent; the session shows the next waits"),
            400: BAD_ID,
            404: UNKNOWN_SESSION,
            409: _session("Verified already, or requested information is missing; the body is the session"),
            418: _session("Not possible over this transport (yet), try the other; the body is the session"),
            422: UNDECODABLE_ID,
            429: _session(
                "Wait before sending again (Retry-After), or no more sends over this transport "
                "(no Retry-After); the body is the session"
            ),
            440: OpenApiResponse(SenderFailureSerializer, description="The SMS/voice provider refused delivery"),
        },
    )
    def post(self, request, session_id):
        return render(api.request_code(Call.from_drf(request), session_id))

    @extend_schema(
        tags=TAGS,
        operation_id="submitVerificationCode",
        summary="Submit a received verification code",
        description="A wrong code is not an error: the answer is 200 with `verified: false`.",
        parameters=[SESSION_ID, RETRY_AFTER],
        request={"application/json": SubmitCodeSerializer},
        responses={
            200: _session("The code was checked; `verified` tells whether it was right"),
            400: _error("Session id of the wrong length, or a malformed code"),
            404: UNKNOWN_SESSION,
            409: _session("Verified already, or no code is pending; the body is the session"),
            422: UNDECODABLE_ID,
            429: _session(
                "Wait before the next attempt (Retry-After), or attempts are exhausted "
                "(`nextVerificationAttempt` null: start a new session); the body is the session"
            ),
        },
    )
    def put(self, request, session_id):
        return render(api.submit_code(Call.from_drf(request), session_id))
