"""Cross-cutting HTTP behaviour: health probes, error bodies, headers, the OpenAPI schema."""

import re
import subprocess
import sys

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import DeviceFactory


@pytest.mark.django_db
def test_live_and_ready_answer_ok_with_database_and_redis_up(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_liveness_does_not_wait_for_the_ban_list(monkeypatch):
    """The IP-ban check in front of every request reads the operator settings (database, Redis):
    the probes skip it, so a database outage does not make a healthy process look dead."""
    from channels.testing import HttpCommunicator

    from signalserver import operator_settings
    from signalserver.asgi import application

    async def unavailable():
        raise RuntimeError("the database is down")

    monkeypatch.setattr(operator_settings, "acurrent", unavailable)
    probe = HttpCommunicator(application, "GET", "/health/live", headers=[(b"host", b"localhost")])
    response = await probe.get_response(timeout=5)
    assert response["status"] == 200


@pytest.mark.django_db
def test_ready_names_redis_when_it_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "unavailable": ["redis"]}


@pytest.mark.django_db
def test_every_response_carries_the_signal_timestamp(client):
    for path in ["/health/live", "/v1/accounts/whoami", "/no/such/route"]:
        response = client.get(path)
        assert re.fullmatch(r"\d{13}", response["X-Signal-Timestamp"]), path


@pytest.mark.django_db
def test_unknown_routes_get_a_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": 404, "message": "Not found"}


@pytest.mark.django_db
def test_json_responses_have_a_bare_content_type(client_for):
    response = client_for(DeviceFactory()).get("/v1/accounts/whoami")
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_wrong_method_is_a_json_405(client_for):
    response = client_for(DeviceFactory()).post("/v1/accounts/whoami")
    assert response.status_code == 405
    assert response.json()["code"] == 405


def _api_routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin"):
                continue
            yield from _api_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and hasattr(entry.callback, "cls"):
            yield prefix + str(entry.pattern)


@pytest.mark.django_db
def test_openapi_schema_documents_every_api_endpoint(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    documented = {re.sub(r"\{[^}]+\}", "{}", path) for path in schema["paths"]}
    schema_views = {"v1/openapi.json", "v1/docs", "v1/redoc"}
    missing = []
    for route in _api_routes():
        if route in schema_views:
            continue
        normalized = "/" + re.sub(r"<[^>]+>", "{}", route)
        if normalized not in documented:
            missing.append(normalized)
    assert not missing, f"routes missing from the OpenAPI schema: {missing}"


@pytest.mark.django_db
def test_the_schema_gives_every_answer_the_timestamp_and_every_error_a_json_body(client):
    schema = client.get("/v1/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Signal-Timestamp"]["required"], (method, path, status)
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"], (method, path, status)
            if not path.startswith("/health/"):
                assert "403" in operation["responses"], (method, path)  # a banned address
    keys = schema["paths"]["/v2/keys"]["put"]["responses"]
    assert {"400", "401", "415", "422"} <= set(keys)  # what reading a JSON body with credentials can answer
    assert keys["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Unprocessable")


@pytest.mark.django_db
def test_docs_page_is_served_without_external_assets(client):
    response = client.get("/v1/docs")
    assert response.status_code == 200
    assert b"cdn." not in response.content and b"swagger-ui" in response.content


@pytest.mark.parametrize(
    "env,problem",
    [
        ({"DEBUG": "false", "ALLOWED_HOSTS": "chat.example.org"}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "s" * 50, "DEBUG": "true", "ALLOWED_HOSTS": "chat.example.org"}, "DEBUG is on"),
        ({"SECRET_KEY": "s" * 50, "DEBUG": "false", "ALLOWED_HOSTS": "*"}, "wildcard"),
        (
            {"SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "chat.example.org", "VERIFICATION_SENDER": "development"},
            "development verification sender",
        ),
    ],
)
def test_production_mode_refuses_unsafe_settings(env, problem):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"SIGNALSERVER_ENV": "production", "DJANGO_SETTINGS_MODULE": "signalserver.settings", "PATH": "/usr/bin", **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert problem in result.stderr


def test_production_mode_starts_with_safe_settings():
    env = {"SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "chat.example.org", "SIGNALSERVER_ENV": "production", "QUEUE_KEYS": "1:" + "A" * 43 + "="}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"DJANGO_SETTINGS_MODULE": "signalserver.settings", "PATH": "/usr/bin", **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
