"""Rate-limit challenges: `PUT /v1/challenge` and `POST /v1/challenge/push`, thin views
over `accounts.challenges.services`."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.challenges import services as challenges
from accounts.views import UNAUTHORIZED
from signalserver.errors import BadRequest
from signalserver.schema import RETRY_AFTER, challenge_required, rate_limited

MAX_ANSWER_CHARS = 4096
CAPTCHA_TYPES = ("captcha", "recaptcha")  # "recaptcha": clients from before 2024
PUSH_TYPE = "rateLimitPushChallenge"


class ChallengeAnswerSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[*CAPTCHA_TYPES, PUSH_TYPE])
    token = serializers.CharField(max_length=MAX_ANSWER_CHARS, required=False)
    captcha = serializers.CharField(max_length=MAX_ANSWER_CHARS, required=False)
    challenge = serializers.CharField(max_length=64, required=False)


class ChallengeView(APIView):
    @extend_schema(
        tags=["challenges"],
        summary="Answer a rate-limit challenge (the 428 of a send)",
        request=ChallengeAnswerSerializer,
        parameters=[RETRY_AFTER],
        responses={
            200: OpenApiResponse(description="Accepted: the limits it guards are lifted"),
            400: OpenApiResponse(description="Invalid captcha argument (token not issued to this account, no provider)"),
            401: UNAUTHORIZED,
            428: challenge_required("Not accepted: a new token and the challenges that may be tried"),
            429: rate_limited("Too many attempts or lifts"),
            503: OpenApiResponse(description="The captcha provider cannot be reached"),
        },
    )
    def put(self, request):
        answer = ChallengeAnswerSerializer(data=request.data)
        answer.is_valid(raise_exception=True)
        data, account = answer.validated_data, request.auth.account
        if data["type"] == PUSH_TYPE:
            if "challenge" not in data:
                raise BadRequest("challenge is required")
            challenges.answer_push_challenge(account=account, challenge=data["challenge"])
        else:
            if "token" not in data or "captcha" not in data:
                raise BadRequest("token and captcha are required")
            challenges.answer_captcha(
                account=account, token=data["token"], captcha=data["captcha"], remote_ip=request.META.get("REMOTE_ADDR")
            )
        return Response(status=200)


class PushChallengeView(APIView):
    @extend_schema(
        tags=["challenges"],
        summary="Send a rate-limit push challenge to the account's primary device",
        request=None,
        parameters=[RETRY_AFTER],
        responses={
            200: OpenApiResponse(description="Sent (valid five minutes)"),
            401: UNAUTHORIZED,
            404: OpenApiResponse(description="The primary device has no push token"),
            429: rate_limited("Too many push challenges (`pushChallengeAttempt`)"),
        },
    )
    def post(self, request):
        challenges.send_rate_limit_push_challenge(account=request.auth.account)
        return Response(status=200)
