"""Sending many notifications at once from a worker process: the gateways (`push.gateways`) live on
one event loop per process, in a thread of its own, created on first use (after a worker forks), so
their HTTP/2 connections and OAuth token are reused by every task of the process, and a batch's
notifications go out concurrently, never one blocking request each.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from django.conf import settings

from push import gateways, payloads

logger = logging.getLogger(__name__)

BATCH_TIMEOUT_SECONDS = 60

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_gateways: dict[str, object] | None = None


def configured_platforms() -> set[str]:
    """The platforms push is configured for ("apn", "fcm"); empty: push is off."""
    platforms = set()
    if settings.APNS_KEY_FILE and settings.APNS_KEY_ID and settings.APNS_TEAM_ID and settings.APNS_TOPIC:
        platforms.add("apn")
    if settings.FCM_CREDENTIALS_FILE:
        platforms.add("fcm")
    return platforms


def send_all(items: list[tuple[str, str, payloads.Notification]]) -> list[gateways.PushOutcome]:
    """Send (platform, token, notification) items concurrently; one outcome each, in order. A
    platform that is not configured fails its items."""
    if not items:
        return []
    future = asyncio.run_coroutine_threadsafe(_send_all(items), _event_loop())
    return future.result(BATCH_TIMEOUT_SECONDS)


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="push", daemon=True).start()
        return _loop


async def _send_all(items) -> list[gateways.PushOutcome]:
    available = _gateways_of_this_process()

    async def send(platform: str, token: str, notification: payloads.Notification) -> gateways.PushOutcome:
        gateway = available.get(platform)
        if gateway is None:
            return gateways.PushOutcome(gateways.FAILED, reason="not configured")
        try:
            return await gateway.send(token, notification)
        except Exception:
            logger.exception("push gateway failed", extra={"platform": platform})
            return gateways.PushOutcome(gateways.RETRY, reason="error")

    return list(await asyncio.gather(*(send(*item) for item in items)))


def forget_gateways() -> None:
    """Build the gateways from the settings again at the next send (tests change the settings)."""
    global _gateways
    _gateways = None


def _gateways_of_this_process() -> dict[str, object]:
    global _gateways
    if _gateways is None:
        _gateways = {}
        platforms = configured_platforms()
        if "apn" in platforms:
            with open(settings.APNS_KEY_FILE) as key_file:
                key = key_file.read()
            _gateways["apn"] = gateways.ApnsGateway(
                key=key,
                key_id=settings.APNS_KEY_ID,
                team_id=settings.APNS_TEAM_ID,
                topic=settings.APNS_TOPIC,
                sandbox=settings.APNS_SANDBOX,
                server=settings.APNS_SERVER,
                ca_file=settings.APNS_CA_FILE,
            )
        if "fcm" in platforms:
            _gateways["fcm"] = gateways.FcmGateway(
                credentials_file=settings.FCM_CREDENTIALS_FILE,
                project_id=settings.FCM_PROJECT_ID,
                api_url=settings.FCM_API_URL,
            )
    return _gateways
