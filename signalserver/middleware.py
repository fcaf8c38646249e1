"""HTTP middleware shared by every route: the request log line, `X-Signal-Timestamp`, 503
rather than 500 when a view fails because PostgreSQL or Redis cannot be reached, and JSON (never
HTML) error answers outside the admin."""

import json
import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

from signalserver import metrics
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
    """Every response carries the server time in ms; clients use it for clock skew."""

    def process(self, request, response):
        response["X-Signal-Timestamp"] = str(now_millis())
        return response


class RequestLogMiddleware(_Middleware):
    """One line per request and its count in the metrics: method, route pattern (never the raw
    path), status and duration."""

    def __call__(self, request):
        request._log_started = time.perf_counter()
        return super().__call__(request)

    def process(self, request, response):
        seconds = time.perf_counter() - request._log_started
        match = getattr(request, "resolver_match", None)
        # The catch-all route (`^`, the JSON 404) serves paths no route serves.
        route = "/" + match.route if match is not None and match.route != "^" else metrics.UNMATCHED
        metrics.observe_request(metrics.HTTP, request.method, route, response.status_code, seconds)
        logger.info(
            "request",
            extra={"method": request.method, "route": route, "status": response.status_code, "duration_ms": round(seconds * 1000, 2)},
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


# --- The API's middleware ------------------------------------------------------------------------

# Under ASGI a Django middleware (MiddlewareMixin) runs each of its hooks on a thread of its own:
# with the list in settings, an API request took about 15 thread hand-offs before and after its
# view, a third of its CPU (docs/performance.md, "Prekey bundles over sockets"). API requests
# therefore go through a shorter list (`api_middleware`, signalserver.asgi): without what only
# browser pages (the admin) need, since API clients authenticate with device credentials and carry
# no session or CSRF cookie; and with the middleware that only computes headers or redirects run
# on the event loop. The admin keeps the list in settings.
PAGE_MIDDLEWARE = frozenset(
    {
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)


class _OnTheLoop:
    """Runs a Django middleware's hooks on the event loop: for hooks that do no I/O."""

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        return self.process_response(request, response) if hasattr(self, "process_response") else response


class LoopSecurityMiddleware(_OnTheLoop, SecurityMiddleware):
    """Django's SecurityMiddleware (headers, HTTPS redirect) on the event loop."""


class LoopCommonMiddleware(_OnTheLoop, CommonMiddleware):
    """Django's CommonMiddleware (Host and user-agent checks, Content-Length) on the event loop."""


class LoopXFrameOptionsMiddleware(_OnTheLoop, XFrameOptionsMiddleware):
    """Django's XFrameOptionsMiddleware (one header) on the event loop."""


ON_THE_LOOP = {
    "django.middleware.security.SecurityMiddleware": "signalserver.middleware.LoopSecurityMiddleware",
    "django.middleware.common.CommonMiddleware": "signalserver.middleware.LoopCommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "signalserver.middleware.LoopXFrameOptionsMiddleware",
}


def api_middleware(middleware: list[str]) -> list[str]:
    """The middleware of API requests, from the list in settings (see PAGE_MIDDLEWARE)."""
    return [ON_THE_LOOP.get(path, path) for path in middleware if path not in PAGE_MIDDLEWARE]
