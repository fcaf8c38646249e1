import pytest
from rest_framework.test import APIClient

from tests.factories import device_auth


@pytest.fixture
def client():
    """An API client without credentials."""
    return APIClient()


@pytest.fixture
def client_for():
    """`client_for(device)`: an API client carrying that device's Basic credentials."""

    def make(device, password=None):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=device_auth(device, *([password] if password else [])))
        return api

    return make


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Every test starts with full rate-limit buckets and reads the operator settings afresh (the
    database of the previous test was rolled back under this process's copy)."""
    from signalserver import operator_settings, ratelimit

    ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
    operator_settings.forget()
    yield
    operator_settings.forget()
