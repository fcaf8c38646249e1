"""Long polls: wait on the event loop until something happens or a timeout passes.

Sync views share one thread under ASGI, so a request that waits must do it in an async view. The
waiter joins a channel-layer group (so the event may come from any web node), then checks the
database once, and only then sleeps: an event that landed before it joined is not missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from signalserver.auth import TUNNEL_PRINCIPAL, AccountBanned, InvalidCredentials, authenticate_authorization


async def wait_for_group_event(group: str, ready: Callable[[], bool], seconds: float) -> None:
    """Return once `ready()` (a sync database check, run in the request thread) is true or a message reaches `group`, or
    after `seconds`."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    try:
        if await sync_to_async(ready)():
            return
        try:
            await asyncio.wait_for(layer.receive(channel), timeout=seconds)
        except TimeoutError:
            pass
    finally:
        await layer.group_discard(group, channel)


def request_principal(request):
    """The device a (possibly tunnelled) Django request authenticates as, or None; the DRF view
    that answers afterwards gives the 401."""
    tunnelled = getattr(request, TUNNEL_PRINCIPAL, False)
    if tunnelled is not False:
        return tunnelled
    try:
        return authenticate_authorization(request.headers.get("Authorization"))
    except (InvalidCredentials, AccountBanned):
        return None
