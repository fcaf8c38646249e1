"""Settings, read from environment variables only (every one is listed in `.env.example`).

With nothing set the server runs on its embedded defaults: SQLite, an in-process channel layer,
eager Celery tasks, local media and the console verification sender. `SIGNALSERVER_ENV=production`
turns on the production checks at the bottom of this file.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


SIGNALSERVER_ENV = env("SIGNALSERVER_ENV", "development").lower()
if SIGNALSERVER_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("SIGNALSERVER_ENV must be 'development' or 'production'")
PRODUCTION = SIGNALSERVER_ENV == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
SECRET_KEY = env("SECRET_KEY") or ("" if PRODUCTION else "development-only-secret-key-do-not-use")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # daphne first: it makes `runserver` serve ASGI (HTTP and WebSockets).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "signalserver",
    "accounts",
    "keys",
    "messaging",
    "groups",
    "media",
    "push",
]

MIDDLEWARE = [
    # Outermost: logs and counts (signalserver.metrics) every request with the status its client gets.
    "signalserver.middleware.RequestLogMiddleware",
    # Outside every middleware that can answer an error page (Host check, CSRF), to turn it to JSON.
    "signalserver.middleware.JsonErrorsMiddleware",
    "signalserver.middleware.SignalTimestampMiddleware",
    "signalserver.middleware.DependencyUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signalserver.urls"
ASGI_APPLICATION = "signalserver.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
# PostgreSQL connections come from a pool per process (psycopg-pool). Under ASGI each request runs in
# its own thread, so a persistent connection per thread would pile up idle connections; the pool
# hands a connection to a request and takes it back when the request ends.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 8)
# Outages (docs/deployment.md): while PostgreSQL cannot be reached a request waits at most
# DB_POOL_TIMEOUT_MS for a connection, then answers 503 with Retry-After; a statement that runs
# longer than DB_STATEMENT_TIMEOUT_MS (0: no limit) is cancelled and answers the same. Connection
# attempts give up after DB_CONNECT_TIMEOUT_SECONDS (libpq's minimum is 2).
DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 2)
DB_POOL_TIMEOUT_MS = env_int("DB_POOL_TIMEOUT_MS", 500)
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 5000)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, except that connections the server closed (a restart) are never used.
    DATABASES["default"]["ENGINE"] = "signalserver.postgresql"
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", DB_CONNECT_TIMEOUT_SECONDS)
    if DB_STATEMENT_TIMEOUT_MS > 0:
        _options["options"] = f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS} {_options.get('options', '')}".strip()
    if DB_POOL_MAX_SIZE > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
        _options["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT_MS / 1000,
            # A failed connection attempt is retried for as long as one request waits, then given
            # up; the next request that needs a connection starts a new attempt at once. (The
            # default keeps retrying with a backoff that grows over the outage: the pool came back
            # seconds after PostgreSQL did.)
            "reconnect_timeout": DB_POOL_TIMEOUT_MS / 1000,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, Celery broker, rate-limit buckets, presence -------------------------
REDIS_URL = env("REDIS_URL")
# Every Redis client of a process takes its connections from a pool of at most this many (the
# channel layer's, the other asyncio clients', the threads', Celery's broker: docs/deployment.md)
# and, when all are busy, waits up to REDIS_POOL_TIMEOUT_SECONDS for one before failing as if
# Redis were down.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 16)
REDIS_POOL_TIMEOUT_SECONDS = env_int("REDIS_POOL_TIMEOUT_SECONDS", 10)
if REDIS_MAX_CONNECTIONS < 2 or REDIS_POOL_TIMEOUT_SECONDS < 1:
    # The channel layer's reader holds one connection for seconds at a time (BZPOPMIN).
    raise ImproperlyConfigured("REDIS_MAX_CONNECTIONS must be at least 2 and REDIS_POOL_TIMEOUT_SECONDS at least 1")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's layer on bounded pools (signalserver/redis_clients.py).
            "BACKEND": "signalserver.redis_clients.ChannelLayer",
            # socket_timeout above redis-py's 5 s so idle receivers are not cut off (docs/architecture.md §11).
            # Every socket of a worker process shares one list in Redis, so its capacity bounds a
            # burst to the whole process (a multi-recipient send to its sockets), not one socket.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "capacity": 20_000},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
# Bounded as the other Redis clients: the connections kept for publishing tasks (each holds two
# Redis connections: kombu's channel checks with PING on one and publishes on another), and the
# Redis connections of each channel. No result backend: results are ignored.
CELERY_BROKER_POOL_LIMIT = REDIS_MAX_CONNECTIONS // 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_connections": REDIS_MAX_CONNECTIONS}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "purge-expired-messages": {"task": "messaging.tasks.purge_expired_messages_task", "schedule": 3600.0},
    "purge-attachments": {"task": "media.tasks.purge_attachments_task", "schedule": 3600.0},
    "purge-replaced-profiles": {"task": "accounts.tasks.purge_replaced_profiles_task", "schedule": 3600.0},
    "purge-expired-username-claims": {"task": "accounts.tasks.purge_expired_username_claims_task", "schedule": 3600.0},
    "purge-account-records": {"task": "accounts.tasks.purge_account_records_task", "schedule": 3600.0},
    "purge-reviewed-spam-reports": {"task": "messaging.tasks.purge_reviewed_spam_reports_task", "schedule": 3600.0},
    # Proves beat, the broker and a worker work together: alerts fire when it stops (docs/deployment.md).
    "heartbeat": {"task": "signalserver.tasks.heartbeat_task", "schedule": 30.0, "options": {"expires": 30}},
}

# --- Messaging ------------------------------------------------------------------------------
# Undelivered messages are deleted this many days after the server accepted them.
MESSAGE_RETENTION_DAYS = env_int("MESSAGE_RETENTION_DAYS", 30)
# Queued envelopes are sealed under these keys, never kept in the database (messaging/sealing.py):
# `id:base64` entries, newest first, inline or one per line in a file. Development makes its own.
QUEUE_KEYS = env("QUEUE_KEYS")
QUEUE_KEYS_FILE = env("QUEUE_KEYS_FILE") or ("" if PRODUCTION else str(BASE_DIR / "var" / "queue.keys"))
# A profile version another replaced stays readable this many days (contacts still on the old
# profile key), then it and its avatar are deleted.
PROFILE_GRACE_DAYS = env_int("PROFILE_GRACE_DAYS", 30)
# A deleted account's number keeps its ACI this many days (re-registering gets it back), then the
# row naming both goes.
DELETED_ACCOUNT_ACI_REUSE_DAYS = env_int("DELETED_ACCOUNT_ACI_REUSE_DAYS", 30)
# A spam report an operator has reviewed (dismissed or actioned) is kept this many days.
SPAM_REPORT_RETENTION_DAYS = env_int("SPAM_REPORT_RETENTION_DAYS", 30)
# Largest WebSocket frame accepted; a bigger one closes the socket with 1009.
WEBSOCKET_MAX_FRAME_BYTES = env_int("WEBSOCKET_MAX_FRAME_BYTES", 512 * 1024)
# Requests a socket may send per second, sustained and in a burst (a token bucket per socket);
# one that sends faster is closed with 4429 and refused new sockets for a while (429).
# Acknowledgements of deliveries do not count.
WEBSOCKET_FRAME_RATE = env_int("WEBSOCKET_FRAME_RATE", 1000)
WEBSOCKET_FRAME_BURST = env_int("WEBSOCKET_FRAME_BURST", 2000)
# Garbage collection tuned for many long-lived sockets (signalserver/asgi.py); off in the tests,
# whose warnings about unawaited coroutines and unclosed resources come from collections.
TUNE_GARBAGE_COLLECTION = env_bool("TUNE_GARBAGE_COLLECTION", True)

# --- Groups (docs/architecture.md, "Groups") ----------------------------------------------------
# Most members plus invitees a group may have (also the most join requests and bans); served to
# clients in /v2/config as `global.groupsv2.groupSizeHardLimit`.
GROUP_MAX_SIZE = env_int("GROUP_MAX_SIZE", 1000)
# Base64 of the 32-byte Ed25519 seed that signs group changes (its public key: GET
# /v2/groups/public_key). Empty: derived from SECRET_KEY.
GROUP_CHANGE_SIGNING_KEY = env("GROUP_CHANGE_SIGNING_KEY")
if GROUP_MAX_SIZE < 2:
    raise ImproperlyConfigured("GROUP_MAX_SIZE must be at least 2")

# --- Abuse ------------------------------------------------------------------------------------
# Behind a reverse proxy: the header it puts the client's address in (e.g. X-Forwarded-For; its
# last entry is used). Empty: the peer address of the connection. Per-IP limits and IP bans use it.
# Set, the proxy's X-Request-Id is also taken as the request id (signalserver/request_ids.py).
TRUSTED_PROXY_HEADER = env("TRUSTED_PROXY_HEADER")

# --- Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Media: attachments in an object store (docs/deployment.md, "Media") ------------------------
# With MEDIA_S3_BUCKET set, attachments go to that bucket of any S3-compatible store (AWS, MinIO,
# SeaweedFS, R2) through django-storages; without it (the embedded run), to MEDIA_ROOT.
MEDIA_S3_BUCKET = env("MEDIA_S3_BUCKET")
MEDIA_S3_ENDPOINT_URL = env("MEDIA_S3_ENDPOINT_URL")  # empty: AWS itself
MEDIA_S3_REGION = env("MEDIA_S3_REGION", "us-east-1")
MEDIA_S3_ACCESS_KEY_ID = env("MEDIA_S3_ACCESS_KEY_ID")
MEDIA_S3_SECRET_ACCESS_KEY = env("MEDIA_S3_SECRET_ACCESS_KEY")
MEDIA_S3_ADDRESSING_STYLE = env("MEDIA_S3_ADDRESSING_STYLE", "path")  # "virtual" for AWS buckets with dots-free names
MEDIA_ROOT = Path(env("MEDIA_ROOT") or BASE_DIR / "var" / "media")  # empty: the default, not "."


def media_storage(*, bucket: str, endpoint_url: str, region: str, access_key: str, secret_key: str, addressing_style: str, root: Path) -> dict:
    """STORAGES["media"]: the S3 bucket when one is named, else the local folder `root`."""
    if not bucket:
        # Overwrite as S3 does: an avatar form posted twice (within its half hour) replaces the
        # object rather than leaving a second file under another name.
        return {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root, "allow_overwrite": True}}
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region,
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "addressing_style": addressing_style,
            "signature_version": "s3v4",
            "default_acl": "private",
            "file_overwrite": True,
            "querystring_expire": ATTACHMENT_DOWNLOAD_URL_SECONDS,
        },
    }


ATTACHMENT_DOWNLOAD_URL_SECONDS = env_int("ATTACHMENT_DOWNLOAD_URL_SECONDS", 600)  # signed download URLs
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "media": media_storage(
        bucket=MEDIA_S3_BUCKET,
        endpoint_url=MEDIA_S3_ENDPOINT_URL,
        region=MEDIA_S3_REGION,
        access_key=MEDIA_S3_ACCESS_KEY_ID,
        secret_key=MEDIA_S3_SECRET_ACCESS_KEY,
        addressing_style=MEDIA_S3_ADDRESSING_STYLE,
        root=MEDIA_ROOT,
    ),
}

# Attachments: the largest upload, where clients upload and download them (cdn 3; empty:
# this server, which serves tus uploads and downloads at /attachments/), how long an upload form
# stays valid, and how long attachments are kept.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 100 * 1024 * 1024)
ATTACHMENTS_CDN3_URL = env("ATTACHMENTS_CDN3_URL")
ATTACHMENT_UPLOAD_SECONDS = env_int("ATTACHMENT_UPLOAD_SECONDS", 25 * 3600)
ATTACHMENT_RETENTION_DAYS = env_int("ATTACHMENT_RETENTION_DAYS", 45)
ATTACHMENT_ABANDONED_HOURS = env_int("ATTACHMENT_ABANDONED_HOURS", 24)
# The key of upload tokens (HS256), when a tus server of its own checks them; empty: derived from
# SECRET_KEY (this server is the tus server).
ATTACHMENT_UPLOAD_SECRET = env("ATTACHMENT_UPLOAD_SECRET")
# Avatars: where clients post avatar upload forms and fetch avatars (their cdn 0 base
# URL). Empty: the bucket's own URL with MEDIA_S3_BUCKET, else this server's /media (which takes the
# form's POST and serves the avatars, media.avatars).
AVATARS_CDN_URL = env("AVATARS_CDN_URL")

# --- REST framework and the OpenAPI schema ----------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["signalserver.auth.DeviceAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "signalserver.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "signalserver.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "signalserver",
    "DESCRIPTION": (
        "Self-hostable server for an end-to-end-encrypted messenger whose client API follows "
        "Signal-Server. Endpoints marked 'signalserver extension' are ours, not Signal's."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Verification (phone numbers) ----------------------------------------------------------------
# Sender of verification codes: console | development | twilio.
VERIFICATION_SENDER = env("VERIFICATION_SENDER", "console").lower()
DEV_VERIFICATION_CODE = env("DEV_VERIFICATION_CODE")
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID")
TWILIO_API_BASE = env("TWILIO_API_BASE", "https://api.twilio.com")
# Captcha provider for verification sessions: none | development | hcaptcha.
CAPTCHA_PROVIDER = env("CAPTCHA_PROVIDER", "none").lower()
DEV_CAPTCHA_TOKEN = env("DEV_CAPTCHA_TOKEN")
HCAPTCHA_SECRET = env("HCAPTCHA_SECRET")
HCAPTCHA_SITE_KEY = env("HCAPTCHA_SITE_KEY")
HCAPTCHA_VERIFY_URL = env("HCAPTCHA_VERIFY_URL", "https://api.hcaptcha.com/siteverify")
PROVIDER_TIMEOUT_SECONDS = env_int("PROVIDER_TIMEOUT_SECONDS", 10)

# --- Push (APNs, FCM): off unless configured ----------------------------------------------------
# APNs with a token-signing key (.p8) from the Apple developer account; the topic is the app's
# bundle id. APNS_SERVER ("host:port") and APNS_CA_FILE point it at another server (a proxy).
APNS_KEY_FILE = env("APNS_KEY_FILE")
APNS_KEY_ID = env("APNS_KEY_ID")
APNS_TEAM_ID = env("APNS_TEAM_ID")
APNS_TOPIC = env("APNS_TOPIC")
APNS_SANDBOX = env_bool("APNS_SANDBOX", False)
APNS_SERVER = env("APNS_SERVER")
APNS_CA_FILE = env("APNS_CA_FILE")
# FCM HTTP v1 with a service account's JSON key; the project id defaults to the key's.
# FCM_API_URL points it at another server (a proxy).
FCM_CREDENTIALS_FILE = env("FCM_CREDENTIALS_FILE")
FCM_PROJECT_ID = env("FCM_PROJECT_ID")
FCM_API_URL = env("FCM_API_URL")
# A socket that closes with messages left gets its device pushed this many seconds later, unless
# the device connects again meanwhile.
PUSH_AFTER_CLOSE_SECONDS = env_int("PUSH_AFTER_CLOSE_SECONDS", 60)

# --- Calling: TURN relays for one-to-one calls (GET /v2/calling/relays) ----------------------------
# A TURN server run with coturn's REST-API credentials (`use-auth-secret`, `static-auth-secret`):
# every device asking gets a username `<expiry>:<random id>` and its password, an HMAC-SHA1 of the
# username under TURN_SECRET, valid TURN_TTL_SECONDS. TURN_URLS are the server's turn:/turns:/stun:
# URLs; TURN_URLS_WITH_IPS the same with literal addresses, tried first by clients, and
# TURN_HOSTNAME the name their TLS checks against. Without a secret (the embedded run) clients get
# no relay: calls connect directly or not at all.
TURN_URLS = env_list("TURN_URLS", "")
TURN_URLS_WITH_IPS = env_list("TURN_URLS_WITH_IPS", "")
TURN_HOSTNAME = env("TURN_HOSTNAME")
TURN_SECRET = env("TURN_SECRET")
TURN_TTL_SECONDS = env_int("TURN_TTL_SECONDS", 86400)
if bool(TURN_SECRET) != bool(TURN_URLS or TURN_URLS_WITH_IPS):
    raise ImproperlyConfigured("TURN_SECRET and TURN_URLS (or TURN_URLS_WITH_IPS) are set together or not at all")
if TURN_TTL_SECONDS <= 0:
    raise ImproperlyConfigured("TURN_TTL_SECONDS must be positive")

# --- Metrics (docs/deployment.md, "Metrics"): Prometheus' format on a port of its own ---------------
# Never the public port: METRICS_PORT (0: none) on METRICS_HOST, loopback unless set otherwise.
METRICS_PORT = env_int("METRICS_PORT", 0)
METRICS_HOST = env("METRICS_HOST", "127.0.0.1")

# --- Logging: one JSON line per event, sensitive values scrubbed ---------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "signalserver.logging.RedactingFilter"},
        "request_id": {"()": "signalserver.request_ids.RequestIdFilter"},
        "skip_unavailable": {"()": "signalserver.logging.SkipUnavailableResponses"},
        "throttle": {"()": "signalserver.logging.Throttle"},
    },
    "formatters": {"json": {"()": "signalserver.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["request_id", "redact"], "formatter": "json"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our request log replaces these; Django's would print paths (which carry identifiers).
        "django.request": {"level": "ERROR", "filters": ["skip_unavailable"]},
        # Every checkout at INFO; during a database outage every failed reconnection at WARNING.
        "psycopg.pool": {"level": "WARNING", "filters": ["throttle"]},
        "django.server": {"level": "ERROR"},
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One line per request to the push services is noise (a worker sends thousands a second).
        "httpx": {"level": "WARNING"},
        # Never the SQL (with its parameters: numbers looked up, keys), whatever LOG_LEVEL says.
        "django.db.backends": {"level": "INFO"},
    },
}

# --- Production checks --------------------------------------------------------------------------
if PRODUCTION:
    problems = []
    if not SECRET_KEY:
        problems.append("SECRET_KEY is not set")
    if DEBUG:
        problems.append("DEBUG is on")
    if not ALLOWED_HOSTS or any(host == "*" or host.startswith("*") for host in ALLOWED_HOSTS):
        problems.append("ALLOWED_HOSTS is empty or holds a wildcard")
    if not QUEUE_KEYS and not QUEUE_KEYS_FILE:
        problems.append("neither QUEUE_KEYS nor QUEUE_KEYS_FILE is set")
    if VERIFICATION_SENDER == "development" or CAPTCHA_PROVIDER == "development":
        problems.append("development verification sender or captcha provider")
    if problems:
        raise ImproperlyConfigured("refusing to start in production mode: " + "; ".join(problems))
