"""Before anything else: make sure the real PostgreSQL and Redis the tests need are reachable."""

import socket
from urllib.parse import urlparse

import pytest

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_configure(config):
    from django.conf import settings

    checks = [
        ("PostgreSQL", "DATABASE_URL", settings.DATABASE_URL, 5432),
        ("Redis", "REDIS_URL", settings.REDIS_URL, 6379),
    ]
    for service, variable, url, port in checks:
        if not url.startswith(("postgres", "redis")):
            pytest.exit(f"{variable} must point at {service} for the tests (got a different scheme)", returncode=2)
        if not _reachable(url, port):
            pytest.exit(
                f"{service} is not reachable at {variable} (host {urlparse(url).hostname}, port "
                f"{urlparse(url).port or port}). Start it, e.g.: {HOW_TO_START[service]}",
                returncode=2,
            )
