"""Attachment uploads over tus 1.0.0 and downloads, at /attachments/ (cdn 3).

A plain ASGI application in front of Django (signalserver.asgi), because an upload must be stored
as it arrives: a Django view sees a request only once its whole body is in (up to 100 MB), this
reads the body a message at a time and hands the store (media.store) a part at a time, so a process
holds at most one part (8 MiB) per upload, and a slow client holds back only its own socket.

    OPTIONS /attachments/           what this server speaks (Tus-Version, Tus-Extension, Tus-Max-Size)
    POST    /attachments/           creation, and creation-with-upload (a body sent with it)
    HEAD    /attachments/<key>      Upload-Offset: where to resume (with Tus-Resumable)
    PATCH   /attachments/<key>      more bytes at Upload-Offset (checked against Upload-Checksum:
                                    sha1, sha256 or md5, when the client sends one)
    DELETE  /attachments/<key>      termination
    GET     /attachments/<key>      the attachment: a redirect to a signed URL of the object store,
                                    or, on a local store, the bytes (with Range)

Upload requests carry the upload form's token (`Authorization: Bearer`, media.tokens), which names
the key and the largest length; downloads need nothing but the key, as on Signal's CDN (the bytes
are encrypted, the key is 120 random bits). Errors are JSON like the API's. One request writes to
an upload at a time (a lease in its row); a second gets 423 until the first ends or its lease
lapses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import secrets
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from media import store, tokens
from media.models import Upload, UploadDay
from signalserver.db import in_db_thread
from signalserver.errors import Conflict, DomainError, Forbidden, NotFound, Unauthorized, error_response

logger = logging.getLogger(__name__)

PREFIX = "/attachments"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
OFFSET_TYPE = "application/offset+octet-stream"
KEY = re.compile(r"^[A-Za-z0-9_-]{20}$")
LEASE_SECONDS = 60  # a writer that vanished (killed) blocks its upload this long at most
DOWNLOAD_CHUNK = 256 * 1024


class TusError(DomainError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _key_of(path: str) -> str:
    return path[len(PREFIX) :].strip("/")


async def app(scope, receive, send) -> None:
    method, key = scope["method"], _key_of(scope["path"])
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        if method == "OPTIONS":
            await respond(send, 204, _tus_headers({
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": EXTENSIONS,
                    "Tus-Max-Size": str(settings.ATTACHMENT_MAX_BYTES),
                    "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
                }))
        elif not key:
            if method != "POST":
                raise TusError(405, "Method not allowed")
            await _create(headers, receive, send)
        elif not KEY.match(key):
            raise NotFound()
        elif method == "GET" or (method == "HEAD" and "tus-resumable" not in headers):
            await _download(key, headers, send, body=method == "GET")
        elif method == "HEAD":
            await _head(key, headers, send)
        elif method == "PATCH":
            await _patch(key, headers, receive, send)
        elif method == "DELETE":
            await _terminate(key, headers, send)
        else:
            raise TusError(405, "Method not allowed")
    except Exception as exc:  # answered as the API answers (JSON), a bug as a 500 that is logged
        answer = error_response(exc)
        if answer is None:
            logger.exception("attachment request failed")
            answer = (500, {"code": 500, "message": "Internal server error"}, {})
        status, body, extra = answer
        await respond(send, status, _tus_headers(extra), body=body)


# --- upload requests ---------------------------------------------------------------------------


def _authorise(headers: dict, key: str | None = None) -> tuple[str, int]:
    if headers.get("tus-resumable") != TUS_VERSION:
        raise TusError(412, "Tus-Resumable 1.0.0 required")
    try:
        granted, max_length = tokens.verify(headers.get("authorization"))
    except tokens.InvalidToken:
        raise Unauthorized() from None
    if key is not None and granted != key:
        raise Forbidden("The token is for another upload")
    return granted, max_length


def _metadata_filename(headers: dict) -> str | None:
    for pair in headers.get("upload-metadata", "").split(","):
        name, _, value = pair.strip().partition(" ")
        if name == "filename":
            try:
                return base64.b64decode(value, validate=True).decode()
            except ValueError:
                raise TusError(400, "Malformed Upload-Metadata") from None
    return None


def _length(headers: dict, name: str) -> int:
    value = headers.get(name.lower(), "")
    if not value.isdigit() or len(value) > 15:
        raise TusError(400, f"{name} must be a non-negative integer")
    return int(value)


async def _create(headers: dict, receive, send) -> None:
    key, max_length = _authorise(headers)
    if "upload-defer-length" in headers:
        raise TusError(400, "Upload-Defer-Length is not supported")
    length = _length(headers, "Upload-Length")
    if length == 0:
        raise TusError(400, "Upload-Length must be positive")  # an encrypted attachment never is empty
    if length > min(max_length, settings.ATTACHMENT_MAX_BYTES):
        raise TusError(413, "Upload-Length is larger than the form allows")
    filename = _metadata_filename(headers)
    if filename is not None and filename != key:
        raise Forbidden("The token is for another upload")
    with_body = _declared_body(headers)
    upload = await _create_row(key, length)
    location = f"{_base_url(headers)}{PREFIX}/{key}"
    extra = {"Location": location}
    if with_body:
        upload = await _receive_into(upload, 0, headers, receive)
        extra["Upload-Offset"] = str(upload.offset)
    await respond(send, 201, _tus_headers(extra))


def _declared_body(headers: dict) -> bool:
    """Whether a creation request carries data (creation-with-upload)."""
    if headers.get("content-length", "0") in ("", "0") and "chunked" not in headers.get("transfer-encoding", ""):
        return False
    if headers.get("content-type", "").split(";")[0].strip() != OFFSET_TYPE:
        raise TusError(415, f"Content-Type must be {OFFSET_TYPE}")
    return True


def _existing_upload(key: str, length: int) -> Upload | None:
    """The upload a retried creation made already (same length, not complete), or None."""
    upload = Upload.objects.filter(pk=key).first()
    if upload is not None and (upload.length != length or upload.completed is not None):
        raise Conflict("This upload exists already")
    return upload


def _insert(upload: Upload) -> bool:
    """Insert the new upload's row; False when a concurrent creation of the same key won."""
    try:
        with transaction.atomic():
            upload.save(force_insert=True)
    except IntegrityError:
        return False
    return True


async def _create_row(key: str, length: int) -> Upload:
    """The upload of `key`: made (and started in the store, off the database threads), or the one
    a retried creation made already."""
    upload = await in_db_thread(_existing_upload)(key, length)
    if upload is not None:
        return upload
    upload = Upload(key=key, length=length, created=timezone.now().replace(minute=0, second=0, microsecond=0))
    backend = store.backend()
    await asyncio.to_thread(backend.start, upload)
    if not await in_db_thread(_insert)(upload):
        await asyncio.to_thread(backend.abort, upload)
        upload = await in_db_thread(_existing_upload)(key, length)
        if upload is None:  # made and terminated meanwhile
            raise Conflict("This upload was terminated")
    return upload


async def _head(key: str, headers: dict, send) -> None:
    _authorise(headers, key)
    upload = await in_db_thread(Upload.objects.filter(pk=key).first)()
    if upload is None:
        raise NotFound()
    await respond(
        send, 200, _tus_headers({"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length), "Cache-Control": "no-store"})
    )


async def _patch(key: str, headers: dict, receive, send) -> None:
    _authorise(headers, key)
    if headers.get("content-type", "").split(";")[0].strip() != OFFSET_TYPE:
        raise TusError(415, f"Content-Type must be {OFFSET_TYPE}")
    offset = _length(headers, "Upload-Offset")
    upload = await in_db_thread(Upload.objects.filter(pk=key).first)()
    if upload is None:
        raise NotFound()
    upload = await _receive_into(upload, offset, headers, receive)
    await respond(send, 204, _tus_headers({"Upload-Offset": str(upload.offset)}))


async def _terminate(key: str, headers: dict, send) -> None:
    _authorise(headers, key)
    writer = secrets.token_hex(8)
    upload = await in_db_thread(_lease)(key, writer)
    await asyncio.to_thread(store.backend().abort, upload)
    await in_db_thread(Upload.objects.filter(pk=key, writer=writer).delete)()
    await respond(send, 204, _tus_headers({}))


# --- receiving bytes ---------------------------------------------------------------------------


def _lease(key: str, writer: str) -> Upload:
    """Make `writer` the one request that writes to the upload, for LEASE_SECONDS; 423 while
    another holds it, 404 when there is no such upload."""
    now = timezone.now()
    taken = Upload.objects.filter(Q(writer="") | Q(lease_until__lt=now), pk=key).update(
        writer=writer, lease_until=now + timedelta(seconds=LEASE_SECONDS)
    )
    if not taken:
        if not Upload.objects.filter(pk=key).exists():
            raise NotFound()
        raise TusError(423, "The upload is being written by another request")
    return Upload.objects.get(pk=key)


def _save(upload: Upload, writer: str, *, release: bool = False, completed: bool = False) -> None:
    fields = {"offset": upload.offset, "parts": upload.parts, "tail": upload.tail, "multipart_id": upload.multipart_id}
    if release:
        fields.update(writer="", lease_until=None)
    else:
        fields["lease_until"] = timezone.now() + timedelta(seconds=LEASE_SECONDS)
    if completed:
        upload.completed = timezone.now().date()
        fields["completed"] = upload.completed
    Upload.objects.filter(pk=upload.pk, writer=writer).update(**fields)
    if completed:
        UploadDay.objects.get_or_create(day=upload.completed)
        UploadDay.objects.filter(day=upload.completed).update(uploads=F("uploads") + 1, bytes=F("bytes") + upload.length)


def _checksum(headers: dict):
    """(running hash, expected digest) of an `Upload-Checksum: <algorithm> <base64>`, or None."""
    value = headers.get("upload-checksum")
    if value is None:
        return None
    name, _, encoded = value.strip().partition(" ")
    if name not in CHECKSUMS:
        raise TusError(400, "Unsupported checksum algorithm")
    try:
        return CHECKSUMS[name](), base64.b64decode(encoded, validate=True)
    except ValueError:
        raise TusError(400, "Malformed Upload-Checksum") from None


async def _receive_into(upload: Upload, offset: int, headers: dict, receive) -> Upload:
    """Read the request body into the upload at `offset` (which must be where it stands), storing
    it part by part; at the end of the body, or when the client goes away, keep what came. With
    `Upload-Checksum` the request's bytes count only if the whole body came and matches: else the
    upload is put back as it was (the parts sent meanwhile are overwritten by the next ones)."""
    if upload.completed is not None:
        raise Conflict("The upload is complete")
    checksum = _checksum(headers)
    writer = secrets.token_hex(8)
    upload = await in_db_thread(_lease)(upload.pk, writer)
    before = (upload.offset, list(upload.parts), upload.tail)
    backend = store.backend()
    try:
        if offset != upload.offset:
            raise Conflict(f"Upload-Offset must be {upload.offset}")
        buffer = bytearray(await asyncio.to_thread(backend.load_tail, upload)) if upload.tail else bytearray()
        received, end, too_long = upload.offset, False, False
        renewed = asyncio.get_running_loop().time()
        while not end:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            end = not message.get("more_body", False)
            if received + len(chunk) > upload.length:
                too_long = True
                break
            received += len(chunk)
            if checksum is not None:
                checksum[0].update(chunk)
            # Fill the buffer to a whole part at most, store it, go on with the rest of the chunk.
            taken = 0
            while len(chunk) - taken >= backend.part_bytes - len(buffer):
                room = backend.part_bytes - len(buffer)
                buffer += chunk[taken : taken + room]
                taken += room
                await asyncio.to_thread(backend.write, upload, buffer)
                await in_db_thread(_save)(upload, writer)
                renewed = asyncio.get_running_loop().time()
            buffer += chunk[taken:] if taken else chunk
            if asyncio.get_running_loop().time() - renewed > LEASE_SECONDS / 3:  # a slow client keeps its lease
                await in_db_thread(_save)(upload, writer)
                renewed = asyncio.get_running_loop().time()
        if too_long:
            # Nothing past the last stored part is kept: the client sent more than it declared.
            raise TusError(413, "More bytes than Upload-Length")
        if checksum is not None and (not end or checksum[0].digest() != checksum[1]):
            upload.offset, upload.parts, upload.tail = before
            raise TusError(460, "Checksum mismatch")
        if received == upload.length:
            await asyncio.to_thread(backend.write, upload, buffer, last=True)
            await asyncio.to_thread(backend.complete, upload)
            await in_db_thread(_save)(upload, writer, release=True, completed=True)
            return upload
        await asyncio.to_thread(backend.keep, upload, buffer)
        return upload
    finally:
        await asyncio.shield(in_db_thread(_save)(upload, writer, release=True))


# --- downloads ---------------------------------------------------------------------------------


async def _download(key: str, headers: dict, send, *, body: bool) -> None:
    completed = await in_db_thread(Upload.objects.filter(pk=key, completed__isnull=False).exists)()
    if not completed:
        raise NotFound()
    url = await asyncio.to_thread(store.download_url, key)
    if url is not None:
        await respond(send, 302, {"Location": url, "Cache-Control": "no-store"})
        return
    path = store.local_path(key)
    size = os.path.getsize(path)
    start, stop = _range(headers.get("range"), size)
    status = 206 if (start, stop) != (0, size) else 200
    extra = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", "Content-Length": str(stop - start)}
    if status == 206:
        extra["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    await send({"type": "http.response.start", "status": status, "headers": _encode(extra)})
    if not body:
        await send({"type": "http.response.body", "body": b""})
        return
    with open(path, "rb") as file:
        file.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = await asyncio.to_thread(file.read, min(DOWNLOAD_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    if remaining > 0:  # the file shrank under us: end the response anyway
        await send({"type": "http.response.body", "body": b""})


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(value: str | None, size: int) -> tuple[int, int]:
    """[start, stop) of a single `Range: bytes=a-b` (or `-n`, `a-`); the whole file when absent
    or not a single range; 416 when it starts past the end."""
    match = RANGE.match((value or "").strip())
    if not match or not any(match.groups()):
        return 0, size
    first, last = match.groups()
    if not first:  # the last n bytes
        return max(0, size - int(last)), size
    start = int(first)
    stop = min(size, int(last) + 1) if last else size
    if start >= size or stop <= start:
        raise TusError(416, "Range not satisfiable")
    return start, stop


# --- answers -----------------------------------------------------------------------------------


def _base_url(headers: dict) -> str:
    configured = settings.ATTACHMENTS_CDN3_URL.rstrip("/")
    return configured or f"{headers.get('x-forwarded-proto', 'http')}://{headers.get('host', 'localhost')}"


def _tus_headers(extra: dict) -> dict:
    return {"Tus-Resumable": TUS_VERSION, **extra}


def _encode(headers: dict) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in headers.items()]


async def respond(send, status: int, headers: dict, *, body=None) -> None:
    payload = b"" if body is None else orjson.dumps(body)
    extra = dict(headers)
    if payload:
        extra["Content-Type"] = "application/json"
    extra["Content-Length"] = str(len(payload))
    await send({"type": "http.response.start", "status": status, "headers": _encode(extra)})
    await send({"type": "http.response.body", "body": payload})
