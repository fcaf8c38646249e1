"""`POST /v1/directory/lookup`: contact discovery by phone number (our extension, in place of CDSI),
through the real route, over HTTP and tunnelled."""

import base64
import json
import logging
from datetime import date

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from signalserver import ratelimit
from signalserver.logging import RedactingFilter
from signalserver.redis_clients import sync_redis
from tests.factories import AccountFactory, DeviceFactory, override_limit
from tests.messaging.helpers import parse_frame, request_frame, socket_for

pytestmark = pytest.mark.django_db

PATH = "/v1/directory/lookup"
UNKNOWN = "+442071838750"


@pytest.fixture
def device():
    return DeviceFactory()


@pytest.fixture
def alice():
    return AccountFactory()


@pytest.fixture
def hidden():
    return AccountFactory(discoverable_by_phone_number=False)


def lookup(api, new=(), prev=(), token=None, **extra):
    body = {"newE164s": list(new), "prevE164s": list(prev), "token": token}
    return api.post(PATH, body, format="json", **extra)


def numbers(n, start=0):
    return [f"+1202555{i:04d}" for i in range(start, start + n)]


def test_discoverable_accounts_are_found_with_aci_and_pni_the_others_are_absent(client_for, device, alice, hidden):
    response = lookup(client_for(device), new=[alice.number, hidden.number, UNKNOWN])
    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [{"e164": alice.number, "aci": str(alice.aci), "pni": str(alice.pni)}]
    assert len(base64.b64decode(body["token"])) == 32


def test_numbers_in_prev_are_looked_up_too(client_for, device, alice):
    response = lookup(client_for(device), new=[UNKNOWN], prev=[alice.number])
    assert [found["aci"] for found in response.json()["results"]] == [str(alice.aci)]


def test_a_number_matches_only_the_account_that_has_it_now(client_for, device, alice):
    number = alice.number
    Account.objects.filter(pk=alice.pk).update(number="+12025559999")
    assert lookup(client_for(device), new=[number]).json()["results"] == []


def test_requerying_with_the_token_charges_only_new_numbers(client_for, device):
    override_limit("directoryLookup", 4, 3600)
    api = client_for(device)
    first = lookup(api, new=numbers(3))
    assert first.status_code == 200
    # The three are paid for: with the token, only the fourth is charged (the last permit).
    second = lookup(api, new=numbers(1, start=3), prev=numbers(3), token=first.json()["token"])
    assert second.status_code == 200
    third = lookup(api, prev=numbers(4), token=second.json()["token"])
    assert third.status_code == 200
    # The same numbers without the token are charged again; the bucket is empty.
    refused = lookup(api, prev=numbers(4))
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0


def test_a_token_vouches_only_for_the_exact_set_it_was_given_for(client_for, device):
    override_limit("directoryLookup", 4, 3600)
    api = client_for(device)
    token = lookup(api, new=numbers(3)).json()["token"]
    # Another set under the same token: all three are charged, with one permit left.
    assert lookup(api, prev=numbers(3, start=1), token=token).status_code == 429
    assert lookup(api, prev=numbers(3), token=token).status_code == 200


def test_a_token_of_another_account_pays_for_nothing(client_for, device):
    override_limit("directoryLookup", 3, 3600)
    other = DeviceFactory()
    others_token = lookup(client_for(other), new=numbers(3)).json()["token"]
    own_token = lookup(client_for(device), new=numbers(3)).json()["token"]
    assert others_token != own_token
    assert lookup(client_for(device), prev=numbers(3), token=others_token).status_code == 429
    assert lookup(client_for(device), prev=numbers(3), token=own_token).status_code == 200


def test_duplicates_are_charged_once(client_for, device):
    override_limit("directoryLookup", 2, 3600)
    assert lookup(client_for(device), new=numbers(2) * 3, prev=numbers(2)).status_code == 200


@pytest.mark.parametrize(
    "number",
    [
        "14155550100", "+1234567", "+1234567890123456", "+0123456789", " +14155550100", "+14155550100\n",
        "+1415555010a", "+١٤١٥٥٥٥٠١٠٠", 14155550100, None, "",
    ],
)
@pytest.mark.parametrize("field", ["newE164s", "prevE164s"])
def test_a_number_that_is_not_e164_is_422(client_for, device, field, number):
    body = {"newE164s": ["+14155550100"], "prevE164s": [], field: ["+14155550101", number]}
    response = client_for(device).post(PATH, body, format="json")
    assert response.status_code == 422


SHORT_TOKEN = base64.b64encode(b"x" * 31).decode()


@pytest.mark.parametrize("body", [{}, {"newE164s": "+14155550100"}, {"newE164s": [], "token": "%%%"}, {"newE164s": [], "token": SHORT_TOKEN}])
def test_a_malformed_body_or_token_is_422(client_for, device, body):
    assert client_for(device).post(PATH, body, format="json").status_code == 422


def test_at_most_5000_distinct_numbers_per_request(client_for, device):
    api = client_for(device)
    assert lookup(api, new=numbers(5000)).status_code == 200
    assert lookup(api, new=numbers(5001)).status_code == 413
    assert lookup(api, new=numbers(2501), prev=numbers(2500, start=2501)).status_code == 413
    # Duplicates count once, prev and new together.
    assert lookup(api, new=numbers(5000) + numbers(1000), prev=numbers(1000)).status_code == 200
    assert lookup(api, new=numbers(1) * 10_001).status_code == 413  # entries bound the work


def test_requests_are_limited_per_address(client_for, device):
    override_limit("directoryLookupPerIp", 2, 3600)
    assert [lookup(client_for(device), new=numbers(1)).status_code for _ in range(3)] == [200, 200, 429]
    assert lookup(client_for(DeviceFactory()), new=numbers(1)).status_code == 429  # another account, same address
    assert lookup(client_for(device), new=numbers(1), REMOTE_ADDR="10.0.0.2").status_code == 200


def test_without_credentials_it_is_401(client):
    assert client.post(PATH, {"newE164s": ["+14155550100"]}, content_type="application/json").status_code == 401


def test_a_lookup_writes_nothing_and_runs_one_query_for_all_numbers(client_for, device, alice, hidden):
    device.last_seen = date.today()  # so authentication has nothing to refresh
    device.save(update_fields=["last_seen"])
    asked = [alice.number, hidden.number, UNKNOWN, *numbers(50)]
    with CaptureQueriesContext(connection) as queries:
        assert lookup(client_for(device), new=asked).status_code == 200
    statements = [query["sql"] for query in queries]
    assert not [sql for sql in statements if sql.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert len([sql for sql in statements if '"accounts_account"."number" IN' in sql]) == 1
    # Nor do the rate limiter's keys hold a number or its keyed hash.
    keys = b" ".join(sync_redis().scan_iter(match="rl:*")).decode()
    assert "rl:directoryLookup:" in keys
    for number in asked:
        assert number[1:] not in keys and ratelimit.hashed(number) not in keys


def test_no_queried_number_is_logged(client_for, device, alice, hidden, caplog, monkeypatch):
    # The console's redacting filter rewrites records in place, caplog's copies included: it is the
    # last line of defence. Without it, the records show what the code itself hands to logging.
    for handler in logging.getLogger().handlers:
        monkeypatch.setattr(handler, "filters", [f for f in handler.filters if not isinstance(f, RedactingFilter)])
    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.request", "django.db.backends", "signalserver"):
        caplog.set_level(logging.DEBUG, logger=name)
    override_limit("directoryLookup", 3, 3600)
    api = client_for(device)
    asked = [alice.number, hidden.number, UNKNOWN]
    token = lookup(api, new=asked).json()["token"]
    assert lookup(api, prev=asked, token=token).status_code == 200
    assert lookup(api, prev=asked, new=["+12025550000"]).status_code == 429  # refused: logged too
    assert lookup(api, new=[*asked, "+1202555000x"]).status_code == 422
    assert caplog.records  # the request log at least
    for record in caplog.records:
        text = repr(vars(record)) + record.getMessage()
        for number in [*asked, "+12025550000"]:
            assert number[1:] not in text, record


@pytest.mark.django_db(transaction=True)
async def test_a_lookup_over_the_socket_is_the_same_as_over_http(client_for):
    device = await sync_to_async(DeviceFactory)()
    alice = await sync_to_async(AccountFactory)()
    body = {"newE164s": [alice.number, UNKNOWN], "prevE164s": [], "token": None}
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true"), (b"host", b"testserver")])
    assert (await ws.connect())[0]
    frame = request_frame("POST", PATH, body=json.dumps(body).encode(), request_id=7, headers=["content-type:application/json"])
    await ws.send_to(bytes_data=frame)
    response = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.disconnect()
    assert response.status == 200
    tunnelled = json.loads(response.body)
    assert tunnelled["results"] == [{"e164": alice.number, "aci": str(alice.aci), "pni": str(alice.pni)}]
    over_http = await sync_to_async(lambda: lookup(client_for(device), new=body["newE164s"]).json())()
    assert over_http == tunnelled  # the token too: it depends on the account and the numbers only
