"""`GET /v4/attachments/form/upload` through the real route, over HTTP and tunnelled."""

import base64
import json

import jwt
import pytest
from asgiref.sync import sync_to_async

from media import tokens
from tests.factories import DeviceFactory, override_limit
from tests.messaging.helpers import parse_frame, request_frame, socket_for

pytestmark = pytest.mark.django_db

PATH = "/v4/attachments/form/upload"


@pytest.fixture
def device():
    return DeviceFactory()


def test_a_form_names_a_random_key_the_tus_location_and_a_token_for_that_key_and_length(client_for, device):
    response = client_for(device).get(PATH, {"uploadLength": 1234})
    assert response.status_code == 200
    form = response.json()
    assert set(form) == {"cdn", "key", "headers", "signedUploadLocation"}
    assert form["cdn"] == 3
    assert len(form["key"]) == 20 and len(base64.urlsafe_b64decode(form["key"])) == 15
    assert form["signedUploadLocation"] == "http://testserver/attachments"
    assert form["headers"]["Upload-Metadata"] == "filename " + base64.b64encode(form["key"].encode()).decode()
    key, max_length = tokens.verify(form["headers"]["Authorization"])
    assert (key, max_length) == (form["key"], 1234)
    claims = jwt.decode(form["headers"]["Authorization"].split()[1], options={"verify_signature": False})
    assert claims["aud"] == "attachments" and claims["exp"] > claims["iat"]
    assert client_for(device).get(PATH).json()["key"] != form["key"]


def test_without_a_length_the_form_allows_the_largest_attachment(client_for, device, settings):
    form = client_for(device).get(PATH).json()
    assert tokens.verify(form["headers"]["Authorization"])[1] == settings.ATTACHMENT_MAX_BYTES


def test_the_cdn_base_url_can_be_configured(client_for, device, settings):
    settings.ATTACHMENTS_CDN3_URL = "https://cdn3.example.org/"
    assert client_for(device).get(PATH).json()["signedUploadLocation"] == "https://cdn3.example.org/attachments"


@pytest.mark.parametrize("length", ["0", "-5", "abc", "1.5", "", "9" * 30])
def test_a_length_that_is_not_a_positive_integer_is_400(client_for, device, length):
    response = client_for(device).get(PATH, {"uploadLength": length})
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_a_length_over_the_largest_attachment_is_413(client_for, device, settings):
    assert client_for(device).get(PATH, {"uploadLength": settings.ATTACHMENT_MAX_BYTES + 1}).status_code == 413
    assert client_for(device).get(PATH, {"uploadLength": settings.ATTACHMENT_MAX_BYTES}).status_code == 200


def test_without_credentials_it_is_401(client):
    assert client.get(PATH).status_code == 401


def test_forms_are_limited_by_count_per_account(client_for, device):
    override_limit("attachmentCreate", 2, 3600)
    assert [client_for(device).get(PATH).status_code for _ in range(3)] == [200, 200, 429]
    refused = client_for(device).get(PATH)
    assert int(refused["Retry-After"]) > 0
    assert client_for(DeviceFactory()).get(PATH).status_code == 200  # another account's bucket


def test_when_the_bytes_limiter_refuses_the_count_is_given_back(client_for, device):
    override_limit("attachmentCreate", 2, 3600)
    override_limit("attachmentCreateBytes", 1000, 3600)
    assert client_for(device).get(PATH, {"uploadLength": 800}).status_code == 200
    assert client_for(device).get(PATH, {"uploadLength": 800}).status_code == 429  # bytes: refused
    # The refused request took no count: one form is still left.
    assert client_for(device).get(PATH, {"uploadLength": 100}).status_code == 200
    assert client_for(device).get(PATH, {"uploadLength": 1}).status_code == 429  # now the count


# The socket reads the database on threads of its own: the rows must be committed (and flushed after).
@pytest.mark.django_db(transaction=True)
async def test_a_form_over_the_socket_is_the_same_as_over_http():
    device = await sync_to_async(DeviceFactory)()
    # As every client does, the upgrade request names the host; tunnelled requests inherit it.
    ws = socket_for(device, headers=[(b"x-signal-disable-messages", b"true"), (b"host", b"testserver")])
    assert (await ws.connect())[0]
    await ws.send_to(bytes_data=request_frame("GET", f"{PATH}?uploadLength=99", request_id=7))
    response = parse_frame(await ws.receive_from(timeout=3)).response
    await ws.disconnect()
    assert response.status == 200
    form = json.loads(response.body)
    assert form["cdn"] == 3 and tokens.verify(form["headers"]["Authorization"]) == (form["key"], 99)
    assert form["signedUploadLocation"] == "http://testserver/attachments"
