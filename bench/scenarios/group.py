"""`group`: a group of `--members` accounts (default 1,000), every member's socket open. One member
reads the group (`GET /v2/groups`: the state and its group send endorsements) and sends one
sealed multi-recipient message to all the others with the group send token, `--rounds` times:
the time until the last member has it. Then one administrator changes the group's title
back to back for `--seconds`: group changes per second on one group, and their latency."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
import uuid

import httpx

from bench.client import b64, open_socket, raise_open_file_limit, register_many
from bench.stats import ProcessMeter, percentile

MAX_MEMBERS = 1000  # the server's default GROUP_MAX_SIZE
WAIT_SECONDS = 30
MRM = "application/vnd.signal-messenger.mrm"


def new_group(members) -> dict:
    """A `PUT /v2/groups` body: the first account administers, everyone else is a full member.
    Keys and title are random bytes of the sizes clients send (the server never opens them)."""

    def member(account, role: str) -> dict:
        return {"userId": account.aci, "role": role, "profileKey": b64(os.urandom(65))}

    return {
        "publicKey": b64(os.urandom(97)),
        "version": 0,
        "title": b64(os.urandom(40)),
        "accessControl": {"attributes": "MEMBER", "members": "MEMBER", "addFromInviteLink": "UNSATISFIABLE"},
        "members": [member(members[0], "ADMINISTRATOR")] + [member(account, "DEFAULT") for account in members[1:]],
    }


def multi_recipient_payload(accounts, ciphertext: bytes) -> bytes:
    """Sealed Sender v2 (0x22): each recipient's device 1, its registration id and 48 bytes of key
    material, then the ephemeral key and the shared ciphertext."""
    count, out = len(accounts), bytearray([0x22])
    while True:  # varint
        byte = count & 0x7F
        count >>= 7
        out.append(byte | (0x80 if count else 0))
        if not count:
            break
    for account in accounts:
        out += uuid.UUID(account.aci).bytes + bytes([1]) + struct.pack(">H", account.registration_id & 0x3FFF)
        out += os.urandom(48)
    return bytes(out) + os.urandom(32) + ciphertext


async def run(args) -> dict:
    count = max(2, min(args.members, MAX_MEMBERS))
    raise_open_file_limit()
    accounts = await register_many(
        args.url, count, args.code, first_number=args.first_number, concurrency=args.register_concurrency
    )
    admin, sender = accounts[0], accounts[1]
    others = [account for account in accounts if account is not sender]
    group_header = {"X-Group-Id": b64(os.urandom(32))}
    arrivals: dict[int, list[float]] = {}

    def receiver(index: int):
        def received(body: bytes, arrived: float) -> None:
            arrivals.setdefault(index, []).append(arrived)

        return received

    async with httpx.AsyncClient(base_url=args.url, timeout=60) as http:
        started = time.monotonic()
        created = await http.put(
            "/v2/groups", content=json.dumps(new_group(accounts)),
            headers={**group_header, "Authorization": admin.authorization, "Content-Type": "application/json"},
        )  # fmt: skip
        created.raise_for_status()
        create_ms = (time.monotonic() - started) * 1000

        sockets = [await open_socket(args.url, account, receiver(i)) for i, account in enumerate(others)]
        await asyncio.sleep(1.0)
        arrivals.clear()  # nothing should have been queued, but start clean
        rounds, meter = [], ProcessMeter(args.server_pid)
        measured_from = time.monotonic()
        for round_number in range(args.rounds):
            started = time.monotonic()
            read = await http.get("/v2/groups", headers={**group_header, "Authorization": sender.authorization})
            read.raise_for_status()
            read_ms = (time.monotonic() - started) * 1000
            token = read.json()["groupSendEndorsements"]["token"]
            payload = multi_recipient_payload(others, os.urandom(1000))
            started = time.monotonic()
            response = await http.put(
                f"/v1/messages/multi_recipient?ts={int(time.time() * 1000)}",
                content=payload, headers={"Group-Send-Token": token, "Content-Type": MRM},
            )  # fmt: skip
            answered = time.monotonic()
            response.raise_for_status()
            deadline = started + WAIT_SECONDS
            while sum(len(a) > round_number for a in arrivals.values()) < len(others) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            got = [a[round_number] for a in arrivals.values() if len(a) > round_number]
            latencies = [(t - started) * 1000 for t in got]
            rounds.append(
                {
                    "received": len(got),
                    "read_ms": round(read_ms, 1),
                    "response_ms": round((answered - started) * 1000, 1),
                    "p50_ms": round(percentile(latencies, 50), 1),
                    "last_ms": round(max(latencies, default=float("nan")), 1),
                }
            )
        send_report = meter.report(time.monotonic() - measured_from)

        # Changes on the one group, one after the other, each with the next version.
        version = read.json()["group"]["version"]
        change_latencies, refused = [], 0
        admin_headers = {**group_header, "Authorization": admin.authorization, "Content-Type": "application/json"}
        measured_from = time.monotonic()
        while time.monotonic() - measured_from < args.seconds:
            body = {"version": version + 1, "modifyTitle": {"title": base64.b64encode(os.urandom(40)).decode()}}
            started = time.monotonic()
            response = await http.patch("/v2/groups", content=json.dumps(body), headers=admin_headers)
            if response.status_code == 200:
                version += 1
                change_latencies.append((time.monotonic() - started) * 1000)
            else:
                refused += 1
                if refused > 10:
                    raise SystemExit(f"group changes refused: {response.status_code} {response.text[:200]}")
        changes_seconds = time.monotonic() - measured_from

    for ws, reader in sockets:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    best = min(rounds, key=lambda r: r["last_ms"])
    return {
        "members": count,
        "create_ms": round(create_ms, 1),
        "rounds": rounds,
        "best_last_ms": best["last_ms"],
        "all_received": all(r["received"] == len(others) for r in rounds),
        "changes": len(change_latencies),
        "changes_per_second": round(len(change_latencies) / changes_seconds, 1),
        "change_p50_ms": round(percentile(change_latencies, 50), 1),
        "change_p99_ms": round(percentile(change_latencies, 99), 1),
        **send_report,
    }
