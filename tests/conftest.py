import pytest
from rest_framework.test import APIClient

from tests.factories import device_auth


@pytest.fixture
def client():
    """An API client without credentials."""
    return APIClient()


@pytest.fixture
def client_for():
    """`client_for(device)`: an API client carrying that device's Basic credentials."""

    def make(device, password=None):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=device_auth(device, *([password] if password else [])))
        return api

    return make


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Every test starts with full rate-limit buckets and reads the operator settings afresh (the
    database of the previous test was rolled back under this process's copy)."""
    from signalserver import operator_settings, ratelimit
    from push.services import forget_push_windows
    from signalserver.websocket import forget_flood_penalties

    ratelimit.buckets().delete([ratelimit.bucket_key("*", "*")])
    operator_settings.forget()
    forget_flood_penalties()
    forget_push_windows()
    yield
    operator_settings.forget()


@pytest.fixture(scope="session", autouse=True)
def release_database_sessions(django_db_setup):
    """Before pytest-django drops the test database: the socket threads (signalserver.db) and
    asgiref's thread for thread-sensitive calls (async tests' `sync_to_async`) let go of the
    connections they keep, and the connection pools close their idle connections."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from signalserver.db import close_thread_connections

    close_thread_connections()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
    for connection in connections.all():
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()


@pytest.fixture
async def reap_stray_tasks():
    """After an async test: cancel what it left running, repeatedly. Python 3.11's wait_for can
    swallow a single cancellation (a task then runs on), and pytest-asyncio's runner cancels once
    and waits for ever; tasks still alive after 10 s are named on stderr."""
    import asyncio
    import sys

    yield
    current = asyncio.current_task()
    for _ in range(100):
        stray = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if not stray:
            return
        for task in stray:
            task.cancel()
        await asyncio.wait(stray, timeout=0.1)
    print(f"tasks that ignore cancellation: {stray}", file=sys.stderr)


@pytest.fixture
async def fresh_channel_layer():
    """An async test gets a channel layer of its own. channels_redis keeps a receive lock and
    per-channel locks on the layer object, bound to the event loop that first waited on them;
    with one layer for the whole run, a lock left from an earlier test's loop failed a later
    test now and then ("bound to a different event loop")."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    layer = channel_layers.backends.pop("default", None)
    if layer is not None and hasattr(layer, "close_pools"):
        await layer.close_pools()


def pytest_collection_modifyitems(items):
    import inspect

    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.fixturenames[:0] = ["fresh_channel_layer", "reap_stray_tasks"]


@pytest.fixture
def local_media(settings, tmp_path):
    """This process's media store is a fresh local folder (as on the embedded run); its path."""
    from media import store
    from signalserver.settings import media_storage

    root = tmp_path / "media"
    settings.MEDIA_S3_BUCKET, settings.MEDIA_ROOT = "", root
    settings.STORAGES = {**settings.STORAGES, "media": media_storage(bucket="", endpoint_url="", region="", access_key="", secret_key="", addressing_style="", root=root)}
    store.forget()
    yield root
    store.forget()
