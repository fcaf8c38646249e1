"""Request ids (docs/architecture.md, "Request ids"): every HTTP request, WebSocket and tunnelled
request has an id, returned to the client (`X-Request-Id`) and written on every log line it causes,
in this process or in a Celery worker.

The id lives in a context variable, `current`: asyncio tasks inherit it, and asgiref carries it
to the threads that run sync code (`signalserver.db.in_db_thread`, Django's sync views) and back.
Work that serves many requests at once (a batch of sends or acknowledgements, the hand-off of
committed messages to sockets) runs with none: `detach()`.

The id is the one a trusted proxy sets (when TRUSTED_PROXY_HEADER is set, the server is behind a
proxy, and that proxy's `X-Request-Id` is taken when it is well formed), else a random one. A
socket's id covers its own lines (connecting, delivery, closing); each request tunnelled over it
gets the socket's id followed by `.` and the request's number on the socket, so an operator finds
a socket's requests from its id.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

from django.conf import settings

from signalserver.randomness import random_bytes

HEADER = "X-Request-Id"
_HEADER_NAME = b"x-request-id"
# What we take from a proxy: its generated ids (nginx's 32 hex digits, UUIDs, ...). Never `+` or
# spaces, so no number or free text reaches the logs through it.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_id() -> str:
    """A random id: 16 hex digits (about 1 µs; a counter would tell clients our request rate)."""
    return random_bytes(8).hex()


def well_formed(value) -> str | None:
    return value if isinstance(value, str) and _WELL_FORMED.fullmatch(value) else None


def from_scope(scope) -> str:
    """The id of an HTTP request or WebSocket upgrade: the trusted proxy's, else a new one."""
    if settings.TRUSTED_PROXY_HEADER:
        for name, value in scope.get("headers", ()):
            if name.lower() == _HEADER_NAME:
                taken = well_formed(value.decode("latin-1"))
                if taken is not None:
                    return taken
                break
    return new_id()


def detach() -> None:
    """From here on, the running task (or thread) logs with no request id: for work that serves
    several requests at once (docs/architecture.md, "Request ids")."""
    current.set(None)


class RequestIdMiddleware:
    """ASGI middleware in front of everything: the request's id for everything that runs for it,
    and in the `X-Request-Id` header of an HTTP response. A WebSocket gets its id here too; its
    consumer returns it on the upgrade's answer (`signalserver.websocket`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "websocket":
            token = current.set(from_scope(scope))
            try:
                return await self.app(scope, receive, send)
            finally:
                current.reset(token)
        if kind != "http":
            return await self.app(scope, receive, send)
        request_id = from_scope(scope)
        header = (_HEADER_NAME, request_id.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = current.set(request_id)
        try:
            return await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)


# --- Logging ----------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Puts the current request id, if any, on each record (`request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        if request_id is not None:
            record.request_id = request_id
        return True


# --- Celery: the id travels in the task message's headers, never in its arguments --------------


def add_to_task_headers(headers=None, **_) -> None:
    """`before_task_publish`: a task queued during a request carries the request's id."""
    request_id = current.get()
    if request_id is not None and headers is not None:
        headers["request_id"] = request_id


def take_from_task(task=None, **_) -> None:
    """`task_prerun`: a worker runs the task under the id it was queued with, or none. An eager
    task (tests, the embedded run) runs inside the request, under its id already."""
    if task is not None and not task.request.is_eager:
        current.set(well_formed(getattr(task.request, "request_id", None)))


def forget_after_task(task=None, **_) -> None:
    """`task_postrun`: the worker's own lines between tasks carry no id."""
    if task is not None and not task.request.is_eager:
        current.set(None)
