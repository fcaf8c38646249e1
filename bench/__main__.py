"""`python -m bench SCENARIO --url http://127.0.0.1:8000 [options]`: load scenarios against a running
server (see bench/README.md). Prints a table and, last, one JSON line with the summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

# The scenarios use the server's own protobuf and signing code; make the project importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.client import require_loopback  # noqa: E402
from bench.scenarios import discovery, fanout, group, idle, latency, prekeys, profiles, push, relay, upload  # noqa: E402

SCENARIOS = {
    "prekeys": prekeys, "relay": relay, "latency": latency, "idle": idle, "fanout": fanout, "push": push, "upload": upload,
    "profiles": profiles, "discovery": discovery, "group": group,
}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", default=os.environ.get("BENCH_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--code", default=os.environ.get("DEV_VERIFICATION_CODE", "123456"), help="the server's DEV_VERIFICATION_CODE")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure (bounded)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--http", action="store_true", help="prekeys: plain HTTP requests instead of tunnelled ones")
    parser.add_argument("--access-key", action="store_true", help="prekeys: anonymous sockets fetching with access keys")
    parser.add_argument("--pairs", type=int, default=8, help="relay: sender/receiver pairs")
    parser.add_argument("--window", type=int, default=16, help="relay: messages sent and not yet delivered, per pair; profiles, prekeys: requests in flight per socket")
    parser.add_argument("--sealed", action="store_true", help="relay: sealed-sender sends (no delivery receipts)")
    parser.add_argument("--cross", action="store_true", help="relay: receivers' sockets on --url2, another server process (every message crosses processes)")
    parser.add_argument("--url2", help="relay --cross: the second server process, for the receivers' sockets")
    parser.add_argument("--rate", type=float, default=200.0, help="latency: offered messages per second in total")
    parser.add_argument("--sockets", type=int, default=1000, help="idle: sockets to hold open (at most 10,000)")
    parser.add_argument("--recipients", type=int, default=1000, help="fanout: recipients of the send")
    parser.add_argument("--rounds", type=int, default=3, help="fanout, group: sends, each to every recipient")
    parser.add_argument("--members", type=int, default=1000, help="group: members of the group (at most 1,000)")
    parser.add_argument("--devices", type=int, default=10_000, help="push: offline devices, half APNs, half FCM")
    parser.add_argument("--workers", type=int, default=1, help="push: Celery worker processes")
    parser.add_argument("--senders", type=int, default=8, help="push: sockets sending, --window sends in flight each")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"), help="push, upload: its own database, dropped and migrated each run (default signalserver_bench_<scenario>)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"), help="push, upload: its Redis database, emptied each run (default db 9, db 10)")
    parser.add_argument("--uploads", type=int, default=4, help="upload: clients uploading at once")
    parser.add_argument("--size-mib", type=float, default=25.0, help="upload: MiB per upload (at most 100)")
    parser.add_argument("--local-store", action="store_true", help="upload: a local folder instead of an S3 store (SeaweedFS)")
    parser.add_argument("--with-relay", action="store_true", help="upload: relay alone, then relay during the uploads (--pairs, --window, --sealed)")
    parser.add_argument("--batch", type=int, default=1000, help="discovery: numbers per lookup (at most 5,000)")
    parser.add_argument("--register-concurrency", type=int, default=16, help="registrations at once")
    parser.add_argument("--server-pid", type=int, action="append", default=[], help="measure this process's CPU and RSS")
    parser.add_argument("--first-number", type=int, default=int.from_bytes(os.urandom(2), "big") * 10)
    args = parser.parse_args(argv)
    require_loopback(args.url)
    if args.url2:
        require_loopback(args.url2)
    module = SCENARIOS[args.scenario]
    args.database_url = args.database_url or getattr(module, "DEFAULT_DATABASE_URL", push.DEFAULT_DATABASE_URL)
    args.redis_url = args.redis_url or getattr(module, "DEFAULT_REDIS_URL", push.DEFAULT_REDIS_URL)
    args.seconds = min(args.seconds, 300.0)
    summary = asyncio.run(SCENARIOS[args.scenario].run(args))
    summary = {"scenario": args.scenario, **summary}
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
