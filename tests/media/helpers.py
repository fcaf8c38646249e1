"""A tus 1.0.0 client as Signal's clients use it, for the media tests: an upload form from the
API, then the tus requests with the form's headers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = {"Content-Type": "application/offset+octet-stream"}


def upload_form(server_url: str, authorization: str, length: int | None = None) -> dict:
    query = {} if length is None else {"uploadLength": length}
    response = httpx.get(f"{server_url}/v4/attachments/form/upload", params=query, headers={"Authorization": authorization})
    assert response.status_code == 200, response.text
    return response.json()


def create(form: dict, length: int, body: bytes | None = None, **headers) -> httpx.Response:
    extra = {**TUS, **form["headers"], "Upload-Length": str(length), **headers}
    if body is not None:
        extra.update(OFFSET_TYPE)
    return httpx.post(form["signedUploadLocation"], content=body, headers=extra, timeout=60)


def head(form: dict, location: str) -> httpx.Response:
    return httpx.head(location, headers={**TUS, **form["headers"]})


def patch(form: dict, location: str, offset: int, body: bytes, **headers) -> httpx.Response:
    extra = {**TUS, **OFFSET_TYPE, **form["headers"], "Upload-Offset": str(offset), **headers}
    return httpx.patch(location, content=body, headers=extra, timeout=120)


def send_and_break(form: dict, location: str, offset: int, declared: int, body: bytes, *, creation_length: int | None = None) -> None:
    """A PATCH (or, with `creation_length`, a creation POST) that declares `declared` bytes but
    sends only `body`, then drops the connection: an interrupted upload."""
    parts = urlsplit(location)
    if creation_length is None:
        lines = [f"PATCH {parts.path} HTTP/1.1", f"Upload-Offset: {offset}"]
    else:
        lines = [f"POST {parts.path} HTTP/1.1", f"Upload-Length: {creation_length}"]
    lines += [f"Host: {parts.netloc}", "Tus-Resumable: 1.0.0", "Content-Type: application/offset+octet-stream", f"Content-Length: {declared}"]
    lines += [f"{name}: {value}" for name, value in form["headers"].items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)  # and hang up without the rest
