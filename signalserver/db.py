"""ORM work from async code (consumers, the WebSocket tunnel, ASGI middleware).

Channels' `database_sync_to_async` is thread-sensitive by default, and outside a Django request
nothing gives a call its own thread: every socket of a process then queues behind every other on
one thread, which capped a 2-worker server at about 140 messages a second. Here the calls run on
a fixed pool of threads per process instead, and one socket's calls stay in order because it
awaits each.

Each pool thread keeps its database connection between calls, as a worker with persistent
connections would: taking one from the connection pool and giving it back around every call
cost about a quarter of a millisecond of CPU, on every send and every batch of acks. A
connection that saw an error is checked and closed when it is broken, and before each call one
that the server has closed meanwhile (PostgreSQL restarted) is replaced, so the first calls after
an outage do not fail on it; `close_thread_connections` lets go of all of them (before a test
database is dropped).
"""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connection, connections

from signalserver.postgresql.base import server_closed

# Half the database pool's connections: the rest stay for HTTP requests, which Django runs on
# threads of their own.
THREADS = max(2, settings.DB_POOL_MAX_SIZE // 2)
_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="db")


class _InDbThread(SyncToAsync):
    def thread_handler(self, loop, *args, **kwargs):
        _drop_closed_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _keep_usable_connections()


def _drop_closed_connections() -> None:
    """Let go of a kept connection that the server has closed since the last call (a kernel
    check, no round trip: `signalserver.postgresql.base.server_closed`)."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.vendor != "postgresql" or connection.in_atomic_block:
            continue
        if server_closed(connection.connection):
            connection.connection.close()  # closed, the pool drops it and opens a replacement
            connection.close()


def _keep_usable_connections() -> None:
    """Django's end-of-request check without its age limit: close what is broken or left in
    the wrong autocommit state, keep the rest for this thread's next call."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.get_autocommit() != connection.settings_dict["AUTOCOMMIT"]:
            connection.close()
        elif connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


def bound_cursor():
    """A cursor of the default database for raw SQL on hot paths: on PostgreSQL its parameters
    are bound by the server (`signalserver.postgresql.base.DatabaseWrapper.bound_cursor`). Mark
    each parameter `%s` as in any Django cursor's SQL, and an array parameter `%b` in SQL that only
    PostgreSQL runs: binary arrays skip the quoting of every element (a regular expression over
    each envelope's hex digits)."""
    return connection.bound_cursor() if connection.vendor == "postgresql" else connection.cursor()


def for_update(*, no_key: bool = False) -> str:
    """The row-lock clause for raw SQL, as the ORM's `select_for_update(no_key=...)` writes it;
    empty on SQLite, which locks the whole database instead."""
    if not connection.features.has_select_for_update:
        return ""
    return " FOR NO KEY UPDATE" if no_key and connection.features.has_select_for_no_key_update else " FOR UPDATE"


def any_of(column: str, values: list, sql_type: str) -> tuple[str, list]:
    """`column` equal to any of `values`, as raw SQL for a `bound_cursor` and its parameters: one
    binary array on PostgreSQL (one statement text for any count, so it is prepared once), a list
    elsewhere (UUIDs as the 32 hex digits Django stores on SQLite)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%b::{sql_type}[])", [values]
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(values))})", [v.hex if isinstance(v, uuid.UUID) else v for v in values]


def as_uuid(value) -> uuid.UUID:
    """A UUID column read with raw SQL: a UUID on PostgreSQL, 32 hex digits on SQLite."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def in_db_thread(function):
    """`await in_db_thread(f)(*args)`: run `f` on a pool thread, on that thread's connection."""
    return _InDbThread(function, thread_sensitive=False, executor=_executor)


def close_thread_connections(timeout: float = 10.0) -> None:
    """Close the connection every pool thread keeps. One task per thread: each waits at a barrier
    until all have started, so no thread runs two of them."""
    barrier = threading.Barrier(THREADS)

    def close() -> None:
        connections.close_all()
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError:
            pass

    for future in [_executor.submit(close) for _ in range(THREADS)]:
        future.result(timeout)
