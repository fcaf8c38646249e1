"""The tests' S3 server (tests/s3.py, SeaweedFS) and what it checks. Each test asserts what SeaweedFS
actually does, so a later version that changes behaviour fails here first. Where SeaweedFS is
laxer than AWS S3 the test says so and asserts the lax behaviour (it does not pretend otherwise):

  enforced   SigV4 signatures of REST requests (an unsigned, wrongly signed or unknown-key
             request gets 403); presigned URL expiry (X-Amz-Date + X-Amz-Expires, to the second)
             and signature; Range on a presigned GET (206 with the asked bytes); the 5 MiB minimum
             of every part but the last, when the multipart upload is completed; the POST policy's
             signature (a wrong one, or a changed policy: 403; none: 400), its expiration, its
             conditions on key, acl and Content-Type prefix, and content-length-range (400
             EntityTooSmall / EntityTooLarge); a PUT's Content-MD5 and x-amz-checksum-crc32.
  not        the signed payload hash (X-Amz-Content-SHA256) against the body actually sent:
             a PUT whose body was changed after signing is stored; form fields of a POST upload
             that the policy does not mention (other than x-amz-*), which AWS refuses.
"""

import base64
import hashlib
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.s3 import GRPC_SOCKET_NAMES, S3Server, s3_bucket, s3_server  # noqa: F401

MiB = 1024 * 1024
POST_CONDITIONS = [{"acl": "private"}, ["starts-with", "$Content-Type", ""], ["content-length-range", 1, 1024]]


def error_code(response: httpx.Response) -> str:
    """The <Code> of an S3 error document ('' if there is none)."""
    match = re.search(r"<Code>([^<]*)</Code>", response.text)
    return match.group(1) if match else ""


def refused(call) -> ClientError:
    """Run `call`, which must fail with an S3 error; the error is returned."""
    with pytest.raises(ClientError) as failure:
        call()
    return failure.value


def status_and_code(error: ClientError) -> tuple[int, str]:
    return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]


# --- the server itself ---


def test_server_process_listens_only_on_loopback_and_stop_leaves_nothing_behind():
    """A server of its own (not the session's): one weed process without children, listening on
    127.0.0.1 only; stop() ends it and removes its data directory and its gRPC sockets in /tmp."""
    server = S3Server(bucket="own")
    started = time.monotonic()
    server.start()
    try:
        assert time.monotonic() - started < 30
        pid = server.pid
        assert Path(f"/proc/{pid}/exe").resolve().name == "weed"
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert children == []
        assert sorted(listening_addresses(pid)) == sorted(("127.0.0.1", port) for port in server.ports.values())
        assert server.client().list_buckets()["Buckets"][0]["Name"] == "own"
        directory = server.directory
        sockets = [
            Path(f"/tmp/seaweedfs-{name}-grpc-{server.ports[f'{name}.port.grpc']}.sock") for name in GRPC_SOCKET_NAMES
        ]
        assert directory.is_dir() and all(socket.exists() for socket in sockets)
    finally:
        server.stop()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped
    assert not server.alive and not directory.exists()
    assert not any(socket.exists() for socket in sockets)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that the process `pid` holds, from
    /proc: its socket inodes, looked up in /proc/net/tcp and tcp6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                if width == 8:
                    address = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
                found.append((address, int(port, 16)))
    return found


def test_put_and_get_an_object(s3_server, s3_bucket):
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="dir/hello.txt", Body=b"hello, world", ContentType="text/plain")
    stored = s3.get_object(Bucket=s3_bucket, Key="dir/hello.txt")
    assert stored["Body"].read() == b"hello, world"
    assert stored["ContentType"] == "text/plain"
    assert stored["ContentLength"] == 12
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["dir/hello.txt"]


def test_each_test_gets_a_fresh_empty_bucket(s3_server, s3_bucket):
    assert s3_bucket != s3_server.bucket
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


# --- signatures of REST requests ---


def test_unsigned_requests_are_refused(s3_server, s3_bucket):
    s3_server.client().put_object(Bucket=s3_bucket, Key="private", Body=b"secret")
    url = f"{s3_server.endpoint_url}/{s3_bucket}/private"

    read = httpx.get(url, timeout=5)
    assert (read.status_code, error_code(read)) == (403, "AccessDenied")
    assert b"secret" not in read.content
    write = httpx.put(f"{s3_server.endpoint_url}/{s3_bucket}/anonymous", content=b"x", timeout=5)
    assert (write.status_code, error_code(write)) == (403, "AccessDenied")
    listing = httpx.get(f"{s3_server.endpoint_url}/", timeout=5)
    assert listing.status_code == 403
    assert "anonymous" not in keys(s3_server, s3_bucket)


def test_wrongly_signed_requests_are_refused(s3_server, s3_bucket):
    s3_server.client().put_object(Bucket=s3_bucket, Key="private", Body=b"secret")
    wrong_secret = s3_server.client(secret_key=s3_server.secret_key[:-1] + "x")
    unknown_key = s3_server.client(access_key="AKIAUNKNOWN0000000", secret_key=s3_server.secret_key)

    error = refused(lambda: wrong_secret.get_object(Bucket=s3_bucket, Key="private"))
    assert status_and_code(error) == (403, "SignatureDoesNotMatch")
    error = refused(lambda: wrong_secret.put_object(Bucket=s3_bucket, Key="forged", Body=b"x"))
    assert status_and_code(error) == (403, "SignatureDoesNotMatch")
    error = refused(lambda: unknown_key.get_object(Bucket=s3_bucket, Key="private"))
    assert status_and_code(error) == (403, "InvalidAccessKeyId")
    assert keys(s3_server, s3_bucket) == ["private"]


def test_body_digests_content_md5_and_checksums_are_checked_but_not_the_signed_payload_hash(s3_server, s3_bucket):
    """The signature covers X-Amz-Content-SHA256, yet SeaweedFS does not compare that hash with the
    body it receives: a body swapped after signing (same length) is stored. A wrong Content-MD5,
    or a wrong x-amz-checksum-crc32 (boto3 sends one by default), is refused with BadDigest. So a
    server that relays uploads must send Content-MD5 or a checksum to get integrity checked."""
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    error = refused(
        lambda: s3_server.client().put_object(Bucket=s3_bucket, Key="md5", Body=b"body!", ContentMD5=wrong_md5)
    )
    assert status_and_code(error) == (400, "BadDigest")

    def swap_body(request, **_):
        request.body = b"Y" * 100

    with_checksum = s3_server.client(request_checksum_calculation="when_supported")  # boto3's default: CRC32
    with_checksum.meta.events.register("before-send.s3.PutObject", swap_body)
    error = refused(lambda: with_checksum.put_object(Bucket=s3_bucket, Key="crc", Body=b"X" * 100))
    assert status_and_code(error) == (400, "BadDigest")

    # NOT enforced: only the signed SHA-256 of the payload protects this body, and it is not checked.
    hash_only = s3_server.client(request_checksum_calculation="when_required")
    hash_only.meta.events.register("before-send.s3.PutObject", swap_body)
    hash_only.put_object(Bucket=s3_bucket, Key="swapped", Body=b"X" * 100)
    assert read(s3_server, s3_bucket, "swapped") == b"Y" * 100
    assert keys(s3_server, s3_bucket) == ["swapped"]


# --- presigned URLs ---


def test_presigned_get_answers_a_range_request(s3_server, s3_bucket):
    body = bytes(range(256)) * 4
    s3_server.client().put_object(Bucket=s3_bucket, Key="blob", Body=body)
    url = s3_server.client().generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "blob"}, ExpiresIn=300
    )

    response = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert response.status_code == 206
    assert response.content == body[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    assert response.headers["Content-Length"] == "10"
    whole = httpx.get(url, timeout=5)
    assert (whole.status_code, whole.content) == (200, body)


def test_presigned_get_is_refused_after_it_expires_or_when_tampered_with(s3_server, s3_bucket):
    s3_server.client().put_object(Bucket=s3_bucket, Key="blob", Body=b"0123456789" * 3)
    s3_server.client().put_object(Bucket=s3_bucket, Key="other", Body=b"other")
    url = s3_server.client().generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "blob"}, ExpiresIn=2
    )
    # Valid until X-Amz-Date (whole seconds, so up to 1 s before now) plus X-Amz-Expires.
    signed_at = datetime.strptime(parse_qs(urlsplit(url).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    expires_at = signed_at.replace(tzinfo=timezone.utc).timestamp() + 2

    fresh = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert (fresh.status_code, fresh.content) == (206, b"0123456789")
    tampered = httpx.get(url.replace("/blob?", "/other?"), timeout=5)
    assert (tampered.status_code, error_code(tampered)) == (403, "SignatureDoesNotMatch")

    time.sleep(max(0.0, expires_at - time.time()) + 1.1)
    expired = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert (expired.status_code, error_code(expired)) == (403, "AccessDenied")
    assert "expired" in expired.text.lower()


# --- multipart uploads ---


def test_multipart_upload_of_three_parts_completes(s3_server, s3_bucket):
    s3 = s3_server.client()
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1024)]
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="big", ContentType="application/octet-stream")
    etags = [
        s3.upload_part(Bucket=s3_bucket, Key="big", UploadId=upload["UploadId"], PartNumber=number, Body=part)["ETag"]
        for number, part in enumerate(parts, start=1)
    ]
    done = s3.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="big",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]},
    )
    # S3's multipart ETag: MD5 of the parts' binary MD5s, then "-" and the number of parts.
    expected_etag = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest() + "-3"
    assert done["ETag"].strip('"') == expected_etag

    whole = b"".join(parts)
    stored = s3.get_object(Bucket=s3_bucket, Key="big")
    assert stored["ContentLength"] == len(whole) == 10 * MiB + 1024
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == hashlib.sha256(whole).hexdigest()
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_multipart_parts_under_5_mib_are_refused_on_completion(s3_server, s3_bucket):
    """Every part but the last must be at least 5 MiB: uploading a small part is accepted, and
    CompleteMultipartUpload refuses the whole with EntityTooSmall."""
    s3 = s3_server.client()
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="small")["UploadId"]
    etags = [
        s3.upload_part(Bucket=s3_bucket, Key="small", UploadId=upload_id, PartNumber=n, Body=b"z" * 1024)["ETag"]
        for n in (1, 2)
    ]
    error = refused(
        lambda: s3.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="small",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in zip((1, 2), etags)]},
        )
    )
    assert status_and_code(error) == (400, "EntityTooSmall")
    assert keys(s3_server, s3_bucket) == []


def test_unfinished_multipart_upload_is_listed_until_aborted(s3_server, s3_bucket):
    s3 = s3_server.client()
    upload_id = s3.create_multipart_upload(Bucket=s3_bucket, Key="pending")["UploadId"]
    s3.upload_part(Bucket=s3_bucket, Key="pending", UploadId=upload_id, PartNumber=1, Body=b"p" * 1024)

    uploads = s3.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert [(upload["Key"], upload["UploadId"]) for upload in uploads] == [("pending", upload_id)]
    parts = s3.list_parts(Bucket=s3_bucket, Key="pending", UploadId=upload_id)["Parts"]
    assert [(part["PartNumber"], part["Size"]) for part in parts] == [(1, 1024)]

    s3.abort_multipart_upload(Bucket=s3_bucket, Key="pending", UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    error = refused(lambda: s3.list_parts(Bucket=s3_bucket, Key="pending", UploadId=upload_id))
    assert status_and_code(error) == (404, "NoSuchUpload")
    assert keys(s3_server, s3_bucket) == []


# --- browser uploads with a POST policy ---


def presigned_post(s3_server, bucket: str, key: str = "upload", expires_in: int = 300) -> dict:
    return s3_server.client().generate_presigned_post(
        bucket, key, Conditions=POST_CONDITIONS, ExpiresIn=expires_in
    )


def browser_post(post: dict, content: bytes, **changes) -> httpx.Response:
    """A browser form's multipart/form-data POST: the presigned fields, then acl and Content-Type,
    then the file (S3 ignores fields after it). `changes` replace or add form fields."""
    fields = {**post["fields"], "acl": "private", "Content-Type": "image/png", **changes}
    return httpx.post(post["url"], data=fields, files={"file": ("photo.png", content, "image/png")}, timeout=10)


@pytest.mark.parametrize("size", [1, 100, 1024])
def test_post_policy_upload_within_content_length_range_is_accepted(s3_server, s3_bucket, size):
    content = os.urandom(size)
    response = browser_post(presigned_post(s3_server, s3_bucket), content)
    assert response.status_code == 204, response.text
    stored = s3_server.client().get_object(Bucket=s3_bucket, Key="upload")
    assert stored["Body"].read() == content
    assert stored["ContentType"] == "image/png"


@pytest.mark.parametrize(("size", "code"), [(0, "EntityTooSmall"), (1025, "EntityTooLarge"), (2000, "EntityTooLarge")])
def test_post_policy_upload_outside_content_length_range_is_refused(s3_server, s3_bucket, size, code):
    response = browser_post(presigned_post(s3_server, s3_bucket), b"x" * size)
    assert (response.status_code, error_code(response)) == (400, code)
    assert keys(s3_server, s3_bucket) == []


def test_post_policy_upload_with_a_tampered_signature_or_policy_is_refused(s3_server, s3_bucket):
    post = presigned_post(s3_server, s3_bucket)
    signature = post["fields"]["x-amz-signature"]
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    response = browser_post(post, b"x" * 100, **{"x-amz-signature": forged})
    assert (response.status_code, error_code(response)) == (403, "SignatureDoesNotMatch")

    # The policy widened to 1 MiB, under the original signature.
    policy = base64.b64decode(post["fields"]["policy"]).decode().replace('1, 1024]', f"1, {MiB}]")
    assert str(MiB) in policy
    response = browser_post(post, b"x" * 2000, policy=base64.b64encode(policy.encode()).decode())
    assert (response.status_code, error_code(response)) == (403, "SignatureDoesNotMatch")

    # Without the signature fields: refused as malformed (AWS answers 403 AccessDenied instead).
    unsigned = {name: value for name, value in post["fields"].items() if name in ("key", "policy")}
    response = browser_post({"url": post["url"], "fields": unsigned}, b"x" * 100)
    assert (response.status_code, error_code(response)) == (400, "AuthorizationQueryParametersError")
    assert keys(s3_server, s3_bucket) == []


def test_post_policy_conditions_on_key_acl_and_content_type_are_enforced(s3_server, s3_bucket):
    post = presigned_post(s3_server, s3_bucket, key="avatars/1")
    response = browser_post(post, b"x" * 100, key="avatars/2")
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")
    response = browser_post(post, b"x" * 100, acl="public-read")
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")

    images_only = s3_server.client().generate_presigned_post(
        s3_bucket, "avatars/1", Conditions=[POST_CONDITIONS[0], ["starts-with", "$Content-Type", "image/"]]
    )
    response = browser_post(images_only, b"<script>", **{"Content-Type": "text/html"})
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")
    assert keys(s3_server, s3_bucket) == []
    response = browser_post(images_only, b"x" * 100, **{"Content-Type": "image/png"})
    assert response.status_code == 204, response.text


def test_post_policy_is_refused_after_its_expiration(s3_server, s3_bucket):
    post = presigned_post(s3_server, s3_bucket, expires_in=1)
    time.sleep(2.1)  # the policy's expiration has whole seconds
    response = browser_post(post, b"x" * 100)
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")
    assert "expired" in response.text.lower()
    assert keys(s3_server, s3_bucket) == []


def test_post_policy_form_fields_the_policy_does_not_mention_are_accepted(s3_server, s3_bucket):
    """NOT enforced as in AWS, which refuses any form field that no condition covers: SeaweedFS
    only refuses unmentioned x-amz-* fields. Content-Disposition (and Cache-Control, Expires,
    Content-Encoding, Content-Language) are taken from the form and stored unchecked."""
    post = presigned_post(s3_server, s3_bucket)
    response = browser_post(post, b"x" * 100, **{"x-amz-meta-owner": "mallory"})
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")

    response = browser_post(post, b"x" * 100, **{"Content-Disposition": "attachment; filename=evil.html"})
    assert response.status_code == 204, response.text
    stored = s3_server.client().head_object(Bucket=s3_bucket, Key="upload")
    assert stored["ContentDisposition"] == "attachment; filename=evil.html"


def keys(s3_server, bucket: str) -> list[str]:
    return [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def read(s3_server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
