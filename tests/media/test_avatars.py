"""Avatar upload forms (media.avatars): their shape, and what a client posting one gets,
from the tests' real S3 server (SeaweedFS) and from this server's own /media on the embedded run."""

import base64
import json
import os
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile

from media import avatars

MiB = 1024 * 1024
FORMS = {"profiles": avatars.profile_avatar_form, "groups": avatars.group_avatar_form}
LIMITS = {"profiles": 10 * MiB, "groups": 3 * MiB}


def policy_of(form: dict) -> dict:
    return json.loads(base64.b64decode(form["policy"], validate=True))


def s3_post(form: dict, content: bytes, **changes) -> httpx.Response:
    """The client's multipart POST to the bucket: the form's fields, Content-Type, then the file.
    `changes` replace or add fields."""
    fields = {**avatars.form_fields(form), "Content-Type": "application/octet-stream", **changes}
    files = {"file": ("avatar", content, "application/octet-stream")}
    return httpx.post(avatars.cdn_url("http://unused.invalid"), data=fields, files=files, timeout=30)


def s3_error_code(response: httpx.Response) -> str:
    match = re.search(r"<Code>([^<]*)</Code>", response.text)
    return match.group(1) if match else ""


def s3_keys(s3_server, bucket: str) -> list[str]:
    return [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def local_post(client, form: dict, content: bytes, path: str = "/media", **changes):
    fields = {**avatars.form_fields(form), "Content-Type": "application/octet-stream", **changes}
    return client.post(path, {**fields, "file": SimpleUploadedFile("avatar", content, "application/octet-stream")})


def stored_files(root) -> list:
    return sorted(path for path in root.rglob("*") if path.is_file())


def signed_locally(policy: dict, form: dict) -> dict:
    """`form` with `policy` in place of its own, signed with the local key: a form this server
    could have made."""
    encoded = base64.b64encode(json.dumps(policy).encode()).decode()
    signature = avatars.sign(encoded, secret=avatars.local_secret(), day=form["date"][:8], region=form["credential"].split("/")[2])
    return {**form, "policy": encoded, "signature": signature}


@pytest.fixture
def embedded(settings):
    """No S3 configured, whatever the environment says (the forms are signed locally)."""
    settings.MEDIA_S3_BUCKET = ""
    settings.AVATARS_CDN_URL = ""


# --- the form --------------------------------------------------------------------------------------


def test_a_profile_form_has_the_spec_fields_a_random_key_and_a_sigv4_signature_of_its_policy(embedded, settings):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    form = avatars.profile_avatar_form()
    after = datetime.now(timezone.utc)

    assert set(form) == {"key", "credential", "acl", "algorithm", "date", "policy", "signature"}
    assert re.fullmatch(r"profiles/[A-Za-z0-9_-]{22}", form["key"])
    assert len(base64.urlsafe_b64decode(form["key"].split("/")[1] + "==")) == 16
    assert (form["acl"], form["algorithm"]) == ("private", "AWS4-HMAC-SHA256")
    date = datetime.strptime(form["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= date <= after
    assert form["credential"] == f"local/{form['date'][:8]}/{settings.MEDIA_S3_REGION}/s3/aws4_request"
    assert re.fullmatch(r"[0-9a-f]{64}", form["signature"])
    assert form["signature"] == avatars.sign(
        form["policy"], secret=avatars.local_secret(), day=form["date"][:8], region=settings.MEDIA_S3_REGION
    )
    assert avatars.profile_avatar_form()["key"] != form["key"]


@pytest.mark.parametrize("prefix", ["profiles", "groups"])
def test_the_policy_allows_that_key_alone_for_half_an_hour_up_to_the_avatar_limit(embedded, prefix):
    form = FORMS[prefix]()
    policy = policy_of(form)

    assert form["key"].startswith(f"{prefix}/")
    assert policy["conditions"] == [
        {"bucket": "local"},
        {"key": form["key"]},
        {"acl": "private"},
        ["starts-with", "$Content-Type", ""],
        ["content-length-range", 1, LIMITS[prefix]],
        {"x-amz-credential": form["credential"]},
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"x-amz-date": form["date"]},
    ]
    date = datetime.strptime(form["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", policy["expiration"])
    assert datetime.fromisoformat(policy["expiration"]) == date + timedelta(minutes=30)


def test_form_fields_are_the_multipart_fields_a_client_posts(embedded):
    form = avatars.group_avatar_form()
    assert avatars.form_fields(form) == {
        "key": form["key"],
        "x-amz-credential": form["credential"],
        "acl": "private",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-date": form["date"],
        "policy": form["policy"],
        "x-amz-signature": form["signature"],
    }


def test_with_s3_the_form_is_signed_with_the_bucket_key_for_that_bucket(settings):
    settings.MEDIA_S3_BUCKET, settings.MEDIA_S3_REGION = "avatars", "eu-central-1"
    settings.MEDIA_S3_ACCESS_KEY_ID, settings.MEDIA_S3_SECRET_ACCESS_KEY = "AKIDEXAMPLE", "wJalrXUtnFEMI"
    form = avatars.profile_avatar_form()
    assert form["credential"] == f"AKIDEXAMPLE/{form['date'][:8]}/eu-central-1/s3/aws4_request"
    assert policy_of(form)["conditions"][0] == {"bucket": "avatars"}
    assert form["signature"] == avatars.sign(form["policy"], secret="wJalrXUtnFEMI", day=form["date"][:8], region="eu-central-1")


def test_with_s3_but_no_static_key_no_form_can_be_signed(settings):
    settings.MEDIA_S3_BUCKET, settings.MEDIA_S3_ACCESS_KEY_ID, settings.MEDIA_S3_SECRET_ACCESS_KEY = "avatars", "", ""
    with pytest.raises(ImproperlyConfigured):
        avatars.profile_avatar_form()


def test_the_cdn_url_is_the_setting_else_the_bucket_else_this_servers_media(settings):
    settings.MEDIA_S3_BUCKET, settings.AVATARS_CDN_URL = "", ""
    assert avatars.cdn_url("https://chat.example.org/") == "https://chat.example.org/media"
    settings.MEDIA_S3_BUCKET, settings.MEDIA_S3_ENDPOINT_URL, settings.MEDIA_S3_ADDRESSING_STYLE = "av", "http://s3.local:8333/", "path"
    assert avatars.cdn_url("https://chat.example.org/") == "http://s3.local:8333/av"
    settings.MEDIA_S3_ENDPOINT_URL, settings.MEDIA_S3_ADDRESSING_STYLE, settings.MEDIA_S3_REGION = "", "virtual", "eu-west-1"
    assert avatars.cdn_url("https://chat.example.org/") == "https://av.s3.eu-west-1.amazonaws.com"
    settings.AVATARS_CDN_URL = "https://cdn.example.org/"
    assert avatars.cdn_url("https://chat.example.org/") == "https://cdn.example.org"


# --- posted to S3 (SeaweedFS) --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["profiles", "groups"])
def test_s3_stores_an_avatar_posted_with_the_form(s3_media, s3_server, prefix):
    form = FORMS[prefix]()
    content = os.urandom(1000)
    response = s3_post(form, content)
    assert response.status_code == 204, response.text
    assert s3_server.client().get_object(Bucket=s3_media, Key=form["key"])["Body"].read() == content


@pytest.mark.parametrize("prefix", ["profiles", "groups"])
def test_s3_takes_an_avatar_of_exactly_the_limit_and_refuses_one_byte_more(s3_media, s3_server, prefix):
    form = FORMS[prefix]()
    response = s3_post(form, b"a" * (LIMITS[prefix] + 1))
    assert (response.status_code, s3_error_code(response)) == (400, "EntityTooLarge")
    assert s3_keys(s3_server, s3_media) == []

    response = s3_post(form, b"a" * LIMITS[prefix])
    assert response.status_code == 204, response.text
    assert s3_keys(s3_server, s3_media) == [form["key"]]


def test_s3_refuses_a_form_with_a_tampered_signature(s3_media, s3_server):
    form = avatars.profile_avatar_form()
    signature = form["signature"]
    forged = {**form, "signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}
    response = s3_post(forged, b"x" * 100)
    assert (response.status_code, s3_error_code(response)) == (403, "SignatureDoesNotMatch")
    assert s3_keys(s3_server, s3_media) == []


def test_s3_refuses_the_form_for_another_key(s3_media, s3_server):
    form = avatars.profile_avatar_form()
    response = s3_post(form, b"x" * 100, key=avatars.new_key("profiles"))
    assert response.status_code == 403, response.text
    assert s3_keys(s3_server, s3_media) == []


# --- posted to this server's /media (the embedded run) ---------------------------------------------


@pytest.mark.parametrize("path", ["/media", "/media/"])
def test_the_local_cdn_stores_an_avatar_posted_with_the_form_and_serves_it(client, embedded, local_media, path):
    form = avatars.profile_avatar_form()
    content = os.urandom(1000)
    response = local_post(client, form, content, path)
    assert response.status_code == 204, response.content
    assert (local_media / form["key"]).read_bytes() == content

    served = client.get(f"/media/{form['key']}")
    assert served.status_code == 200
    assert served["Content-Type"] == "application/octet-stream"
    assert b"".join(served.streaming_content) == content


def test_a_form_posted_again_replaces_the_avatar_as_in_s3(client, embedded, local_media):
    form = avatars.group_avatar_form()
    assert local_post(client, form, b"first").status_code == 204
    assert local_post(client, form, b"second").status_code == 204
    assert stored_files(local_media) == [local_media / form["key"]]
    assert (local_media / form["key"]).read_bytes() == b"second"


@pytest.mark.parametrize("prefix", ["profiles", "groups"])
def test_the_local_cdn_takes_an_avatar_of_exactly_the_limit_and_refuses_one_byte_more(client, embedded, local_media, prefix):
    form = FORMS[prefix]()
    response = local_post(client, form, b"a" * (LIMITS[prefix] + 1))
    assert response.status_code == 400
    assert response.json()["code"] == 400 and "EntityTooLarge" in response.json()["message"]
    assert not (local_media / form["key"]).exists()

    response = local_post(client, form, b"a" * LIMITS[prefix])
    assert response.status_code == 204, response.content
    assert (local_media / form["key"]).stat().st_size == LIMITS[prefix]


def test_the_local_cdn_refuses_a_body_larger_than_any_avatar_before_reading_it(client, embedded, local_media):
    form = avatars.profile_avatar_form()
    fields = "&".join(f"{name}={value}" for name, value in avatars.form_fields(form).items())
    # A Content-Length past the largest avatar and its form: refused on the header alone.
    response = client.generic(
        "POST", "/media", fields.encode(), content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(10 * MiB + 16 * 1024 + 1),
    )
    assert response.status_code == 400 and "EntityTooLarge" in response.json()["message"]
    assert not (local_media / form["key"]).exists()


def test_the_local_cdn_refuses_an_empty_avatar(client, embedded, local_media):
    form = avatars.profile_avatar_form()
    response = local_post(client, form, b"")
    assert response.status_code == 400 and "EntityTooSmall" in response.json()["message"]
    assert not (local_media / form["key"]).exists()


def test_the_local_cdn_refuses_a_form_with_a_tampered_signature(client, embedded, local_media):
    form = avatars.profile_avatar_form()
    signature = form["signature"]
    forged = {**form, "signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}
    response = local_post(client, forged, b"x" * 100)
    assert response.status_code == 403
    assert response.json() == {"code": 403, "message": "SignatureDoesNotMatch"}
    assert not (local_media / form["key"]).exists()


def test_the_local_cdn_refuses_a_policy_changed_under_its_signature(client, embedded, local_media):
    form = avatars.group_avatar_form()
    policy = policy_of(form)
    policy["conditions"][4] = ["content-length-range", 1, 10 * MiB]
    widened = {**form, "policy": base64.b64encode(json.dumps(policy).encode()).decode()}
    response = local_post(client, widened, b"a" * (3 * MiB + 1))
    assert response.status_code == 403
    assert not (local_media / form["key"]).exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"key": "profiles/" + "A" * 22},  # another key than the policy's
        {"acl": "public-read"},
        {"x-amz-meta-owner": "mallory"},  # a field no condition names
        {"Content-Disposition": "inline"},  # refused as AWS does (SeaweedFS would store it)
    ],
)
def test_the_local_cdn_refuses_a_form_whose_fields_break_the_policy(client, embedded, local_media, changes):
    form = avatars.profile_avatar_form()
    response = local_post(client, form, b"x" * 100, **changes)
    assert response.status_code == 403
    assert response.json()["code"] == 403
    assert stored_files(local_media) == []


def test_the_local_cdn_refuses_an_expired_form(client, embedded, local_media):
    form = avatars.profile_avatar_form()
    policy = policy_of(form)
    policy["expiration"] = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    response = local_post(client, signed_locally(policy, form), b"x" * 100)
    assert response.status_code == 403 and "expired" in response.json()["message"]
    assert not (local_media / form["key"]).exists()


def test_the_local_cdn_refuses_a_form_signed_with_another_secret(client, embedded, local_media, settings):
    settings.SECRET_KEY = "another server's secret key, long enough for the checks" * 2
    form = avatars.profile_avatar_form()
    settings.SECRET_KEY = settings.SECRET_KEY[::-1]
    response = local_post(client, form, b"x" * 100)
    assert response.status_code == 403
    assert not (local_media / form["key"]).exists()


def test_the_local_cdn_keeps_only_avatars(client, embedded, local_media):
    form = avatars.upload_form("stickers", 1000)
    response = local_post(client, form, b"x" * 100)
    assert response.status_code == 403
    assert not (local_media / form["key"]).exists()


def test_an_unknown_avatar_is_a_json_404(client, embedded, local_media):
    response = client.get(f"/media/{avatars.new_key('profiles')}")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "Not found"}


@pytest.mark.parametrize(
    "path",
    [
        "attachments/AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "other/AAAAAAAAAAAAAAAAAAAAAA",
        "profiles/../other/AAAAAAAAAAAAAAAAAAAAAA",
        "profiles/%2e%2e/other/AAAAAAAAAAAAAAAAAAAAAA",
        "profiles//AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_nothing_outside_profiles_and_groups_is_served(client, embedded, local_media, path):
    for stored in ("attachments/AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "other/AAAAAAAAAAAAAAAAAAAAAA", "profiles/AAAAAAAAAAAAAAAAAAAAAA"):
        (local_media / stored).parent.mkdir(parents=True, exist_ok=True)
        (local_media / stored).write_bytes(b"secret")
    response = client.get(f"/media/{path}")
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert client.get("/media/profiles/AAAAAAAAAAAAAAAAAAAAAA").status_code == 200  # the same folder does serve


def test_with_s3_configured_this_server_takes_and_serves_no_avatars(client, local_media, settings):
    settings.MEDIA_S3_BUCKET = ""
    form = avatars.profile_avatar_form()
    assert local_post(client, form, b"x" * 100).status_code == 204
    settings.MEDIA_S3_BUCKET = "avatars"
    assert local_post(client, form, b"x" * 100).status_code == 404
    assert client.get(f"/media/{form['key']}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_real_server_refuses_a_declared_oversized_avatar_before_reading_its_body(tmp_path):
    import socket

    from tests.servers import live_server_process

    with live_server_process(procfile=True, MEDIA_ROOT=str(tmp_path / "media")) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /media HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: 52428800\r\n\r\n"
            )
            answer = b""  # no body sent: the answer comes before it
            while b"}" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"EntityTooLarge" in answer
