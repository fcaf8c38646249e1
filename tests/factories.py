"""Test data (factory_boy). Devices get a known password: `DeviceFactory.password`."""

import base64
import os
import uuid

import factory

from accounts.models import Account, Device, PhoneNumberIdentifier
from signalserver.auth import SaltedTokenHash

DEFAULT_PASSWORD = "correct-horse-battery-staple-0123"


def _number(n: int) -> str:
    return f"+1415555{n % 10000:04d}"


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    aci = factory.LazyFunction(uuid.uuid4)
    number = factory.Sequence(_number)
    pni = factory.LazyAttribute(lambda o: PhoneNumberIdentifier.objects.get_or_create(number=o.number)[0].pni)
    unidentified_access_key = factory.LazyFunction(lambda: os.urandom(16))


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device
        skip_postgeneration_save = True

    class Params:
        password = DEFAULT_PASSWORD

    account = factory.SubFactory(AccountFactory)
    device_id = 1
    registration_id = factory.Sequence(lambda n: n % 16000 + 1)
    pni_registration_id = factory.Sequence(lambda n: (n + 7) % 16000 + 1)
    auth_token_hash = factory.LazyAttribute(lambda o: o.credentials.hash)
    auth_salt = factory.LazyAttribute(lambda o: o.credentials.salt)
    credentials = factory.LazyAttribute(lambda o: SaltedTokenHash.generate(o.password))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        kwargs.pop("credentials", None)
        return super()._create(model_class, *args, **kwargs)


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def device_auth(device: Device, password: str = DEFAULT_PASSWORD) -> str:
    """The Authorization header of a device's credentials."""
    return basic_auth(f"{device.account_id}.{device.device_id}", password)


def override_limit(limiter: str, bucket_size: int, permit_seconds: float, account=None):
    """What an operator does in the admin: replace a limiter's bucket (for everyone, or one account)."""
    from signalserver import operator_settings
    from signalserver.models import LimitOverride

    override = LimitOverride.objects.create(
        limiter=limiter, account=account, bucket_size=bucket_size, permit_seconds=permit_seconds
    )
    operator_settings.changed()
    return override
