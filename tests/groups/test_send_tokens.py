"""Group send endorsements and tokens (groups.send_tokens): what a member gets, what a client makes
of it, and what the server accepts. The sends themselves: tests/messaging/test_group_send_tokens.py."""

import base64
import hashlib
import hmac
import os
import time
import uuid
from datetime import UTC, datetime

import pytest

from groups.send_tokens import (
    InvalidGroupSendToken,
    default_expiration,
    group_send_credentials,
    verify_group_send_token,
)
from signalserver.crypto import server_key
from signalserver.wire import ServiceId

DAY = 86_400


def client_token(credentials: dict, members: list[str]) -> str:
    """What a client does: XOR the endorsements of the members it sends to, prefix the version
    and the expiration (written here from the wire description, not with the server's code)."""
    by_member = {e["serviceId"]: base64.b64decode(e["endorsement"]) for e in credentials["endorsements"]}
    combined = bytes(32)
    for member in members:
        combined = bytes(a ^ b for a, b in zip(combined, by_member[member], strict=True))
    return base64.b64encode(b"\x00" + credentials["expiration"].to_bytes(8, "big") + combined).decode()


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-01T00:00:00", "2026-03-03T00:00:00"),  # 48 hours ahead
        ("2026-03-01T22:59:59", "2026-03-03T00:00:00"),  # 25 hours and 1 second left
        ("2026-03-01T23:00:01", "2026-03-04T00:00:00"),  # less than 25 hours: the day after
        ("2026-03-01T23:59:59", "2026-03-04T00:00:00"),
    ],
)
def test_the_expiration_is_a_day_boundary_25_to_49_hours_ahead(now, expected):
    assert default_expiration(epoch(now)) == epoch(expected)


def test_a_member_gets_an_endorsement_per_member_and_a_token_for_the_others():
    members = ids(5)
    caller = members[2]

    credentials = group_send_credentials(members, caller)

    assert [e["serviceId"] for e in credentials["endorsements"]] == members
    assert credentials["expiration"] % DAY == 0
    assert 25 * 3600 <= credentials["expiration"] - time.time() <= 49 * 3600
    others = [m for m in members if m != caller]
    assert credentials["token"] == client_token(credentials, others)
    verify_group_send_token(credentials["token"], [ServiceId.parse(m) for m in others])


def test_an_endorsement_is_hmac_sha256_of_the_binary_service_id_and_the_expiration():
    aci, pni = str(uuid.uuid4()), f"PNI:{uuid.uuid4()}"
    credentials = group_send_credentials([aci, pni], aci)
    expiry = credentials["expiration"].to_bytes(8, "big")
    key = server_key("group send token")

    aci_mac, pni_mac = (base64.b64decode(e["endorsement"]) for e in credentials["endorsements"])

    assert aci_mac == hmac.new(key, uuid.UUID(aci).bytes + expiry, hashlib.sha256).digest()
    assert pni_mac == hmac.new(key, b"\x01" + uuid.UUID(pni[4:]).bytes + expiry, hashlib.sha256).digest()


def test_service_ids_come_back_canonical_and_duplicates_once():
    aci = uuid.uuid4()
    credentials = group_send_credentials([str(aci).upper(), str(aci), f"PNI:{aci}"], str(aci))

    assert [e["serviceId"] for e in credentials["endorsements"]] == [str(aci), f"PNI:{aci}"]


def test_any_subset_of_the_endorsed_members_makes_a_token_in_any_order():
    members = ids(6)
    credentials = group_send_credentials(members, members[0])
    subset = [members[4], members[1], members[3]]

    verify_group_send_token(client_token(credentials, subset), [ServiceId.parse(m) for m in reversed(subset)])


@pytest.mark.parametrize("change", ["add a stranger", "drop a member", "swap for a stranger"])
def test_a_token_checks_against_its_exact_set_only(change):
    members = ids(4)
    credentials = group_send_credentials(members, members[0])
    token = client_token(credentials, members[1:])
    recipients = [ServiceId.parse(m) for m in members[1:]]
    stranger = ServiceId(uuid.uuid4())
    other = {
        "add a stranger": recipients + [stranger],
        "drop a member": recipients[:-1],
        "swap for a stranger": recipients[:-1] + [stranger],
    }[change]

    with pytest.raises(InvalidGroupSendToken):
        verify_group_send_token(token, other)


def test_an_aci_endorsement_does_not_cover_the_same_uuid_as_a_pni():
    member = str(uuid.uuid4())
    credentials = group_send_credentials([member], str(uuid.uuid4()))

    with pytest.raises(InvalidGroupSendToken):
        verify_group_send_token(credentials["token"], [ServiceId(uuid.UUID(member), is_pni=True)])


def test_tokens_expire_at_their_expiration():
    members = ids(2)
    credentials = group_send_credentials(members, members[0])
    recipients = [ServiceId.parse(members[1])]
    expiration = credentials["expiration"]

    verify_group_send_token(credentials["token"], recipients, now=expiration - 1)
    for now in (expiration, expiration + 1):
        with pytest.raises(InvalidGroupSendToken):
            verify_group_send_token(credentials["token"], recipients, now=now)


def test_a_token_with_an_expiration_it_was_not_made_for_is_refused():
    members = ids(2)
    credentials = group_send_credentials(members, members[0])
    raw = bytearray(base64.b64decode(credentials["token"]))
    raw[1:9] = (credentials["expiration"] + DAY).to_bytes(8, "big")

    with pytest.raises(InvalidGroupSendToken):
        verify_group_send_token(base64.b64encode(bytes(raw)).decode(), [ServiceId.parse(members[1])])


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not base64!",
        "AAAA",
        base64.b64encode(os.urandom(40)).decode(),  # one byte short
        base64.b64encode(b"\x01" + os.urandom(40)).decode(),  # unknown version
    ],
)
def test_malformed_tokens_are_401(header):
    with pytest.raises(InvalidGroupSendToken) as raised:
        verify_group_send_token(header, [ServiceId(uuid.uuid4())])
    assert raised.value.status == 401


def test_an_expiration_that_is_not_a_day_boundary_or_too_far_ahead_is_refused():
    recipient = ServiceId(uuid.uuid4())
    now = time.time()
    for expiration in (default_expiration(now) + 1, default_expiration(now) + 7 * DAY):
        token = base64.b64encode(b"\x00" + expiration.to_bytes(8, "big") + os.urandom(32)).decode()
        with pytest.raises(InvalidGroupSendToken):
            verify_group_send_token(token, [recipient])


def test_a_token_for_nobody_is_refused():
    zeros = base64.b64encode(b"\x00" + default_expiration(time.time()).to_bytes(8, "big") + bytes(32)).decode()

    with pytest.raises(InvalidGroupSendToken):
        verify_group_send_token(zeros, [])


def test_another_server_secret_makes_other_endorsements(settings):
    members = ids(2)
    token = group_send_credentials(members, members[0])["token"]

    settings.SECRET_KEY = "another secret " * 4

    with pytest.raises(InvalidGroupSendToken):
        verify_group_send_token(token, [ServiceId.parse(members[1])])


# --- Prekey and profile reads with a token (GET /v2/keys/{id}/{device}, GET /v1/profile/{id}) ---


@pytest.fixture
def member(db):
    """An account with uploaded keys (tests/keys), in a group with one other member."""
    from tests.keys.test_prekeys import Owner

    owner = Owner()
    owner.full_upload()
    reader = str(uuid.uuid4())
    return owner.account, group_send_credentials([str(owner.account.aci), reader], reader)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v2/keys/{aci}/1", "/v2/keys/{aci}/*", "/v1/profile/{aci}"])
def test_a_token_for_the_target_reads_its_keys_and_profile(client, member, path):
    account, credentials = member
    url = path.format(aci=account.aci)

    response = client.get(url, HTTP_GROUP_SEND_TOKEN=credentials["token"])

    assert response.status_code == 200
    assert response.json()["identityKey"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/v2/keys/{aci}/1", "/v1/profile/{aci}"])
def test_reads_refuse_tokens_for_other_targets_forged_or_expired_and_mixing(client, client_for, member, path):
    account, credentials = member
    url = path.format(aci=account.aci)
    stale = group_send_credentials([str(account.aci)], str(uuid.uuid4()), now=time.time() - 3 * DAY)
    for_everyone = client_token(credentials, [e["serviceId"] for e in credentials["endorsements"]])
    forged = base64.b64encode(b"\x00" + credentials["expiration"].to_bytes(8, "big") + os.urandom(32)).decode()

    for token in (stale["token"], for_everyone, forged, "AAAA"):
        assert client.get(url, HTTP_GROUP_SEND_TOKEN=token).status_code == 401
    key = base64.b64encode(bytes(account.unidentified_access_key)).decode()
    assert client.get(url, HTTP_GROUP_SEND_TOKEN=credentials["token"], HTTP_UNIDENTIFIED_ACCESS_KEY=key).status_code == 400
    signed_in = client_for(account.devices.get(device_id=1))
    assert signed_in.get(url, HTTP_GROUP_SEND_TOKEN=credentials["token"]).status_code == 400


@pytest.mark.django_db
def test_with_a_token_a_gone_target_is_404_and_versioned_profiles_take_none(client, member):
    account, _ = member
    gone = str(uuid.uuid4())
    token = group_send_credentials([gone], str(uuid.uuid4()))["token"]

    assert client.get(f"/v2/keys/{gone}/1", HTTP_GROUP_SEND_TOKEN=token).status_code == 404
    assert client.get(f"/v1/profile/{gone}", HTTP_GROUP_SEND_TOKEN=token).status_code == 404
    own = group_send_credentials([str(account.aci)], str(uuid.uuid4()))["token"]
    assert client.get(f"/v1/profile/{account.aci}/{'ab' * 32}", HTTP_GROUP_SEND_TOKEN=own).status_code == 401
