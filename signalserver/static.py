"""Static files (the admin's styles and scripts, the Swagger UI and ReDoc assets of `/v1/docs` and
`/v1/redoc`) served by the web process itself, so that `make serve` needs no proxy and no
`collectstatic` step (docs/deployment.md, "Static files").

WhiteNoise indexes, once at start-up, every file Django's staticfiles finders know (the installed
apps' `static/` folders, read in place: nothing is copied, no directory has to be writable) and
decides each answer: content type, ETag, Last-Modified, 304 for a conditional request, 206 for a
range. WhiteNoise speaks WSGI; this module answers in ASGI, reading files off the event loop.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.staticfiles import finders
from whitenoise import WhiteNoise

# What `collectstatic` leaves out by default: version-control folders, dotfiles, editor backups.
IGNORE_PATTERNS = ["CVS", ".*", "*~"]
# Files are not renamed by content hash (no manifest storage: every template would then need a
# collectstatic run first), so browsers revalidate after a minute; an upgrade shows at once.
MAX_AGE_SECONDS = 60
CHUNK_BYTES = 256 * 1024


class StaticFiles:
    """`serves(path)`: whether `path` is a static file; calling it as an ASGI app answers one."""

    def __init__(self):
        # No wrapped WSGI application: only paths in `files` are ever routed here.
        self.whitenoise = WhiteNoise(None, max_age=MAX_AGE_SECONDS)
        prefix = urlparse(settings.STATIC_URL).path
        for url, path in _finder_files(prefix).items():
            self.whitenoise.add_file_to_dictionary(url, path)

    def serves(self, path: str) -> bool:
        return path in self.whitenoise.files

    async def __call__(self, scope, receive, send):
        # WhiteNoise reads the request headers under their WSGI names (HTTP_IF_NONE_MATCH, ...).
        request_headers = {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        static_file = self.whitenoise.files[scope["path"]]
        response = await asyncio.to_thread(static_file.get_response, scope["method"], request_headers)
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
        await send({"type": "http.response.start", "status": int(response.status), "headers": headers})
        if response.file is None:  # HEAD, 304, 405, 416
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            chunk, more = await asyncio.to_thread(response.file.read, CHUNK_BYTES), True
            while more:  # read one chunk ahead: the last one goes out with more_body false
                following = await asyncio.to_thread(response.file.read, CHUNK_BYTES) if chunk else b""
                more = bool(following)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                chunk = following
        finally:
            response.file.close()


def _finder_files(prefix: str) -> dict[str, str]:
    """URL → file for every static file, the first finder's file winning as in `collectstatic`."""
    files: dict[str, str] = {}
    for finder in finders.get_finders():
        for relative, storage in finder.list(IGNORE_PATTERNS):
            folder = (getattr(storage, "prefix", None) or "").strip("/")
            url = prefix + (folder + "/" if folder else "") + relative.replace(os.sep, "/")
            files.setdefault(url, storage.path(relative))
    return files
