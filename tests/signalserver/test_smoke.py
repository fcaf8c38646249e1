import pytest

from tests.factories import DeviceFactory


@pytest.mark.django_db
def test_device_factory_creates_a_primary_device():
    device = DeviceFactory()
    assert device.device_id == 1
    assert device.account.pni is not None
