"""A local hCaptcha `siteverify` endpoint: form `secret`, `response`, `remoteip`, `sitekey` →
`{"success": bool, "error-codes": [...]}` (hCaptcha answers 200 either way)."""

from __future__ import annotations

from collections import deque

from tests.fakes.http import FakeServer, RecordedRequest, Reply

SECRET = "0x" + "ab" * 20
SITE_KEY = "10000000-ffff-ffff-ffff-000000000001"
VERIFY_PATH = "/siteverify"


class FakeHCaptcha(FakeServer):
    def __init__(self, secret: str = SECRET, site_key: str = SITE_KEY):
        super().__init__()
        self.secret, self.site_key = secret, site_key
        self.solved: set[str] = set()  # tokens that verify
        self.next_replies: deque[Reply] = deque()

    @property
    def verify_url(self) -> str:
        return self.url + VERIFY_PATH

    def answer(self, request: RecordedRequest) -> Reply:
        if self.next_replies:
            return self.next_replies.popleft()
        if request.method != "POST" or request.path != VERIFY_PATH:
            return Reply(404, {"error": "not found"})
        form = request.form
        if not form.get("secret"):
            return Reply(200, {"success": False, "error-codes": ["missing-input-secret"]})
        if form["secret"] != self.secret:
            return Reply(200, {"success": False, "error-codes": ["invalid-input-secret"]})
        if not form.get("response"):
            return Reply(200, {"success": False, "error-codes": ["missing-input-response"]})
        if form.get("sitekey") not in (None, self.site_key):
            return Reply(200, {"success": False, "error-codes": ["sitekey-secret-mismatch"]})
        if form["response"] not in self.solved:
            return Reply(200, {"success": False, "error-codes": ["invalid-input-response"]})
        return Reply(200, {"success": True, "challenge_ts": "2026-01-01T00:00:00Z", "hostname": "test"})
