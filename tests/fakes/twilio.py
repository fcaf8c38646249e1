"""A local Twilio REST API: Programmable Messaging (`Messages.json`) and Voice (`Calls.json`).

Answers like Twilio: 201 with the created resource (`sid`, `status`, …) on success; on failure a
JSON error `{"code", "message", "more_info", "status"}` with Twilio's error codes, e.g. 21211 for an
invalid 'To' number, 20003 for bad credentials."""

from __future__ import annotations

import base64
import re
import secrets
from collections import deque

from tests.fakes.http import FakeServer, RecordedRequest, Reply

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-twilio-auth-token"
FROM_NUMBER = "+15005550006"
RESOURCE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/(?P<resource>Messages|Calls)\.json$")


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
    )


class FakeTwilio(FakeServer):
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token
        self.invalid_numbers: set[str] = set()  # answered with 21211
        self.next_replies: deque[Reply] = deque()  # canned answers, used before the normal rules
        self.messages: list[dict] = []  # forms of the messages accepted
        self.calls: list[dict] = []  # forms of the calls accepted

    def answer(self, request: RecordedRequest) -> Reply:
        if self.next_replies:
            return self.next_replies.popleft()
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return twilio_error(401, 20003, "Authenticate")
        match = RESOURCE.match(request.path)
        if request.method != "POST" or not match or match["sid"] != self.account_sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        form = request.form
        if match["resource"] == "Messages":
            return self._message(form)
        return self._call(form)

    def _message(self, form: dict) -> Reply:
        if not form.get("To"):
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        if form["To"] in self.invalid_numbers:
            return twilio_error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        self.messages.append(form)
        sid = "SM" + secrets.token_hex(16)
        return Reply(201, {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]})

    def _call(self, form: dict) -> Reply:
        if not form.get("To"):
            return twilio_error(400, 21201, "No 'To' number is specified")
        if not form.get("From"):
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not (form.get("Twiml") or form.get("Url")):
            return twilio_error(400, 21205, "Url parameter is required.")
        if form["To"] in self.invalid_numbers:
            return twilio_error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        self.calls.append(form)
        return Reply(201, {"sid": "CA" + secrets.token_hex(16), "status": "queued", "to": form["To"]})
