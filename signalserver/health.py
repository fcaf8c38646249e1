"""Liveness and readiness probes for load balancers and orchestrators."""

import logging

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from signalserver.errors import UNAVAILABLE_RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

_status = inline_serializer("HealthStatus", {"status": serializers.CharField()})


class LiveView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(tags=["health"], responses={200: _status}, summary="The process answers")
    def get(self, request):
        return Response({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("readiness: database unreachable")
        return False


def _redis_ok() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        logger.warning("readiness: redis unreachable")
        return False


class ReadyView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        tags=["health"],
        summary="Database and Redis are reachable",
        responses={
            200: _status,
            503: inline_serializer(
                "HealthUnavailable", {"status": serializers.CharField(), "unavailable": serializers.ListField()}
            ),
        },
    )
    def get(self, request):
        unavailable = []
        if not _database_ok():
            unavailable.append("database")
        if settings.REDIS_URL and not _redis_ok():
            unavailable.append("redis")
        if unavailable:
            headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
            return Response({"status": "unavailable", "unavailable": unavailable}, status=503, headers=headers)
        return Response({"status": "ok"})
