"""Bodies of the push token endpoints. Older clients also send `webSocketChannel` (FCM)
or `voipRegistrationId` (APNs): unknown fields are ignored."""

from rest_framework import serializers

from push.services import MAX_TOKEN_LENGTH


class FcmTokenSerializer(serializers.Serializer):
    gcmRegistrationId = serializers.CharField(max_length=MAX_TOKEN_LENGTH, allow_blank=False, trim_whitespace=False)


class ApnTokenSerializer(serializers.Serializer):
    apnRegistrationId = serializers.CharField(max_length=MAX_TOKEN_LENGTH, allow_blank=False, trim_whitespace=False)
