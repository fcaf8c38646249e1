"""Settings for the test suite: real PostgreSQL and Redis, from DATABASE_URL / REDIS_URL,
defaulting to the services on this machine. Celery runs eagerly (docs/architecture.md §9); tests that
need a real worker start one."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/signalserver")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ["SIGNALSERVER_ENV"] = "development"
# A fixed queue key, so that no test run writes a key file into the checkout.
os.environ.setdefault("QUEUE_KEYS", "1:" + "dGVzdCBxdWV1ZSBrZXkgb2YgdGhlIHRlc3Qgc3VpdGU=")

from signalserver.settings import *  # noqa: E402,F403

TUNE_GARBAGE_COLLECTION = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # operator logins in tests only
