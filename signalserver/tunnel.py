"""REST requests tunnelled over a WebSocket, answered like HTTP requests.

Hot routes (message sends) are registered here as plain handler functions — the same functions
their DRF views wrap — so a frame costs no Django request (docs/architecture.md §4). Every other path is
dispatched to its Django view through a request built from the frame, so every endpoint works over
the socket with the same validation, services and error mapper as over HTTP. Authentication always
comes from the socket, never from the frame.
"""

from __future__ import annotations

import asyncio
import http
import io
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from signalserver.db import in_db_thread
from django.core.handlers.exception import response_for_exception
from django.http import JsonResponse
from django.core.handlers.wsgi import WSGIRequest
from django.urls import Resolver404, resolve
from rest_framework.response import Response

from signalserver import metrics
from signalserver.auth import TUNNEL_PRINCIPAL
from signalserver.errors import BadRequest, error_response, unavailable_response

logger = logging.getLogger(__name__)

# Upgrade headers a tunnelled request does not inherit.
_HOP_HEADERS = ("connection", "upgrade")
JSON_TYPE = "application/json"
# Pages for browsers, which need sessions, cookies and CSRF checks: not served over sockets.
NOT_TUNNELLED_APPS = ("admin",)


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler function sees it, whether it came over HTTP or a socket."""

    principal: Any  # signalserver.auth.AuthenticatedDevice, or None when anonymous
    headers: dict[str, str]  # lower-case names
    query: dict[str, str]
    body: bytes
    client: str | None = None  # the client's address, for limits per address

    @classmethod
    def from_drf(cls, request) -> Call:
        headers = {name.lower(): value for name, value in request.headers.items()}
        return cls(
            principal=request.auth,
            headers=headers,
            query=request.query_params.dict(),
            body=request.body,
            client=request.META.get("REMOTE_ADDR"),
        )

    def json(self) -> Any:
        """The body as JSON, read as DRF's parser reads it: an empty body is an empty object,
        malformed JSON a 400. Its shape is the caller's to check (a serializer's 422)."""
        if not self.body:
            return {}
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise BadRequest("Malformed JSON") from None


def render(result: tuple) -> Response:
    """A handler's (status, JSON body[, headers]) as a DRF response, for the views that wrap it."""
    return Response(result[1], status=result[0], headers=result[2] if len(result) > 2 else None)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[str, ...] = ()


# (verb, path pattern, handler(call, **path groups) -> (status, JSON-able body or None), route
# label for metrics)
_routes: list[tuple[str, re.Pattern, Callable, str]] = []


def register(verb: str, pattern: str, handler: Callable) -> None:
    """Serve `verb pattern` over sockets by calling `handler` directly (a hot route): a plain
    function runs on a database thread; a coroutine function on the event loop (one that hands its
    database work to a batch, e.g. a send)."""
    _routes.append((verb, re.compile(pattern), handler, route_label(pattern)))


def route_label(pattern: str) -> str:
    """A hot route's pattern as metrics name it, as Django writes the route of the same view:
    each named group becomes `<str:name>` (`/v1/messages/(?P<destination>[^/]+)` is
    `/v1/messages/<str:destination>`)."""
    label, index = [], 0
    while index < len(pattern):
        group = re.match(r"\(\?P<(\w+)>", pattern[index:])
        if group is None:
            label.append(pattern[index])
            index += 1
            continue
        depth, index = 1, index + group.end()
        while depth:  # to the group's closing parenthesis (escapes and classes are not nested here)
            depth += {"(": 1, ")": -1}.get(pattern[index], 0)
            index += 1
        label.append(f"<str:{group[1]}>")
    return "".join(label)


def inherited_headers(upgrade: dict[str, str]) -> dict[str, str]:
    """The upgrade's headers that its tunnelled requests inherit (a socket works this out once)."""
    return {
        name: value
        for name, value in upgrade.items()
        if name not in _HOP_HEADERS and "websocket-" not in name and name != "authorization"
    }


def merge_headers(inherited: dict[str, str], frame_headers) -> dict[str, str]:
    """The `inherited_headers` of the upgrade, overridden by the frame's, except X-Forwarded-For
    (ignored from a frame) and User-Agent (the upgrade's wins). Header strings split at the first
    colon."""
    merged = dict(inherited)
    for line in frame_headers:
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or name in ("x-forwarded-for", "user-agent"):
            continue
        merged[name] = value.strip()
    return merged


async def dispatch(
    *, principal, verb: str, path: str, headers: dict[str, str], body: bytes, client: str, secure: bool = True
) -> Reply:
    """Answer one tunnelled request; never raises. The path is percent-decoded and the query parsed
    as an HTTP server and Django do (invalid UTF-8 in an escape becomes U+FFFD, blank values are
    kept, a repeated name keeps its last value). `secure`: the socket came over TLS (wss), so the
    request is an https one (URLs a view builds from it say so). Counted in the metrics by the
    route pattern that served it."""
    started = time.perf_counter()
    route = metrics.UNMATCHED
    try:
        parts = urlsplit(path)
        route_path = unquote(parts.path)
        for route_verb, pattern, handler, label in _routes:
            if route_verb == verb and (match := pattern.fullmatch(route_path)):
                route = label
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                call = Call(principal=principal, headers=headers, query=query, body=body, client=client)
                if asyncio.iscoroutinefunction(handler):
                    try:
                        reply = json_reply(*await handler(call, **match.groupdict()))
                    except Exception as exc:
                        reply = _error_reply(exc)
                else:
                    reply = await in_db_thread(_call_handler)(handler, call, match.groupdict())
                break
        else:
            route, reply = await _dispatch_to_view(principal, verb, route_path, parts.query, headers, body, client, secure)
    except Exception:
        logger.exception("tunnelled request failed", extra={"route": verb})
        reply = Reply(500)
    metrics.observe_request(metrics.WEBSOCKET, verb, route, reply.status, time.perf_counter() - started)
    return reply


def _call_handler(handler: Callable, call: Call, groups: dict) -> Reply:
    try:
        return json_reply(*handler(call, **groups))
    except Exception as exc:
        return _error_reply(exc)


def _error_reply(exc: Exception) -> Reply:
    """The answer to an error a handler raised, as over HTTP; re-raises one we do not map."""
    mapped = error_response(exc)
    if mapped is None:
        raise exc
    status, body, headers = mapped
    if status == 401:  # as the DRF mapper answers it over HTTP
        headers = {**headers, "WWW-Authenticate": 'Basic realm="signal"'}
    return json_reply(status, body, headers)


NOT_FOUND = Reply(404, b'{"code":404,"message":"Not found"}', (f"Content-Type:{JSON_TYPE}",))


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    lines = [f"{name}:{value}" for name, value in (headers or {}).items()]
    if body is None:
        return Reply(status, b"", tuple(lines))
    lines.append(f"Content-Type:{JSON_TYPE}")
    return Reply(status, orjson.dumps(body), tuple(lines))


async def _dispatch_to_view(principal, verb, path, query, headers, body, client, secure=True) -> tuple[str, Reply]:
    """(the route pattern that served it, the reply)."""
    try:
        match = resolve(path)
    except Resolver404:
        return metrics.UNMATCHED, NOT_FOUND
    if match.app_name in NOT_TUNNELLED_APPS:
        return metrics.UNMATCHED, NOT_FOUND
    route = "/" + match.route if match.route != "^" else metrics.UNMATCHED
    request = _build_request(principal, verb, path, query, headers, body, client, secure)
    if asyncio.iscoroutinefunction(match.func):
        try:
            response = _rendered(await match.func(request, *match.args, **match.kwargs))
        except Exception as exc:
            response = _response_for(request, exc)
    else:
        response = await in_db_thread(_call_view)(match, request)
    response_headers = tuple(
        f"{name}:{value}"
        for name, value in response.items()
        if name.lower() in ("content-type", "retry-after", "etag", "location", "www-authenticate")
    )
    return route, Reply(response.status_code, bytes(response.content), response_headers)


def _call_view(match, request):
    try:
        return _rendered(match.func(request, *match.args, **match.kwargs))
    except Exception as exc:
        return _response_for(request, exc)


def _response_for(request, exc: Exception):
    """What HTTP answers when a view raises: 503 with Retry-After when a dependency is down (as
    signalserver.middleware answers it), else Django's own answer (400 for a bad Host, 404, 403,
    and our JSON 500 with the failure logged)."""
    mapped = unavailable_response(exc)
    if mapped is None:
        return response_for_exception(request, exc)
    status, body, headers = mapped
    return JsonResponse(body, status=status, headers=headers, safe=False)


def _rendered(response):
    """A DRF or template response renders its content lazily: Django's handler does it for HTTP."""
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    return response


def _build_request(principal, verb, path, query, headers, body, client, secure=True) -> WSGIRequest:
    environ = {
        "REQUEST_METHOD": verb,
        "PATH_INFO": path.encode().decode("latin-1"),  # WSGI carries the path's bytes as latin-1
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "REMOTE_ADDR": client,
        "SERVER_NAME": "websocket",
        "SERVER_PORT": "443" if secure else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https" if secure else "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": headers.get("content-type", JSON_TYPE if body else ""),
    }
    for name, value in headers.items():
        if name not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    request = WSGIRequest(environ)
    # The socket authenticates the request; an Authorization header in it is not credentials
    # (it may still be read as data, e.g. the new password of a registration).
    setattr(request, TUNNEL_PRINCIPAL, principal)
    return request


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error response" if status >= 500 else ""
