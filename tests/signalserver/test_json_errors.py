"""API clients never get an HTML page, with DEBUG on too (the `make run` default): unknown routes,
wrong methods, server bugs and a refused Host header answer `{"code", "message"}` JSON
(signalserver.middleware.JsonErrorsMiddleware); only the admin keeps Django's debug pages."""

import logging

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.factories import DeviceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.signalserver.failing_urls")]


@pytest.fixture
def debug(settings):
    settings.DEBUG = True


@pytest.fixture
def api():
    """A client that gets the server's answer to an exception rather than the exception itself."""
    return APIClient(raise_request_exception=False)


def assert_json_error(response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": status, "message": message}


def test_with_debug_on_an_unknown_route_is_a_json_404(debug, api):
    assert_json_error(api.get("/v1/no/such/route"), 404, "Not found")


def test_with_debug_on_a_wrong_method_is_a_json_405(debug, api, client_for):
    response = client_for(DeviceFactory()).post("/v1/accounts/whoami")  # DRF's own 405
    assert_json_error(response, 405, "Method not allowed")
    response = api.get("/v1/test/no-methods")  # Django's 405 page, turned to JSON
    assert_json_error(response, 405, "Method not allowed")
    assert response["Allow"] == "OPTIONS"  # the page's headers are kept


@pytest.mark.parametrize("debug_on", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize("path", ["/v1/test/failing-api", "/v1/test/failing-django"])
def test_a_server_bug_is_a_json_500_and_still_logged_with_its_traceback(settings, api, caplog, debug_on, path):
    settings.DEBUG = debug_on
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = api.get(path)
    assert_json_error(response, 500, "Internal server error")
    assert b"Traceback" not in response.content and b"ServerBug" not in response.content
    assert response["X-Signal-Timestamp"]  # headers of the page it replaces are kept
    logged = [record for record in caplog.records if record.name == "django.request"]
    assert len(logged) == 1 and logged[0].exc_info[0].__name__ == "ServerBug"


def test_with_debug_on_a_refused_host_is_a_json_400(debug, api):
    assert_json_error(api.get("/v1/accounts/whoami", HTTP_HOST="not-allowed.example"), 400, "Bad request")


def test_with_debug_on_the_admin_keeps_django_debug_pages(debug, api):
    api.force_login(User.objects.create_superuser("operator", "operator@example.org", "secret"))
    response = api.get("/admin/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Page not found" in response.content and b"DEBUG = True" in response.content
