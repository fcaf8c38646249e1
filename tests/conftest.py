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
