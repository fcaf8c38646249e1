"""Whatever a client sends, the answer is a 4xx JSON error, never a 500."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from keys.models import Identity, IdentityKey
from messaging.certificates import ensure_development_keys
from tests.crypto import IdentityKeyPair
from tests.factories import DeviceFactory, device_auth

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=20,
)
path_values = st.sampled_from(["x", "0", "-1", "%00", "PNI:", "a" * 300, "00000000-0000-0000-0000-000000000000"]) | st.text(
    alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=30
)


def _operations():
    """(method, path template) for every operation in our OpenAPI schema."""
    client = APIClient()
    schema = json.loads(client.get("/v1/openapi.json").content)
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "put", "post", "patch", "delete"}:
                yield method, path


@pytest.fixture(scope="module")
def operations(django_db_blocker):
    with django_db_blocker.unblock():
        return sorted(_operations())


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_requests_never_get_a_server_error(operations, data):
    method, template = data.draw(st.sampled_from(operations))
    path = re.sub(r"\{[^}]+\}", lambda _: data.draw(path_values), template)
    ensure_development_keys()  # as every server run has them (503 without: an operator's mistake)
    client = APIClient()
    if data.draw(st.booleans()):
        device = DeviceFactory()
        # A registered account always has its identity keys.
        IdentityKey.objects.create(account=device.account, identity=Identity.ACI, public_key=IdentityKeyPair().public_key)
        client.credentials(HTTP_AUTHORIZATION=device_auth(device))
    body = data.draw(json_values)
    response = client.generic(method.upper(), path, json.dumps(body), content_type="application/json")
    assert response.status_code < 500, (method, path, body, response.content[:300])
    if response.content:
        assert response["Content-Type"] == "application/json"
