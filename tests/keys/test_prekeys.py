"""Prekey upload, counting, checking and fetching, with real keys and signatures."""

import base64
import hashlib
import os
import threading
import uuid

import pytest
import xeddsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from django.db import connection
from rest_framework.test import APIClient

from keys.models import Identity, IdentityKey, KemPreKey, LastResortKey, OneTimePreKey, SignedPreKey
from signalserver.wire import b64encode, b64encode_unpadded
from tests.crypto import IdentityKeyPair, kem_public_key, signed_ec_prekey, signed_kem_prekey
from tests.factories import DeviceFactory, device_auth


class KeyPair:
    """A Curve25519 key pair (for one-time and signed prekeys whose private half the test keeps)."""

    def __init__(self):
        self.private = xeddsa.seed_to_priv(os.urandom(32))
        self.public = b"\x05" + xeddsa.priv_to_curve25519_pub(self.private)

    def agree(self, public_key: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(self.private).exchange(X25519PublicKey.from_public_bytes(public_key[1:]))


def xeddsa_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    edwards = xeddsa.curve25519_pub_to_ed25519_pub(public_key[1:], bool(signature[63] >> 7))
    return xeddsa.ed25519_verify(signature[:63] + bytes([signature[63] & 0x7F]), edwards, message)


class Owner:
    """An account whose identity keys the test holds, as registration leaves it."""

    def __init__(self, devices=1):
        self.aci, self.pni = IdentityKeyPair(), IdentityKeyPair()
        self.primary = DeviceFactory()
        self.account = self.primary.account
        self.devices = [self.primary] + [DeviceFactory(account=self.account, device_id=i) for i in range(2, devices + 1)]
        IdentityKey.objects.create(account=self.account, identity=Identity.ACI, public_key=self.aci.public_key)
        IdentityKey.objects.create(account=self.account, identity=Identity.PNI, public_key=self.pni.public_key)

    def client(self, device=None):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=device_auth(device or self.primary))
        return api

    def upload(self, device=None, identity="aci", **body):
        return self.client(device).put(f"/v2/keys?identity={identity}", body, format="json")

    def full_upload(self, device=None, *, ec=3, kem=3, identity="aci"):
        signer = self.aci if identity == "aci" else self.pni
        return self.upload(
            device,
            identity,
            preKeys=[{"keyId": 100 + i, "publicKey": b64encode(KeyPair().public)} for i in range(ec)],
            signedPreKey=signed_ec_prekey(signer, key_id=7),
            pqPreKeys=[signed_kem_prekey(signer, key_id=200 + i) for i in range(kem)],
            pqLastResortPreKey=signed_kem_prekey(signer, key_id=999),
        )


@pytest.fixture
def owner(db):
    return Owner()


def counts(owner, identity="aci", device=None):
    return owner.client(device).get(f"/v2/keys?identity={identity}").json()


# --- Upload --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_stores_every_kind_of_key_and_counts_the_one_time_pools(owner):
    response = owner.full_upload(ec=5, kem=4)

    assert response.status_code == 204
    assert counts(owner) == {"count": 5, "pqCount": 4}
    assert SignedPreKey.objects.get(device=owner.primary, identity=Identity.ACI).key_id == 7
    assert LastResortKey.objects.get(device=owner.primary, identity=Identity.ACI).key_id == 999
    assert counts(owner, "PNI") == {"count": 0, "pqCount": 0}


@pytest.mark.django_db
def test_a_non_empty_list_replaces_its_pool_and_an_empty_or_absent_one_keeps_it(owner):
    owner.full_upload(ec=5, kem=4)

    owner.upload(preKeys=[{"keyId": 1, "publicKey": b64encode(KeyPair().public)}], pqPreKeys=[])
    assert counts(owner) == {"count": 1, "pqCount": 4}
    owner.upload()
    assert counts(owner) == {"count": 1, "pqCount": 4}
    assert set(OneTimePreKey.objects.values_list("key_id", flat=True)) == {1}


@pytest.mark.django_db
def test_pni_keys_are_signed_by_the_pni_identity_key(owner):
    assert owner.full_upload(identity="pni").status_code == 204
    assert counts(owner, "pni") == {"count": 3, "pqCount": 3}
    wrong = owner.upload(identity="pni", signedPreKey=signed_ec_prekey(owner.aci))
    assert wrong.status_code == 422


@pytest.mark.parametrize(
    "field", ["signedPreKey", "pqLastResortPreKey", "pqPreKeys"],
)
@pytest.mark.django_db
def test_one_bad_signature_refuses_the_whole_upload(owner, field):
    owner.full_upload(ec=2, kem=2)
    before = (list(OneTimePreKey.objects.values_list("public_key", flat=True)), counts(owner))
    stranger = IdentityKeyPair()
    body = {
        "preKeys": [{"keyId": 1, "publicKey": b64encode(KeyPair().public)}],
        "signedPreKey": signed_ec_prekey(owner.aci, key_id=8),
        "pqPreKeys": [signed_kem_prekey(owner.aci, key_id=300)],
        "pqLastResortPreKey": signed_kem_prekey(owner.aci, key_id=301),
    }
    body[field] = [signed_kem_prekey(stranger)] if field == "pqPreKeys" else (
        signed_ec_prekey(stranger) if field == "signedPreKey" else signed_kem_prekey(stranger)
    )

    response = owner.upload(**body)

    assert response.status_code == 422
    assert (list(OneTimePreKey.objects.values_list("public_key", flat=True)), counts(owner)) == before
    assert SignedPreKey.objects.get(device=owner.primary, identity=Identity.ACI).key_id == 7


@pytest.mark.django_db
def test_a_signature_over_the_key_without_its_type_byte_is_refused(owner):
    key = KeyPair().public
    body = {"keyId": 1, "publicKey": b64encode(key), "signature": b64encode_unpadded(owner.aci.sign(key[1:]))}

    assert owner.upload(signedPreKey=body).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"preKeys": [{"keyId": i, "publicKey": b64encode(b"\x05" + os.urandom(32))} for i in range(101)]},
        {"preKeys": [{"keyId": 1, "publicKey": b64encode(os.urandom(33))[:-1] + "A"}]},
        {"preKeys": [{"keyId": 1, "publicKey": b64encode(b"\x06" + os.urandom(32))}]},
        {"preKeys": [{"keyId": 1, "publicKey": b64encode(b"\x05" + os.urandom(33))}]},
        {"preKeys": [{"keyId": -1, "publicKey": b64encode(b"\x05" + os.urandom(32))}]},
        {"preKeys": [{"keyId": 1, "publicKey": b64encode(b"\x05" + os.urandom(32))}] * 2},
        {"pqLastResortPreKey": {"keyId": 1, "publicKey": b64encode(b"\x08" + os.urandom(1567)), "signature": b64encode(os.urandom(64))}},
        {"pqLastResortPreKey": {"keyId": 1, "publicKey": b64encode(b"\x05" + os.urandom(1568)), "signature": b64encode(os.urandom(64))}},
        {"signedPreKey": {"keyId": 1, "publicKey": b64encode(b"\x05" + os.urandom(32)), "signature": b64encode(os.urandom(63))}},
    ],
)
@pytest.mark.django_db
def test_malformed_keys_and_lists_are_422(owner, body):
    assert owner.upload(**body).status_code == 422
    assert not OneTimePreKey.objects.exists()


@pytest.mark.parametrize("field", ["preKeys", "pqPreKeys"])
@pytest.mark.django_db
def test_a_null_entry_in_a_key_list_is_422_and_nothing_is_stored(owner, field):
    response = owner.upload(**{field: [None]})

    assert response.status_code == 422
    assert response.json()["errors"]
    assert not OneTimePreKey.objects.exists() and not KemPreKey.objects.exists()
    assert owner.upload(preKeys=None, pqPreKeys=None).status_code == 204  # a null list keeps the pool


@pytest.mark.django_db
def test_pni_is_400_for_an_account_without_a_number_and_identity_must_be_known(owner):
    owner.account.pni = None
    owner.account.save(update_fields=["pni"])

    assert owner.upload(identity="pni").status_code == 400
    assert owner.client().get("/v2/keys?identity=pni").status_code == 400
    assert owner.client().get("/v2/keys?identity=xyz").status_code == 422


@pytest.mark.django_db
def test_key_endpoints_need_credentials(client):
    assert client.put("/v2/keys", {}, format="json").status_code == 401
    assert client.get("/v2/keys").status_code == 401
    assert client.post("/v2/keys/check", {}, format="json").status_code == 401


# --- Repeated-use key check and the retired signed-prekey upload ---------------------------------------


def digest(owner, identity_key, signed_id, signed_key, last_id, last_key):
    return base64.b64encode(
        hashlib.sha256(identity_key + signed_id.to_bytes(8, "big") + signed_key + last_id.to_bytes(8, "big") + last_key).digest()
    ).decode()


@pytest.mark.django_db
def test_the_keys_check_matches_the_stored_repeated_use_keys_and_409s_otherwise(owner):
    owner.full_upload()
    signed = SignedPreKey.objects.get(device=owner.primary, identity=Identity.ACI)
    last = LastResortKey.objects.get(device=owner.primary, identity=Identity.ACI)
    good = digest(owner, owner.aci.public_key, signed.key_id, bytes(signed.public_key), last.key_id, bytes(last.public_key))
    bad = digest(owner, owner.aci.public_key, signed.key_id + 1, bytes(signed.public_key), last.key_id, bytes(last.public_key))

    assert owner.client().post("/v2/keys/check", {"identityType": "aci", "digest": good}, format="json").status_code == 200
    assert owner.client().post("/v2/keys/check", {"identityType": "aci", "digest": bad}, format="json").status_code == 409
    missing = owner.client().post("/v2/keys/check", {"identityType": "pni", "digest": good}, format="json")
    assert missing.status_code == 409
    short = owner.client().post("/v2/keys/check", {"digest": base64.b64encode(b"x" * 31).decode()}, format="json")
    assert short.status_code == 422


@pytest.mark.django_db
def test_the_retired_signed_prekey_upload_still_works(owner):
    response = owner.client().put("/v2/keys/signed", signed_ec_prekey(owner.aci, key_id=42), format="json")

    assert response.status_code == 204
    assert SignedPreKey.objects.get(device=owner.primary, identity=Identity.ACI).key_id == 42
    bad = owner.client().put("/v2/keys/signed", signed_ec_prekey(IdentityKeyPair()), format="json")
    assert bad.status_code == 422


# --- Fetching bundles ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fetched_bundle_lets_an_independent_x3dh_agree_with_the_owner(owner):
    ec_pairs = [KeyPair() for _ in range(2)]
    signed_pair = KeyPair()
    signed = {"keyId": 7, "publicKey": b64encode(signed_pair.public), "signature": b64encode_unpadded(owner.aci.sign(signed_pair.public))}
    owner.upload(
        preKeys=[{"keyId": 10 + i, "publicKey": b64encode(pair.public)} for i, pair in enumerate(ec_pairs)],
        signedPreKey=signed,
        pqPreKeys=[signed_kem_prekey(owner.aci, key_id=50)],
        pqLastResortPreKey=signed_kem_prekey(owner.aci, key_id=51),
    )
    fetcher = DeviceFactory()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=device_auth(fetcher))

    response = api.get(f"/v2/keys/{owner.account.aci}/1")

    assert response.status_code == 200
    bundle = response.json()
    identity_key = base64.b64decode(bundle["identityKey"])
    [device] = bundle["devices"]
    assert identity_key == owner.aci.public_key
    assert (device["deviceId"], device["registrationId"]) == (1, owner.primary.registration_id)
    signed_key = base64.b64decode(device["signedPreKey"]["publicKey"])
    assert xeddsa_verify(identity_key, signed_key, base64.b64decode(device["signedPreKey"]["signature"] + "=="))
    pq_key = base64.b64decode(device["pqPreKey"]["publicKey"])
    assert device["pqPreKey"]["keyId"] == 50 and len(pq_key) == 1569
    assert xeddsa_verify(identity_key, pq_key, base64.b64decode(device["pqPreKey"]["signature"] + "=="))
    assert device["preKey"]["keyId"] == 10  # lowest id first
    one_time_key = base64.b64decode(device["preKey"]["publicKey"])

    # X3DH: the fetcher with its identity key and an ephemeral key, the owner with its private keys.
    fetcher_identity, ephemeral = KeyPair(), KeyPair()
    sender_secret = (
        fetcher_identity.agree(signed_key) + ephemeral.agree(identity_key) + ephemeral.agree(signed_key) + ephemeral.agree(one_time_key)
    )
    owner_identity = X25519PrivateKey.from_private_bytes(owner.aci.private_key)
    receiver_secret = (
        signed_pair.agree(fetcher_identity.public)
        + owner_identity.exchange(X25519PublicKey.from_public_bytes(ephemeral.public[1:]))
        + signed_pair.agree(ephemeral.public)
        + ec_pairs[0].agree(ephemeral.public)
    )
    assert sender_secret == receiver_secret


@pytest.mark.django_db
def test_each_one_time_key_goes_out_once_then_the_last_resort_key_stays(owner, client_for):
    owner.full_upload(ec=2, kem=1)
    api = client_for(DeviceFactory())

    bundles = [api.get(f"/v2/keys/{owner.account.aci}/1").json()["devices"][0] for _ in range(4)]

    assert [b["preKey"]["keyId"] if b["preKey"] else None for b in bundles] == [100, 101, None, None]
    assert [b["pqPreKey"]["keyId"] for b in bundles] == [200, 999, 999, 999]
    assert counts(owner) == {"count": 0, "pqCount": 0}
    assert LastResortKey.objects.filter(device=owner.primary).exists()


@pytest.mark.django_db
def test_all_devices_and_pni_targets(db, client_for):
    owner = Owner(devices=3)
    owner.full_upload(owner.devices[0])
    owner.full_upload(owner.devices[2])  # device 2 has no keys: skipped
    owner.full_upload(owner.devices[0], identity="pni")
    api = client_for(DeviceFactory())

    everything = api.get(f"/v2/keys/{owner.account.aci}/*").json()
    by_pni = api.get(f"/v2/keys/PNI:{owner.account.pni}/1").json()

    assert [d["deviceId"] for d in everything["devices"]] == [1, 3]
    assert base64.b64decode(by_pni["identityKey"]) == owner.pni.public_key
    assert by_pni["devices"][0]["registrationId"] == owner.primary.pni_registration_id
    assert api.get(f"/v2/keys/PNI:{owner.account.pni}/3").status_code == 404  # no PNI keys there


@pytest.mark.django_db
def test_unknown_targets_are_404_for_callers_and_401_for_anonymous_fetchers(owner, client, client_for):
    owner.full_upload()
    key = base64.b64encode(bytes(owner.account.unidentified_access_key)).decode()
    api = client_for(DeviceFactory())

    assert api.get(f"/v2/keys/{uuid.uuid4()}/1").status_code == 404
    assert api.get(f"/v2/keys/{owner.account.aci}/5").status_code == 404
    assert client.get(f"/v2/keys/{uuid.uuid4()}/1", HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 401
    assert client.get(f"/v2/keys/{owner.account.aci}/5", HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 401
    assert api.get(f"/v2/keys/{owner.account.aci}/x").status_code == 422
    assert api.get(f"/v2/keys/not-a-uuid/1").status_code == 422


@pytest.mark.django_db
def test_anonymous_fetches_need_the_right_access_key_and_an_aci_target(owner, client):
    owner.full_upload()
    key = base64.b64encode(bytes(owner.account.unidentified_access_key)).decode()

    assert client.get(f"/v2/keys/{owner.account.aci}/1", HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 200
    wrong = base64.b64encode(os.urandom(16)).decode()
    assert client.get(f"/v2/keys/{owner.account.aci}/1", HTTP_UNIDENTIFIED_ACCESS_KEY=wrong).status_code == 401
    assert client.get(f"/v2/keys/{owner.account.aci}/1", HTTP_UNIDENTIFIED_ACCESS_KEY="bad!").status_code == 401
    assert client.get(f"/v2/keys/{owner.account.aci}/1").status_code == 401
    assert client.get(f"/v2/keys/PNI:{owner.account.pni}/1", HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 401
    mixed = APIClient()
    mixed.credentials(HTTP_AUTHORIZATION=device_auth(DeviceFactory()), HTTP_UNIDENTIFIED_ACCESS_KEY=key)
    assert mixed.get(f"/v2/keys/{owner.account.aci}/1").status_code == 400


@pytest.mark.django_db
def test_removing_a_device_or_deleting_the_account_deletes_its_keys(db):
    owner = Owner(devices=2)
    owner.full_upload(owner.devices[1])
    assert owner.client().delete("/v1/devices/2").status_code == 204
    assert not OneTimePreKey.objects.exists() and not SignedPreKey.objects.filter(device_id=owner.devices[1].pk).exists()

    owner.full_upload()
    assert owner.client().delete("/v1/accounts/me").status_code == 204
    for model in (OneTimePreKey, KemPreKey, SignedPreKey, LastResortKey, IdentityKey):
        assert not model.objects.exists()


# --- Concurrency ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_fetchers_never_get_the_same_one_time_key():
    owner = Owner()
    owner.full_upload(ec=8, kem=5)
    fetchers = [DeviceFactory() for _ in range(24)]
    results, errors = [], []
    start = threading.Barrier(len(fetchers))

    def fetch(device):
        try:
            api = APIClient()
            api.credentials(HTTP_AUTHORIZATION=device_auth(device))
            start.wait()
            response = api.get(f"/v2/keys/{owner.account.aci}/1")
            results.append(response.json()["devices"][0])
        except Exception as exc:  # reported below, after every thread has finished
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fetch, args=(device,)) for device in fetchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors and len(results) == 24
    ec_ids = [r["preKey"]["keyId"] for r in results if r["preKey"]]
    pq_ids = [r["pqPreKey"]["keyId"] for r in results]
    assert sorted(ec_ids) == list(range(100, 108))  # every EC key exactly once
    assert sum(1 for r in results if r["preKey"] is None) == 16
    assert sorted(i for i in pq_ids if i != 999) == list(range(200, 205))  # every Kyber key once
    assert pq_ids.count(999) == 19  # the rest got the last-resort key
    assert not OneTimePreKey.objects.exists() and not KemPreKey.objects.exists()


@pytest.mark.django_db
def test_the_portable_claim_used_without_postgresql_hands_out_keys_in_order(owner, client_for, monkeypatch):
    owner.full_upload(ec=2, kem=0)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # take the path SQLite runs
    api = client_for(DeviceFactory())

    bundles = [api.get(f"/v2/keys/{owner.account.aci}/1").json()["devices"][0] for _ in range(3)]

    assert [b["preKey"]["keyId"] if b["preKey"] else None for b in bundles] == [100, 101, None]


@pytest.mark.django_db
def test_operators_see_key_counts_per_device_but_no_key_bytes(owner, client):
    from django.contrib.auth.models import User

    owner.full_upload(ec=3, kem=2)
    User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.login(username="operator", password="operator-password")

    page = client.get(f"/admin/accounts/device/{owner.primary.pk}/change/").content.decode()

    assert "ACI: 3 EC, 2 Kyber one-time; signed yes, last resort yes" in page
    assert "PNI: 0 EC, 0 Kyber one-time; signed no, last resort no" in page
    for key in OneTimePreKey.objects.values_list("public_key", flat=True):
        assert b64encode(bytes(key)) not in page
