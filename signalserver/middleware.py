"""HTTP middleware shared by every route: the request log line, `X-Signal-Timestamp`, 503
rather than 500 when a view fails because PostgreSQL or Redis cannot be reached, and JSON (never
HTML) error answers outside the admin."""

import json
import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import JsonResponse

from signalserver.errors import unavailable_response

logger = logging.getLogger("signalserver.request")


def now_millis() -> int:
    return time.time_ns() // 1_000_000


class _Middleware:
    """Base for middleware that works in both the sync and the async stack without thread hops."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.process(request, self.get_response(request))

    async def _acall(self, request):
        return self.process(request, await self.get_response(request))

    def process(self, request, response):
        return response


class SignalTimestampMiddleware(_Middleware):
    """Every response carries the server time in ms (spec §1.3); clients use it for clock skew."""

    def process(self, request, response):
        response["X-Signal-Timestamp"] = str(now_millis())
        return response


class RequestLogMiddleware(_Middleware):
    """One line per request: method, route pattern (never the raw path), status and duration."""

    def __call__(self, request):
        request._log_started = time.perf_counter()
        return super().__call__(request)

    def process(self, request, response):
        match = getattr(request, "resolver_match", None)
        logger.info(
            "request",
            extra={
                "method": request.method,
                "route": "/" + match.route if match else "unmatched",
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - request._log_started) * 1000, 2),
            },
        )
        return response


class DependencyUnavailableMiddleware(_Middleware):
    """DRF views answer an outage through the error mapper; this gives the other views (admin,
    schema, plain Django views) the same 503 with Retry-After instead of a 500 and a traceback."""

    def process_exception(self, request, exception):
        mapped = unavailable_response(exception)
        if mapped is None:
            return None
        status, body, headers = mapped
        return JsonResponse(body, status=status, headers=headers)


class JsonErrorsMiddleware(_Middleware):
    """API clients never get an HTML page: the body of an error answer that is not JSON (Django's
    debug pages with DEBUG on, its 403 and 405 pages, a refused Host header) becomes
    `{"code", "message"}`, on every route but the admin's, which keeps Django's pages. The response
    itself is kept (status, headers, cookies, and Django's note that it has logged it)."""

    def process(self, request, response):
        if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
            return response
        match = getattr(request, "resolver_match", None)
        if match is not None and "admin" in match.namespaces:
            return response
        body = json.dumps({"code": response.status_code, "message": response.reason_phrase.capitalize()}).encode()
        if response.streaming:
            response.streaming_content = [body]
        else:
            response.content = body
        response["Content-Type"] = "application/json"
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(body))
        return response
