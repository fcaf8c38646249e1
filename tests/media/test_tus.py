"""Attachment uploads over tus and downloads, end to end: the Procfile's web server (uvicorn) with
its attachments in a real S3 store (SeaweedFS, tests/s3.py) or, as on the embedded run, in a local
folder; the client takes a form from the API and speaks tus with its headers."""

import base64
import hashlib
import os
import time

import httpx
import jwt
import pytest

from media.models import Upload
from tests.factories import DeviceFactory, device_auth
from tests.media.helpers import TUS, create, head, patch, send_and_break, upload_form
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024


@pytest.fixture
def s3_server_process(s3_server, s3_bucket):
    environment = {
        "MEDIA_S3_BUCKET": s3_bucket,
        "MEDIA_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MEDIA_S3_ACCESS_KEY_ID": s3_server.access_key,
        "MEDIA_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "MEDIA_S3_REGION": s3_server.region,
    }
    with live_server_process(procfile=True, **environment) as server:
        yield server


@pytest.fixture
def local_server_process(tmp_path):
    with live_server_process(procfile=True, MEDIA_ROOT=str(tmp_path / "media")) as server:
        yield server


@pytest.fixture
def authorization():
    return device_auth(DeviceFactory())


def wait_for_offset(form, location, expected, timeout=10.0) -> int:
    """The stored offset once it is `expected` (the server finishes a broken request on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        offset = int(head(form, location).headers["Upload-Offset"])
        if offset == expected or time.monotonic() > deadline:
            return offset
        time.sleep(0.05)


def download(server_or_url, key, **headers) -> httpx.Response:
    base = getattr(server_or_url, "url", server_or_url)
    return httpx.get(f"{base}/attachments/{key}", headers=headers, follow_redirects=True, timeout=60)


def test_an_attachment_sent_with_its_creation_request_is_stored_in_s3_and_downloaded(s3_server_process, authorization, s3_server, s3_bucket):
    data = os.urandom(3 * MiB + 17)
    form = upload_form(s3_server_process.url, authorization, len(data))
    assert form["cdn"] == 3 and len(form["key"]) == 20
    assert form["signedUploadLocation"] == f"{s3_server_process.url}/attachments"

    created = create(form, len(data), data)
    assert created.status_code == 201, created.text
    assert created.headers["Upload-Offset"] == str(len(data))
    assert created.headers["Location"] == f"{s3_server_process.url}/attachments/{form['key']}"

    stored = s3_server.client().get_object(Bucket=s3_bucket, Key=f"attachments/{form['key']}")["Body"].read()
    assert stored == data
    response = httpx.get(f"{s3_server_process.url}/attachments/{form['key']}")
    assert response.status_code == 302 and response.headers["Location"].startswith(s3_server.endpoint_url)
    assert download(s3_server_process, form["key"]).content == data
    ranged = download(s3_server_process, form["key"], Range="bytes=1000-1999")
    assert (ranged.status_code, ranged.content) == (206, data[1000:2000])


def test_an_upload_in_patches_across_a_part_boundary_is_stored_whole(s3_server_process, authorization, s3_server, s3_bucket):
    data = os.urandom(9 * MiB)  # more than one 8 MiB part
    form = upload_form(s3_server_process.url, authorization, len(data))
    location = create(form, len(data)).headers["Location"]
    assert head(form, location).headers["Upload-Offset"] == "0"
    offset = 0
    for size in (3 * MiB, 4 * MiB, 2 * MiB):  # the first two end short of a part: kept as its tail
        response = patch(form, location, offset, data[offset : offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert response.headers["Upload-Offset"] == head(form, location).headers["Upload-Offset"] == str(offset)
    assert hashlib.sha256(download(s3_server_process, form["key"]).content).digest() == hashlib.sha256(data).digest()
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="uploads/")["KeyCount"] == 0


def test_an_interrupted_creation_is_resumed_where_the_server_says(s3_server_process, authorization):
    data = os.urandom(10 * MiB)
    form = upload_form(s3_server_process.url, authorization, len(data))
    location = f"{form['signedUploadLocation']}/{form['key']}"
    send_and_break(form, form["signedUploadLocation"], 0, len(data), data[: 5 * MiB + 3], creation_length=len(data))
    offset = wait_for_offset(form, location, 5 * MiB + 3)
    assert offset == 5 * MiB + 3

    response = patch(form, location, offset, data[offset:])
    assert response.status_code == 204 and response.headers["Upload-Offset"] == str(len(data))
    assert download(s3_server_process, form["key"]).content == data


def test_a_patch_whose_checksum_does_not_match_is_discarded_even_across_parts(s3_server_process, authorization):
    data = os.urandom(12 * MiB)
    form = upload_form(s3_server_process.url, authorization, len(data))
    location = create(form, len(data), data[: 3 * MiB]).headers["Location"]  # a tail of 3 MiB
    rest = data[3 * MiB :]
    wrong = base64.b64encode(hashlib.sha256(rest[:-1] + b"!").digest()).decode()
    response = patch(form, location, 3 * MiB, rest, **{"Upload-Checksum": f"sha256 {wrong}"})
    assert response.status_code == 460  # a part was stored meanwhile: it does not count
    assert head(form, location).headers["Upload-Offset"] == str(3 * MiB)
    assert patch(form, location, 3 * MiB, rest, **{"Upload-Checksum": "crc32 AAAA"}).status_code == 400

    right = base64.b64encode(hashlib.sha1(rest).digest()).decode()
    response = patch(form, location, 3 * MiB, rest, **{"Upload-Checksum": f"sha1 {right}"})
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, str(len(data)))
    assert hashlib.sha256(download(s3_server_process, form["key"]).content).digest() == hashlib.sha256(data).digest()


def test_a_patch_at_the_wrong_offset_is_refused_with_409(s3_server_process, authorization):
    form = upload_form(s3_server_process.url, authorization, 100)
    location = create(form, 100, b"x" * 40).headers["Location"]
    response = patch(form, location, 10, b"y" * 60)
    assert response.status_code == 409
    assert head(form, location).headers["Upload-Offset"] == "40"


def test_more_bytes_than_declared_are_refused_and_not_stored(s3_server_process, authorization):
    form = upload_form(s3_server_process.url, authorization, 100)
    location = create(form, 100, b"x" * 60).headers["Location"]
    assert patch(form, location, 60, b"y" * 41).status_code == 413
    assert head(form, location).headers["Upload-Offset"] == "60"
    assert patch(form, location, 60, b"y" * 40).status_code == 204
    assert download(s3_server_process, form["key"]).content == b"x" * 60 + b"y" * 40


def test_an_upload_longer_than_the_form_allows_is_refused(s3_server_process, authorization):
    form = upload_form(s3_server_process.url, authorization, 100)
    assert create(form, 101).status_code == 413
    assert create(form, 101, b"z" * 101).status_code == 413


def test_wrong_missing_expired_or_foreign_tokens_are_refused(s3_server_process, authorization):
    form = upload_form(s3_server_process.url, authorization, 100)
    other = upload_form(s3_server_process.url, authorization, 100)
    location = create(form, 100).headers["Location"]

    no_token = httpx.patch(location, content=b"x", headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert no_token.status_code == 401
    forged = {**form, "headers": {**form["headers"], "Authorization": form["headers"]["Authorization"][:-2] + "xx"}}
    assert head(forged, location).status_code == 401
    assert head(other, location).status_code == 403  # a valid token, for another key

    claims = jwt.decode(form["headers"]["Authorization"].split()[1], options={"verify_signature": False})
    for changed in ({"exp": int(time.time()) - 1}, {"aud": "profiles"}):
        token = jwt.encode({**claims, **changed}, "not-the-servers-key-but-32-bytes-long", algorithm="HS256")
        assert head({**form, "headers": {"Authorization": f"Bearer {token}"}}, location).status_code == 401
    assert create({**form, "headers": {**form["headers"], "Tus-Resumable": "0.2.2"}}, 100).status_code == 412


def test_termination_deletes_the_upload(s3_server_process, authorization, s3_server, s3_bucket):
    form = upload_form(s3_server_process.url, authorization, 10 * MiB)
    location = create(form, 10 * MiB, os.urandom(MiB)).headers["Location"]
    response = httpx.delete(location, headers={**TUS, **form["headers"]})
    assert response.status_code == 204
    assert head(form, location).status_code == 404
    assert not Upload.objects.filter(pk=form["key"]).exists()
    assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert download(s3_server_process, form["key"]).status_code == 404


def test_options_says_what_the_server_speaks(s3_server_process):
    response = httpx.options(f"{s3_server_process.url}/attachments/")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "creation-with-upload", "termination", "checksum"}
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert response.headers["Tus-Max-Size"] == str(100 * MiB)


def test_unfinished_or_unknown_attachments_are_not_downloadable(s3_server_process, authorization):
    form = upload_form(s3_server_process.url, authorization, 100)
    create(form, 100, b"x" * 50)
    assert download(s3_server_process, form["key"]).status_code == 404
    assert download(s3_server_process, "A" * 20).status_code == 404
    assert download(s3_server_process, "../../etc/passwd").status_code == 404


def test_on_a_local_store_uploads_resume_and_downloads_serve_ranges(local_server_process, authorization, tmp_path):
    data = os.urandom(2 * MiB + 5)
    form = upload_form(local_server_process.url, authorization, len(data))
    location = f"{form['signedUploadLocation']}/{form['key']}"
    send_and_break(form, form["signedUploadLocation"], 0, len(data), data[:MiB], creation_length=len(data))
    offset = wait_for_offset(form, location, MiB)
    assert offset == MiB
    assert patch(form, location, offset, data[offset:]).status_code == 204

    whole = download(local_server_process, form["key"])
    assert (whole.status_code, whole.content, whole.headers["Accept-Ranges"]) == (200, data, "bytes")
    part = download(local_server_process, form["key"], Range="bytes=100-")
    assert (part.status_code, part.content) == (206, data[100:])
    assert part.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    tail = download(local_server_process, form["key"], Range="bytes=-10")
    assert tail.content == data[-10:]
    assert download(local_server_process, form["key"], Range=f"bytes={len(data)}-").status_code == 416
    assert (tmp_path / "media" / "attachments" / form["key"]).read_bytes() == data
