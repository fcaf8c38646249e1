"""Every state change of accounts and devices (registration and verification have their own
service modules, `accounts.registration` and `accounts.verification`)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.models import Account

logger = logging.getLogger(__name__)

CLOSE_CREDENTIALS_CHANGED = 4401


def device_group(aci, device_id: int) -> str:
    """The channel-layer group every live socket of one device joins."""
    return f"device.{aci}.{device_id}"


def disconnect_devices(*, aci, device_ids, code: int = CLOSE_CREDENTIALS_CHANGED) -> None:
    """Close the live sockets of these devices, once the current transaction commits."""
    device_ids = list(device_ids)

    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        for device_id in device_ids:
            async_to_sync(layer.group_send)(device_group(aci, device_id), {"type": "device.disconnect", "code": code})

    transaction.on_commit(send)


