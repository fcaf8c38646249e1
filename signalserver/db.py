"""ORM work from async code (consumers, the WebSocket tunnel, ASGI middleware).

Channels' `database_sync_to_async` is thread-sensitive by default, and outside a Django request
nothing gives a call its own thread: every socket of a process then queues behind every other on
one thread, which capped a 2-worker server at about 140 messages a second. Here the calls run on
the event loop's thread pool instead; each still closes (returns to the pool) its database
connection when it is done, and one socket's calls stay in order because it awaits each.
"""

from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings

# One pool per process, shared by every event loop. Half the database pool's connections: the
# rest stay for HTTP requests, which Django runs on threads of their own.
_executor = ThreadPoolExecutor(max_workers=max(2, settings.DB_POOL_MAX_SIZE // 2), thread_name_prefix="db")


def in_db_thread(function):
    """`await in_db_thread(f)(*args)`: run `f` on a pool thread with Django's connection handling."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_executor)
