"""Clients for the privacy tests: people who verify their numbers, register, link devices, log in
and send messages through the real routes and the real WebSocket route, each from an address of
their own (REMOTE_ADDR over HTTP, the connection's peer on the socket)."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from dataclasses import dataclass, field

from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from messaging.envelopes import parse_envelope
from signalserver.asgi import application
from signalserver.wire import b64encode
from tests.crypto import IdentityKeyPair, signed_ec_prekey, signed_kem_prekey
from tests.factories import basic_auth
from tests.messaging.helpers import next_request, response_frame

VERIFICATION_CODE = "424242"  # the development sender's (settings in `verification_settings`)
UNIDENTIFIED_SENDER = 6


def verification_settings(settings) -> None:
    settings.VERIFICATION_SENDER = "development"
    settings.DEV_VERIFICATION_CODE = VERIFICATION_CODE
    settings.CAPTCHA_PROVIDER = "none"


@dataclass
class Person:
    number: str
    ip: str
    aci: uuid.UUID | None = None
    pni: uuid.UUID | None = None
    access_key: bytes = field(default_factory=lambda: os.urandom(16))
    identity: IdentityKeyPair = field(default_factory=IdentityKeyPair)
    pni_identity: IdentityKeyPair = field(default_factory=IdentityKeyPair)
    passwords: dict[int, str] = field(default_factory=dict)  # device id → password
    registration_ids: dict[int, int] = field(default_factory=dict)  # device id → registration id

    def http(self, device_id: int | None = None, *, ip: str | None = None) -> APIClient:
        """An HTTP client from this person's address; with a device's credentials when given."""
        client = APIClient(REMOTE_ADDR=ip or self.ip)
        if device_id is not None:
            client.credentials(HTTP_AUTHORIZATION=self.authorization(device_id))
        return client

    def authorization(self, device_id: int = 1) -> str:
        return basic_auth(f"{self.aci}.{device_id}", self.passwords[device_id])

    # --- verification and registration ------------------------------------------------------

    def verify_number(self) -> str:
        """A verification session for the number, a code sent by SMS and submitted: its id."""
        client = self.http()
        created = client.post("/v1/verification/session", {"number": self.number}, format="json")
        assert created.status_code == 200, created.content
        session = created.json()["id"]
        sent = client.post(f"/v1/verification/session/{session}/code", {"transport": "sms", "client": "android-2021-03"}, format="json")
        assert sent.status_code == 200, sent.content
        checked = client.put(f"/v1/verification/session/{session}/code", {"code": VERIFICATION_CODE}, format="json")
        assert checked.status_code == 200 and checked.json()["verified"], checked.content
        return session

    def register(self) -> Person:
        session = self.verify_number()
        self.passwords[1] = secrets.token_urlsafe(24)
        self.registration_ids[1] = secrets.randbelow(16000) + 1
        body = {
            "sessionId": session,
            "accountAttributes": {
                "fetchesMessages": False,
                "registrationId": self.registration_ids[1],
                "pniRegistrationId": secrets.randbelow(16000) + 1,
                "name": b64encode(os.urandom(40)),
                "capabilities": {"spqr": True, "storage": True},
                "unidentifiedAccessKey": b64encode(self.access_key),
                "unrestrictedUnidentifiedAccess": False,
                "discoverableByPhoneNumber": True,
            },
            "skipDeviceTransfer": True,
            "aciIdentityKey": b64encode(self.identity.public_key),
            "pniIdentityKey": b64encode(self.pni_identity.public_key),
            "aciSignedPreKey": signed_ec_prekey(self.identity, key_id=1),
            "pniSignedPreKey": signed_ec_prekey(self.pni_identity, key_id=2),
            "aciPqLastResortPreKey": signed_kem_prekey(self.identity, key_id=3),
            "pniPqLastResortPreKey": signed_kem_prekey(self.pni_identity, key_id=4),
            "gcmToken": {"gcmRegistrationId": "fcm-" + secrets.token_urlsafe(30)},
        }
        response = self.http().post(
            "/v1/registration", body, format="json",
            HTTP_AUTHORIZATION=basic_auth(self.number, self.passwords[1]), HTTP_X_SIGNAL_AGENT="OWA",
        )
        assert response.status_code == 200, response.content
        self.aci, self.pni = uuid.UUID(response.json()["uuid"]), uuid.UUID(response.json()["pni"])
        return self

    def link_device(self, *, ip: str) -> int:
        """A new device linked with a token from the primary, from another address: its id."""
        code = self.http(1).get("/v1/devices/provisioning/code")
        assert code.status_code == 200, code.content
        password, registration_id = secrets.token_urlsafe(24), secrets.randbelow(16000) + 1
        body = {
            "verificationCode": code.json()["verificationCode"],
            "accountAttributes": {
                "fetchesMessages": False,
                "registrationId": registration_id,
                "pniRegistrationId": secrets.randbelow(16000) + 1,
                "name": b64encode(os.urandom(40)),
                "capabilities": {"spqr": True, "storage": True},
            },
            "aciSignedPreKey": signed_ec_prekey(self.identity, key_id=5),
            "pniSignedPreKey": signed_ec_prekey(self.pni_identity, key_id=6),
            "aciPqLastResortPreKey": signed_kem_prekey(self.identity, key_id=7),
            "pniPqLastResortPreKey": signed_kem_prekey(self.pni_identity, key_id=8),
            "gcmToken": {"gcmRegistrationId": "fcm-" + secrets.token_urlsafe(30)},
        }
        linked = self.http(ip=ip).put("/v1/devices/link", body, format="json", HTTP_AUTHORIZATION=basic_auth(self.number, password))
        assert linked.status_code == 200, linked.content
        device_id = linked.json()["deviceId"]
        self.passwords[device_id], self.registration_ids[device_id] = password, registration_id
        return device_id

    # --- messages -----------------------------------------------------------------------------

    def messages_for(self, content: bytes, *, timestamp: int, sealed: bool = False) -> dict:
        """A PUT /v1/messages body for every device of this person."""
        return {
            "timestamp": timestamp,
            "messages": [
                {
                    "type": UNIDENTIFIED_SENDER if sealed else 1,
                    "destinationDeviceId": device_id,
                    "destinationRegistrationId": registration_id,
                    "content": base64.b64encode(content).decode(),
                }
                for device_id, registration_id in sorted(self.registration_ids.items())
            ],
        }

    def send(self, to: Person, content: bytes, *, timestamp: int) -> None:
        """An identified message from the primary."""
        response = self.http(1).put(f"/v1/messages/{to.aci}", to.messages_for(content, timestamp=timestamp), format="json")
        assert response.status_code == 200, response.content

    def send_sealed(self, to: Person, content: bytes, *, timestamp: int) -> None:
        """A sealed-sender message: no credentials, the recipient's access key."""
        response = self.http().put(
            f"/v1/messages/{to.aci}", to.messages_for(content, timestamp=timestamp, sealed=True), format="json",
            HTTP_UNIDENTIFIED_ACCESS_KEY=base64.b64encode(to.access_key).decode(),
        )
        assert response.status_code == 200, response.content

    def socket(self, device_id: int = 1) -> WebsocketCommunicator:
        """The chat socket of one device, connected from this person's address."""
        ws = WebsocketCommunicator(application, "/v1/websocket/", headers=[(b"authorization", self.authorization(device_id).encode())])
        ws.scope["client"] = (self.ip, 45678)  # the peer address, as the ASGI server reports it
        return ws


async def receive_all(ws: WebsocketCommunicator) -> list:
    """Every message the socket is sent until its queue is empty, each acknowledged: the Envelopes."""
    envelopes = []
    while True:
        request = await next_request(ws, timeout=5)
        if request.path == "/api/v1/queue/empty":
            return envelopes
        assert (request.verb, request.path) == ("PUT", "/api/v1/message"), request
        envelopes.append(parse_envelope(request.body))
        await ws.send_to(bytes_data=response_frame(request.id, 200))


async def next_envelope(ws: WebsocketCommunicator, *, ack: bool = True):
    """The next message the socket is sent (acknowledged unless `ack` is false): its Envelope."""
    request = await next_request(ws, timeout=5)
    assert (request.verb, request.path) == ("PUT", "/api/v1/message"), request
    if ack:
        await ws.send_to(bytes_data=response_frame(request.id, 200))
    return parse_envelope(request.body)
