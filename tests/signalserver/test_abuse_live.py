"""Operator settings reach a separate server process on its next request: an IP range banned here
is refused there before authentication, on REST and on the WebSocket upgrade; a limit lowered here
holds there. The client address comes from the trusted proxy header."""

import httpx
from asgiref.sync import sync_to_async
import pytest
import websockets

from signalserver import operator_settings
from signalserver.models import IpBan
from tests.factories import DeviceFactory, device_auth, override_limit
from tests.live_clients import ChatSocket
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

BANNED = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}  # the proxy appended the last entry
ALLOWED = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}


def ban(network):
    IpBan.objects.create(network=network, reason="test")
    operator_settings.changed()


def unban_all():
    IpBan.objects.all().delete()
    operator_settings.changed()


async def test_banned_ranges_and_lowered_limits_hold_on_another_node_from_its_next_request():
    device = await sync_to_async(DeviceFactory)()
    auth = {"Authorization": device_auth(device)}
    with live_server_process(TRUSTED_PROXY_HEADER="X-Forwarded-For") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            assert (await http.get("/v1/accounts/whoami", headers={**auth, **BANNED})).status_code == 200

            await sync_to_async(ban)("203.0.113.0/24")

            refused = await http.get("/v1/accounts/whoami", headers={**auth, **BANNED})
            assert refused.status_code == 403 and refused.json() == {"code": 403, "message": "Forbidden"}
            assert refused.headers["X-Signal-Timestamp"].isdigit()  # as on every response
            unauthenticated = await http.get("/v1/accounts/account/" + str(device.account.aci), headers=BANNED)
            assert unauthenticated.status_code == 403  # refused before anything else runs
            with pytest.raises(websockets.InvalidStatus) as upgrade:
                await ChatSocket.connect(server.ws_url, auth["Authorization"], headers=BANNED)
            assert upgrade.value.response.status_code == 403

            assert (await http.get("/v1/accounts/whoami", headers={**auth, **ALLOWED})).status_code == 200
            async with await ChatSocket.connect(server.ws_url, auth["Authorization"], headers=ALLOWED) as socket:
                assert await socket.backlog() == []

            await sync_to_async(unban_all)()
            assert (await http.get("/v1/accounts/whoami", headers={**auth, **BANNED})).status_code == 200

            await sync_to_async(override_limit)("allocateDevice", 1, 3600)
            assert (await http.get("/v1/devices/provisioning/code", headers=auth)).status_code == 200
            limited = await http.get("/v1/devices/provisioning/code", headers=auth)
            assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600"
