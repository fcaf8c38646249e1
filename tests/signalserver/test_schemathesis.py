"""The OpenAPI schema describes every status and body the server really sends: schemathesis drives
every operation of a live server, authenticated as a registered account with a linked device, and
checks each answer against the schema the server itself publishes (/v1/openapi.json).

Bounded and repeatable: a fixed seed, derandomized generation and a few examples per operation (a
couple of thousand requests). Path values are drawn half the time from real ones (the account's and
a peer's service ids and devices), so sends, key fetches and lookups get past validation too.
Rate limits keep their defaults: the 429s they answer are checked like every other answer."""

import asyncio
from collections import Counter

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from messaging.certificates import ensure_development_keys
from tests.live_clients import LiveAccount, link_device, register_account
from tests.servers import live_server_process

pytestmark = pytest.mark.django_db(transaction=True)

# Multi-recipient payloads are binary: sent as generated, byte for byte.
schemathesis.serializer.alias("application/vnd.signal-messenger.mrm", "application/octet-stream")

SEED = 15
MAX_EXAMPLES = 25  # per operation and generation phase
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
DELETE_ACCOUNT = {"method": "DELETE", "path": "/v1/accounts/me"}
# Headers that frame the HTTP exchange belong to the HTTP server (daphne here, uvicorn in
# production), which refuses a malformed one before the API sees the request: never generated.
FRAMING_HEADERS = {"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect", "te", "trailer"}


def config(account: LiveAccount, peer: LiveAccount) -> schemathesis.Config:
    real = {"probability": 0.5}
    credentials = {"username": f"{account.aci}.{account.device_id}", "password": account.password}
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Nothing kept between runs (no examples database, no cache under the project): the
            # same run every time.
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "cache": {"enabled": False},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "output": {"sanitization": {"enabled": False}},  # a failure shows the request as sent
            # Credentials where the schema asks for them (verification, registration and lookups go
            # without, as clients send them).
            "auth": {"openapi": {"deviceCredentials": credentials}},
            "dictionaries": {
                "service_ids": {"values": [peer.aci, f"PNI:{peer.pni}", account.aci]},
                "device_ids": {"values": ["1", "2", "*"]},
            },
            "parameters": {
                "path.service_id": {"dictionary": "service_ids", **real},
                "path.destination": {"dictionary": "service_ids", **real},
                "path.source": {"dictionary": "service_ids", **real},
                "path.device_id": {"dictionary": "device_ids", **real},
            },
        }
    )


def without_framing_headers(context, case):
    for name in [name for name in case.headers or {} if name.lower() in FRAMING_HEADERS]:
        del case.headers[name]
    return case


def run(url: str, account: LiveAccount, peer: LiveAccount, select) -> tuple[set[str], Counter, list[str]]:
    """Run schemathesis as `account` on the operations `select(schema)` keeps: (those operations,
    requests sent by operation, one report per distinct failure)."""
    schema = select(schemathesis.openapi.from_url(f"{url}/v1/openapi.json", config=config(account, peer)))
    schema.hook("map_case")(without_framing_headers)
    operations = {result.ok().label for result in schema.get_all_operations()}
    sent: Counter = Counter()
    failures: dict[tuple, str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id in recorder.interactions:
                sent[recorder.cases[case_id].value.operation.label] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        key = (recorder.label, check.name, failure.title, failure.message.partition("\n")[0])
                        failures.setdefault(
                            key, f"{recorder.label}: {failure.title}\n{failure.message}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            failures.setdefault((event.label, repr(event.value)), f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            failures.setdefault(("fatal", repr(event.exception)), f"schemathesis failed: {event.exception!r}")
    return operations, sent, list(failures.values())


def test_every_answer_of_every_operation_is_one_the_schema_describes():
    ensure_development_keys()  # as every server run has them (503 without: an operator's mistake)
    with live_server_process() as server:
        account, peer = (asyncio.run(register_account(server.url)) for _ in range(2))
        for owner in (account, peer):
            asyncio.run(link_device(server.url, owner))
        operations, sent, failures = run(server.url, account, peer, lambda schema: schema.exclude(**DELETE_ACCOUNT))
        # Deleting the account would end every other operation's run: it goes last, as the peer.
        last, deleted, last_failures = run(server.url, peer, account, lambda schema: schema.include(**DELETE_ACCOUNT))

    assert not failures + last_failures, "\n\n".join(failures + last_failures)
    assert set(sent + deleted) == operations | last and len(operations | last) > 30
