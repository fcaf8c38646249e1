"""Bounded connections (issue 20): closing thousands of sockets at once, or a storm of requests,
holds the server to its pools and leaves nothing behind.

Closing 10,000 idle sockets at once used to make the server open a Redis connection per closing
socket (channel-layer `group_discard` and the presence release, each on a pool without a bound)
until Redis refused every client; thousands of socket handlers died with "Timeout connecting".
Now every Redis client of a process takes its connections from a pool of at most
REDIS_MAX_CONNECTIONS that waits for a free connection (docs/deployment.md), and PostgreSQL's pool
holds at most DB_POOL_MAX_SIZE.

Against the Procfile's web process (uvicorn, one worker) on a Redis of the test's own whose
`maxclients` is far below the number of sockets (as the machine's Redis was below 10,000):

- SOCKETS authenticated delivery sockets open, idle, and all close at once. Meanwhile the
  connections the server holds to Redis (`CLIENT LIST`, by pool name) stay within its pools, and
  its PostgreSQL sessions (`pg_stat_activity`, by application name) within DB_POOL_MAX_SIZE.
- Afterwards the server answers (readiness, a request, a new socket), it logged no error and no
  traceback, and Redis holds nothing of the sockets: no presence key, no channel-layer group.
- A storm of concurrent HTTP requests keeps its PostgreSQL sessions within DB_POOL_MAX_SIZE too
  (what waits past DB_POOL_TIMEOUT_MS is shed with 503 and Retry-After).
- Threads publishing Celery tasks at once hold at most REDIS_MAX_CONNECTIONS broker connections.

Every wait is bounded; only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import redis
import websockets

from accounts.models import Account, Device
from signalserver.auth import SaltedTokenHash
from signalserver.proto.websocket_pb2 import WebSocketMessage
from tests.factories import DEFAULT_PASSWORD, basic_auth
from tests.faults.backing import RedisServer
from tests.faults.helpers import tracebacks
from tests.live_clients import QUEUE_EMPTY_PATH, ChatSocket
from tests.servers import server_processes  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = 2000
CONNECT_CONCURRENCY = 64
REDIS_MAX_CONNECTIONS = 8  # the server's pool size under test (each pool)
# The server's pools: the channel layer's, the asyncio clients' and the threads' (Celery runs
# its tasks eagerly here, without a broker connection).
POOL_NAMES = ("signalserver-layer", "signalserver-async", "signalserver-sync")
# All of them, and the connection a readiness probe opens for itself.
MOST_REDIS_CONNECTIONS = len(POOL_NAMES) * REDIS_MAX_CONNECTIONS + 1
MAXCLIENTS = 1000  # the Redis refuses more clients than this, as the machine's did past 10,000
DB_POOL_MAX_SIZE = 6
HTTP_STORM_REQUESTS = 600
HTTP_STORM_CONCURRENCY = 200
SAMPLE_SECONDS = 0.05
RESIDUE_DEADLINE = 15.0  # seconds after the last close for the server to have let go of everything
TIMEOUT = 10.0  # any single connect, close or request
OBSERVER = "test-observer"  # the name of the test's own Redis connections


@pytest.fixture
def own_redis():
    server = RedisServer()
    try:
        server.start()
        admin = redis.Redis.from_url(server.url, client_name=OBSERVER)
        admin.config_set("maxclients", MAXCLIENTS)  # our own Redis, never the shared one
        admin.close()
        yield server
    finally:
        server.cleanup()


def make_devices(count: int) -> list[str]:
    """`count` accounts with one device each, written directly (registering thousands over the API
    would take minutes); their Authorization headers."""
    credentials = SaltedTokenHash.generate(DEFAULT_PASSWORD)
    accounts = Account.objects.bulk_create([Account() for _ in range(count)])
    Device.objects.bulk_create(
        Device(
            account=account,
            device_id=1,
            auth_token_hash=credentials.hash,
            auth_salt=credentials.salt,
            registration_id=index % 16000 + 1,
            fetches_messages=True,
        )
        for index, account in enumerate(accounts)
    )
    return [basic_auth(f"{account.aci}.1", DEFAULT_PASSWORD) for account in accounts]


class Sampler:
    """Samples, every SAMPLE_SECONDS on a thread of its own, the server's connections: to the
    test's Redis by pool (`CLIENT LIST`'s names; every client there but the test's is the server's) and to
    PostgreSQL (its sessions, by application name). Keeps the most seen of each."""

    def __init__(self, redis_url: str, application_name: str):
        self.redis = redis.Redis.from_url(redis_url, client_name=OBSERVER)
        self.application_name = application_name
        self.most_redis: dict[str, int] = {}
        self.most_redis_total = 0
        self.most_postgres = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        self.redis.close()

    def redis_connections(self) -> dict[str, int]:
        """The server's Redis connections now, by name ("" for one not named yet: a pool names a
        connection right after it connects)."""
        counts: dict[str, int] = {}
        for client in self.redis.client_list():
            if client.get("name") != OBSERVER:
                counts[client.get("name", "")] = counts.get(client.get("name", ""), 0) + 1
        return counts

    def sample(self) -> None:
        from django.db import connections

        connections_now = self.redis_connections()
        self.most_redis_total = max(self.most_redis_total, sum(connections_now.values()))
        for name, count in connections_now.items():
            self.most_redis[name] = max(self.most_redis.get(name, 0), count)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.application_name])
            self.most_postgres = max(self.most_postgres, cursor.fetchone()[0])

    def _run(self) -> None:
        from django.db import connections

        try:
            while not self._stop.wait(SAMPLE_SECONDS):
                self.sample()
        finally:
            connections.close_all()


async def open_socket(ws_url: str, authorization: str):
    """An idle delivery socket whose reader answers the server's requests (queue/empty) with 200."""
    ws = await websockets.connect(
        f"{ws_url}/v1/websocket/", additional_headers={"Authorization": authorization}, open_timeout=TIMEOUT, close_timeout=TIMEOUT
    )

    async def read() -> None:
        try:
            async for data in ws:
                frame = WebSocketMessage()
                frame.ParseFromString(data)
                if frame.type == WebSocketMessage.REQUEST:
                    reply = WebSocketMessage(type=WebSocketMessage.RESPONSE)
                    reply.response.id, reply.response.status, reply.response.message = frame.request.id, 200, "OK"
                    await ws.send(reply.SerializeToString())
        except websockets.ConnectionClosed:
            pass

    return ws, asyncio.ensure_future(read())


def keys_left(client: redis.Redis) -> list[str]:
    """What the sockets may leave in Redis: presence keys and channel-layer groups."""
    return [key.decode() for pattern in ("presence:*", "asgi:group:*") for key in client.scan_iter(match=pattern, count=1000)]


async def storm(server, authorizations: list[str], redis_client: redis.Redis) -> dict:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(authorization: str):
        async with gate:
            return await open_socket(server.ws_url, authorization)

    started = time.monotonic()
    sockets = await asyncio.gather(*(connect(authorization) for authorization in authorizations))
    opened_in = time.monotonic() - started
    # Every socket holds its presence key and its device group: what must go when they close.
    held = await asyncio.to_thread(keys_left, redis_client)
    await asyncio.sleep(1)  # idle
    assert sum(ws.state.name == "OPEN" for ws, _ in sockets) == SOCKETS

    started = time.monotonic()
    await asyncio.gather(*(ws.close() for ws, _ in sockets))
    await asyncio.wait_for(asyncio.gather(*(reader for _, reader in sockets)), TIMEOUT)
    closed_in = time.monotonic() - started

    deadline = time.monotonic() + RESIDUE_DEADLINE
    left = await asyncio.to_thread(keys_left, redis_client)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        left = await asyncio.to_thread(keys_left, redis_client)
    settled_in = time.monotonic() - started
    return {"opened_in": opened_in, "closed_in": closed_in, "settled_in": settled_in, "held": held, "left": left}


async def still_serves(server, authorization: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        whoami = await http.get("/v1/accounts/whoami", headers={"Authorization": authorization})
        assert whoami.status_code == 200, whoami.text
    async with await ChatSocket.connect(server.ws_url, authorization, timeout=TIMEOUT) as socket:
        request = await socket.next_request(TIMEOUT)
        assert request.path == QUEUE_EMPTY_PATH
        keepalive = await socket.request("GET", "/v1/keepalive", timeout=TIMEOUT)
        assert keepalive.status == 200


def assert_logged_nothing_wrong(output: str) -> None:
    assert tracebacks(output) == [], output[-6000:]
    bad = [line for line in output.splitlines() if '"level": "error"' in line or "unavailable" in line]
    assert bad == [], "\n".join(bad[:20])


def test_closing_thousands_of_sockets_at_once_stays_within_the_pools_and_leaves_nothing(server_processes, own_redis):  # noqa: F811
    authorizations = make_devices(SOCKETS + 1)
    (server,) = server_processes(
        procfile=True,
        REDIS_URL=own_redis.url,
        REDIS_MAX_CONNECTIONS=str(REDIS_MAX_CONNECTIONS),
        DB_POOL_MAX_SIZE=str(DB_POOL_MAX_SIZE),
        LOG_LEVEL="WARNING",
    )
    redis_client = redis.Redis.from_url(own_redis.url, client_name=OBSERVER)
    started = time.monotonic()
    with Sampler(own_redis.url, server.application_name) as sampler:
        figures = asyncio.run(storm(server, authorizations[:SOCKETS], redis_client))
        asyncio.run(still_serves(server, authorizations[SOCKETS]))
    took = time.monotonic() - started

    assert len(figures["held"]) == 2 * SOCKETS, len(figures["held"])  # a presence key and a group each
    assert figures["left"] == [], f"{len(figures['left'])} keys left, e.g. {figures['left'][:5]}"
    assert sampler.most_redis_total <= MOST_REDIS_CONNECTIONS, sampler.most_redis
    assert all(sampler.most_redis.get(name, 0) <= REDIS_MAX_CONNECTIONS for name in POOL_NAMES), sampler.most_redis
    assert 0 < sampler.most_postgres <= DB_POOL_MAX_SIZE, sampler.most_postgres
    assert_logged_nothing_wrong(server.output(10**7))
    redis_client.close()
    print(
        f"{SOCKETS} sockets opened in {figures['opened_in']:.1f} s, closed at once in {figures['closed_in']:.1f} s, "
        f"nothing left in Redis {figures['settled_in']:.1f} s after the first close; most Redis connections "
        f"{sampler.most_redis_total}, per pool {sampler.most_redis} (bound {REDIS_MAX_CONNECTIONS} each), most PostgreSQL sessions "
        f"{sampler.most_postgres} (pool {DB_POOL_MAX_SIZE}); {took:.1f} s in all"
    )


def test_a_storm_of_requests_stays_within_the_database_pool(server_processes, own_redis):  # noqa: F811
    authorizations = make_devices(50)
    (server,) = server_processes(
        procfile=True,
        REDIS_URL=own_redis.url,
        REDIS_MAX_CONNECTIONS=str(REDIS_MAX_CONNECTIONS),
        DB_POOL_MAX_SIZE=str(DB_POOL_MAX_SIZE),
        LOG_LEVEL="WARNING",
    )

    async def requests() -> list[int]:
        gate = asyncio.Semaphore(HTTP_STORM_CONCURRENCY)
        # Idle connections dropped well before uvicorn's 5 s keep-alive ends them: on a loaded
        # machine a request then and there met a connection the server had just closed.
        limits = httpx.Limits(max_connections=HTTP_STORM_CONCURRENCY, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT * 3, limits=limits) as http:

            async def one(index: int) -> int:
                async with gate:
                    authorization = authorizations[index % len(authorizations)]
                    # Upgrades (database work on the socket threads) among plain requests.
                    if index % 4 == 0:
                        async with await ChatSocket.connect(server.ws_url, authorization, timeout=TIMEOUT * 3):
                            return 200
                    response = await http.get("/v1/accounts/whoami", headers={"Authorization": authorization})
                    if response.status_code == 503:
                        assert int(response.headers["Retry-After"]) > 0
                    return response.status_code

            return await asyncio.gather(*(one(index) for index in range(HTTP_STORM_REQUESTS)))

    with Sampler(own_redis.url, server.application_name) as sampler:
        started = time.monotonic()
        statuses = asyncio.run(requests())
        took = time.monotonic() - started
        asyncio.run(still_serves(server, authorizations[0]))

    # Answered, or shed: a request that waited DB_POOL_TIMEOUT_MS for a connection gets 503 and
    # Retry-After (docs/deployment.md), never a connection beyond the pool.
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) >= HTTP_STORM_REQUESTS // 4, statuses.count(503)
    assert 0 < sampler.most_postgres <= DB_POOL_MAX_SIZE, sampler.most_postgres
    assert sampler.most_redis_total <= MOST_REDIS_CONNECTIONS, sampler.most_redis
    assert tracebacks(server.output(10**7)) == [], server.output(6000)
    print(
        f"{HTTP_STORM_REQUESTS} requests, {HTTP_STORM_CONCURRENCY} at once, in {took:.1f} s: "
        f"{statuses.count(200)} answered 200, {statuses.count(503)} 503; most PostgreSQL sessions "
        f"{sampler.most_postgres} (pool {DB_POOL_MAX_SIZE}); Redis {sampler.most_redis}"
    )


def test_publishing_tasks_from_many_threads_stays_within_the_broker_pool(own_redis, settings):
    """Celery's side (web processes publish push tasks from their threads): the broker connections
    of a process stay within REDIS_MAX_CONNECTIONS however many threads publish at once."""
    from celery import Celery

    app = Celery("signalserver-bounded-test")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=own_redis.url, task_always_eager=False)
    threads, tasks_each = 4 * settings.REDIS_MAX_CONNECTIONS, 20
    ready = threading.Barrier(threads)
    observer = redis.Redis.from_url(own_redis.url, client_name=OBSERVER)
    most = 0

    def publish() -> None:
        ready.wait(timeout=TIMEOUT)
        for _ in range(tasks_each):
            app.send_task("messaging.tasks.purge_expired_messages_task")

    workers = [threading.Thread(target=publish) for _ in range(threads)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        most = max(most, sum(client.get("name") != OBSERVER for client in observer.client_list()))
        time.sleep(0.01)
    for worker in workers:
        worker.join(timeout=TIMEOUT)
    published = observer.llen("celery")
    app.close()
    observer.close()
    assert published == threads * tasks_each
    assert 0 < most <= settings.REDIS_MAX_CONNECTIONS, most
