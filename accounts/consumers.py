"""The provisioning socket `/v1/websocket/provisioning/`: the transport that carries the
primary's encrypted ProvisionEnvelope to a device being linked.

The socket gets a random address (`PUT /v1/address`); the primary sends the envelope to that
address with `PUT /v1/provisioning/{address}` through any web node; the socket forwards it
(`PUT /v1/message`) and closes once the device has answered.
"""

from __future__ import annotations

import asyncio
import secrets

from channels.layers import get_channel_layer

from messaging.presence import get_presence
from signalserver.proto.provisioning_pb2 import ProvisioningAddress
from signalserver.websocket import CLOSE_NORMAL, FramedConsumer
from signalserver.wire import b64encode_url

LIFETIME_SECONDS = 90  # closed after this regardless
IDLE_TIMEOUT_SECONDS = 60
ANSWER_TIMEOUT_SECONDS = 10  # for the device to acknowledge the envelope before we close
KEEPALIVE_PATH = "/v1/keepalive/provisioning"


def provisioning_key(address: str) -> str:
    return f"provisioning:{address}"


async def deliver_provisioning_message(address: str, envelope: bytes) -> bool:
    """Hand an envelope to the socket listening on `address`; False when nobody is."""
    [channel] = get_presence().lookup_keys([provisioning_key(address)])
    if channel is None:
        return False
    await get_channel_layer().send(channel, {"type": "provisioning.message", "body": envelope})
    return True


class ProvisioningConsumer(FramedConsumer):
    async def connect(self):
        self.address = b64encode_url(secrets.token_bytes(16), padded=True)
        self.message_request_id: int | None = None
        await self.accept_with_timestamp()
        await get_presence().claim_key(provisioning_key(self.address), self.channel_name, LIFETIME_SECONDS)
        await self.send_request("/v1/address", ProvisioningAddress(address=self.address).SerializeToString())
        self.spawn(self._close_after(LIFETIME_SECONDS))
        self.spawn(self.close_after_idle(IDLE_TIMEOUT_SECONDS, 5))

    async def disconnect(self, code):
        await get_presence().release_key(provisioning_key(self.address), self.channel_name)

    async def handle_request(self, request):
        if request.verb == "GET" and request.path == KEEPALIVE_PATH:
            return 200, b"", ()
        return await super().handle_request(request)

    async def handle_response(self, response):
        if self.message_request_id is not None and response.id == self.message_request_id:
            await self.close(code=CLOSE_NORMAL)
            return True
        return False

    async def provisioning_message(self, event):
        # One envelope per address: the address stops accepting once one was delivered.
        await get_presence().release_key(provisioning_key(self.address), self.channel_name)
        self.message_request_id = await self.send_request("/v1/message", event["body"])
        self.spawn(self._close_after(ANSWER_TIMEOUT_SECONDS))

    async def _close_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.close(code=CLOSE_NORMAL)
