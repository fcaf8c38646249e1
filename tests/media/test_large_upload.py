"""The one large transfer of the test suite: a 100 MB encrypted attachment, uploaded over tus to the
Procfile's web server with a real S3 store, interrupted twice and resumed to completion; the
download is the same bytes, and the server's memory stays flat while it streams (it holds a part,
8 MiB, per upload, never the body)."""

import hashlib
import hmac
import os
import threading
import time

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench.stats import rss_bytes
from tests.factories import DeviceFactory, device_auth
from tests.media.helpers import create, patch, send_and_break, upload_form
from tests.media.test_tus import wait_for_offset
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
SIZE = 100 * MiB
# The server's resident memory may grow by this much while it takes 100 MB: a part in the buffer
# and what botocore and the allocator keep around sending it (measured: +19 MiB; +40-46 MiB when
# each part was copied once more), far below the 100 MiB that holding the body would take.
FLAT_RSS_BYTES = 48 * MiB


def encrypted_attachment(size: int) -> bytes:
    """As Signal clients encrypt attachments: AES-256-CBC with PKCS#7 padding, IV first, an
    HMAC-SHA256 of IV and ciphertext last; `size` bytes in all."""
    aes_key, mac_key, iv = os.urandom(32), os.urandom(32), os.urandom(16)
    plaintext = os.urandom(size - 16 - 32 - 16)  # the padding adds one block to a whole number of blocks
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    body = iv + encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    return body + hmac.new(mac_key, body, hashlib.sha256).digest()


class PeakRss:
    """Samples a process's resident memory every 20 ms in a thread, until stopped."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.idle = rss_bytes([pid])
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes([self.pid]))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak - self.idle


def test_a_100_mb_attachment_interrupted_twice_is_resumed_whole_with_flat_server_memory(s3_server, s3_bucket):
    data = encrypted_attachment(SIZE)
    assert len(data) == SIZE
    environment = {
        "MEDIA_S3_BUCKET": s3_bucket,
        "MEDIA_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MEDIA_S3_ACCESS_KEY_ID": s3_server.access_key,
        "MEDIA_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    with live_server_process(procfile=True, **environment) as server:
        authorization = device_auth(DeviceFactory())
        warm_up = upload_form(server.url, authorization, 10)
        assert create(warm_up, 10, b"0123456789").status_code == 201  # imports, connections: before measuring
        form = upload_form(server.url, authorization, SIZE)
        location = f"{form['signedUploadLocation']}/{form['key']}"
        memory = PeakRss(server.pid)

        # 1. Creation with the whole body, as Signal desktop sends it: cut off after 30 MiB + 7.
        send_and_break(form, form["signedUploadLocation"], 0, SIZE, data[: 30 * MiB + 7], creation_length=SIZE)
        first = wait_for_offset(form, location, 30 * MiB + 7, timeout=30)
        # 2. The client resumes from there with the rest; cut off again at 70 MiB + 11.
        send_and_break(form, location, first, SIZE - first, data[first : 70 * MiB + 11])
        second = wait_for_offset(form, location, 70 * MiB + 11, timeout=30)
        # 3. The rest.
        response = patch(form, location, second, data[second:])
        growth = memory.stop()

        assert (first, second) == (30 * MiB + 7, 70 * MiB + 11)
        assert response.status_code == 204 and response.headers["Upload-Offset"] == str(SIZE)
        digest = hashlib.sha256()
        with httpx.stream("GET", f"{server.url}/attachments/{form['key']}", follow_redirects=True, timeout=120) as download:
            assert download.status_code == 200
            for chunk in download.iter_bytes():
                digest.update(chunk)
        assert digest.digest() == hashlib.sha256(data).digest()
        assert growth < FLAT_RSS_BYTES, f"the server grew by {growth / MiB:.1f} MiB"
        print(f"server RSS: idle {memory.idle / MiB:.1f} MiB, peak +{growth / MiB:.1f} MiB during 100 MB")
