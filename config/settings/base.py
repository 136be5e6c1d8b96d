"""Settings shared by every environment.

Every value comes from the one ``env`` object below (django-environ); ``.env.example`` lists them all.
Secrets have no defaults here: ``local``/``test`` provide development values, ``production`` requires
them from the environment and refuses to start without them.
"""

from pathlib import Path

import environ

from config.queues import QUEUES

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file in the project root is read if present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

ENVIRONMENT = env.str("ENVIRONMENT", default="local")  # local | test | staging | prod
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "encrypted_model_fields",
    "core",
    "payments",
    "cards",
    "bank_accounts",
    "refunds",
    "blocklist",
    "fraud",
    "syncing",
    "backoffice",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.middleware.RequestIdMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -----------------------------------------------------------------------------------
# SQLite is the embedded default; DATABASE_URL (postgres://...) switches to PostgreSQL with psycopg 3.
# An empty value counts as unset (production insists on a real one).
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}

SQLITE_BUSY_TIMEOUT_MS = env.int("SQLITE_BUSY_TIMEOUT_MS", default=20000)


def tune_database(db: dict) -> dict:
    """Make SQLite safe for web + worker + beat sharing one file; keep PostgreSQL connections warm.

    SQLite: WAL lets readers run beside the one writer; the busy timeout makes a second writer wait
    instead of failing; IMMEDIATE transactions take the write lock at BEGIN, so two transactions can
    never deadlock upgrading read locks to write locks (the classic "database is locked" failure).
    """
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS};"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA foreign_keys=ON;"
                ),
            }
        )
    else:
        db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
        db.setdefault("CONN_HEALTH_CHECKS", True)
        db.setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
    db["ATOMIC_REQUESTS"] = False  # services own their transactions (ARCHITECTURE.md §2)
    return db


tune_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttling counters) -----------------------------------------------------------------
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- Auth and passwords ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# End-user JWTs (the mobile app). HS256 uses JWT_SECRET; RS256 uses JWT_PUBLIC_KEY (PEM text).
JWT_ISSUER = env.str("JWT_ISSUER", default="https://auth.local.example")
JWT_AUDIENCE = env.str("JWT_AUDIENCE", default="payments-service")
JWT_ALGORITHM = env.str("JWT_ALGORITHM", default="HS256")
JWT_SECRET = env.str("JWT_SECRET", default="")
JWT_PUBLIC_KEY = env.str("JWT_PUBLIC_KEY", default="", multiline=True)
JWT_LEEWAY_SECONDS = env.int("JWT_LEEWAY_SECONDS", default=30)

# --- Secrets for data at rest ---------------------------------------------------------------------
# FIELD_ENCRYPTION_KEY may be a comma-separated list: the first key encrypts, every key decrypts.
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])
# HASH_KEY keys the HMAC blind indexes (bank account, card); separate from the encryption key.
HASH_KEY = env.str("HASH_KEY", default="")
SECRET_KEY = env.str("SECRET_KEY", default="")

# --- Internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# ACH business days are America/Chicago calendar dates (SPEC §11).
BUSINESS_TIME_ZONE = "America/Chicago"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Request limits -------------------------------------------------------------------------------
# Bodies above this size are refused with 413 before any parsing.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- REST framework -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.authentication.ApiKeyAuthentication",
        "core.auth.authentication.JwtAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exception_handler.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"principal": env.str("API_THROTTLE_RATE", default="6000/min")},
    "UNAUTHENTICATED_USER": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Payments Service API",
    "DESCRIPTION": (
        "Moves a fintech's money: ACH, pinless debit and RTP through J.P. Morgan and Usio. "
        'Every error is `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------------------------
# The embedded default is kombu's SQLAlchemy transport on a SQLite file: no broker server needed.
# CELERY_BROKER_URL=redis://... switches to Redis (production).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or (
    f"sqla+sqlite:///{BASE_DIR / 'var' / 'celery-broker.sqlite3'}"
)
# Redis: a message a dead worker had taken is handed out again after this many seconds. It must
# exceed the longest task time limit (540 s) or long tasks would run twice.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)


def broker_transport_options(url: str) -> dict:
    """Redis-only options (kombu's SQLAlchemy transport hands its options to create_engine)."""
    if not url.startswith(("redis://", "rediss://")):
        return {}
    return {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # How often (seconds x throttle) a consumer looks for such messages (kombu's defaults: 10 x 10).
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=10),
    }


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
# Redis: kombu's transport with a channel that survives the broker's loss (config.celery.RedisChannel).
CELERY_BROKER_TRANSPORT = (
    "config.celery:RedisTransport" if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
)
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=4.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task unless this is set; with it, it
# recycles them only every N tasks, and ``core.celery_signals`` applies Django's request-boundary rule instead
# (``close_old_connections``: a connection that is broken, left outside autocommit or older than CONN_MAX_AGE is
# closed). A new PostgreSQL connection per task cost a backend fork, its catalog caches and Django's set-up each time.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Base delay of the exponential back-off between attempts of a failed job (seconds; capped at 300).
CELERY_RETRY_BACKOFF_SECONDS = env.float("CELERY_RETRY_BACKOFF_SECONDS", default=5.0)
PAYMENT_QUEUES = QUEUES

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "redact": {"()": "core.logging.RedactionFilter"},
    },
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Security headers (HTTPS is enforced in production settings) -----------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Health ---------------------------------------------------------------------------------------
READYZ_TIMEOUT_SECONDS = env.float("READYZ_TIMEOUT_SECONDS", default=2.0)

# --- Processors and outbound integrations (docs/processors.md) --------------------------------------
# Empty by default: production must set them; local and test point them at the sandbox (SANDBOX_URL).
SANDBOX_URL = env.str("SANDBOX_URL", default="")

USIO_BASE_URL = env.str("USIO_BASE_URL", default="")
USIO_CONNECT_TIMEOUT = env.float("USIO_CONNECT_TIMEOUT", default=3.05)
USIO_READ_TIMEOUT = env.float("USIO_READ_TIMEOUT", default=30.0)
# One set of credentials per Usio merchant account (processors.md): master (tokens), subscription debit,
# float debit, float credit, loan.
USIO_ACCOUNT_NAMES = ("master", "subscription", "float_debit", "float_credit", "loan")
USIO_DEFAULT_MERCHANT_IDS = {
    "master": "10790868",
    "subscription": "29111679",
    "float_debit": "29063402",
    "float_credit": "",
    "loan": "",
}
USIO_ACCOUNTS = {
    name: {
        "merchant_id": env.str(f"USIO_{name.upper()}_MERCHANT_ID", default=USIO_DEFAULT_MERCHANT_IDS[name]),
        "login": env.str(f"USIO_{name.upper()}_LOGIN", default=""),
        "password": env.str(f"USIO_{name.upper()}_PASSWORD", default=""),
    }
    for name in USIO_ACCOUNT_NAMES
}

JPM_BASE_URL = env.str("JPM_BASE_URL", default="")
JPM_TOKEN_URL = env.str("JPM_TOKEN_URL", default="")
JPM_CLIENT_ID = env.str("JPM_CLIENT_ID", default="")
# private_key_jwt: the client assertion is signed with this RSA key (PEM file), key id JPM_KEY_ID.
JPM_PRIVATE_KEY_PATH = env.str("JPM_PRIVATE_KEY_PATH", default="")
JPM_KEY_ID = env.str("JPM_KEY_ID", default="")
# Optional mutual TLS (client certificate and key files) and CA bundle for JPM's server certificate.
JPM_MTLS_CERT_PATH = env.str("JPM_MTLS_CERT_PATH", default="")
JPM_MTLS_KEY_PATH = env.str("JPM_MTLS_KEY_PATH", default="")
JPM_CA_BUNDLE = env.str("JPM_CA_BUNDLE", default="")
# Optional JWS (RS256) signing of request bodies; the key defaults to JPM_PRIVATE_KEY_PATH.
JPM_SIGN_REQUESTS = env.bool("JPM_SIGN_REQUESTS", default=False)
JPM_SIGNING_KEY_PATH = env.str("JPM_SIGNING_KEY_PATH", default="")
JPM_ACCOUNT_ID = env.str("JPM_ACCOUNT_ID", default="")
JPM_ACCOUNT_ROUTING_NUMBER = env.str("JPM_ACCOUNT_ROUTING_NUMBER", default="")
JPM_COMPANY_NAME = env.str("JPM_COMPANY_NAME", default="")
JPM_CONNECT_TIMEOUT = env.float("JPM_CONNECT_TIMEOUT", default=3.05)
JPM_READ_TIMEOUT = env.float("JPM_READ_TIMEOUT", default=30.0)
# Shared secret of the JPM webhook signature (SPEC §10: X-JPM-Signature: t=<unix>,v1=<hex>).
JPM_WEBHOOK_SECRET = env.str("JPM_WEBHOOK_SECRET", default="")
# Signed timestamps older (or newer) than this are refused (replay window).
JPM_WEBHOOK_TOLERANCE_SECONDS = env.int("JPM_WEBHOOK_TOLERANCE_SECONDS", default=300)
# mTLS terminated at the proxy: a request whose header JPM_WEBHOOK_MTLS_HEADER equals JPM_WEBHOOK_MTLS_VALUE is
# trusted without a signature. Off when the header name is empty; the proxy must strip it from other requests.
JPM_WEBHOOK_MTLS_HEADER = env.str("JPM_WEBHOOK_MTLS_HEADER", default="")
JPM_WEBHOOK_MTLS_VALUE = env.str("JPM_WEBHOOK_MTLS_VALUE", default="SUCCESS")
# Largest webhook body accepted (50 callbacks are ~25 KB).
JPM_WEBHOOK_MAX_BYTES = env.int("JPM_WEBHOOK_MAX_BYTES", default=256 * 1024)
# Requests per minute accepted on the webhook per client address.
JPM_WEBHOOK_THROTTLE_RATE = env.str("JPM_WEBHOOK_THROTTLE_RATE", default="600/min")
# A stored message still unprocessed after this many minutes is queued again by the sweeper.
JPM_WEBHOOK_SWEEP_MINUTES = env.int("JPM_WEBHOOK_SWEEP_MINUTES", default=10)

SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")
TRANSACTION_SERVICE_URL = env.str("TRANSACTION_SERVICE_URL", default="")
OUTBOUND_CONNECT_TIMEOUT = env.float("OUTBOUND_CONNECT_TIMEOUT", default=3.05)
OUTBOUND_READ_TIMEOUT = env.float("OUTBOUND_READ_TIMEOUT", default=10.0)
# Processor calls (JPM, Usio) reuse each thread's kept-alive connection; one idle longer than this many seconds is
# not reused (well under any server's keep-alive timeout: a POST on a connection the server is closing would be
# "outcome unknown"). 0: a new connection per client. integrations.http._thread_manager.
PROCESSOR_KEEPALIVE_SECONDS = env.float("PROCESSOR_KEEPALIVE_SECONDS", default=1.0)

# --- Domain rules -----------------------------------------------------------------------------------
# A user may save (add or replace) a debit card at most this many times in 30 days (SPEC §8).
DEBIT_CARD_MAX_CHANGES = env.int("DEBIT_CARD_MAX_CHANGES", default=3)

# Fraud checks (SPEC §8): the look-back window, and per signal the count above which it fires.
FRAUD_WINDOW_HOURS = env.int("FRAUD_WINDOW_HOURS", default=24)
FRAUD_MAX_USER_FLAGS = env.int("FRAUD_MAX_USER_FLAGS", default=0)
FRAUD_MAX_OTHER_USERS_PER_INSTALL = env.int("FRAUD_MAX_OTHER_USERS_PER_INSTALL", default=1)
FRAUD_MAX_OTHER_USERS_PER_BANK_ACCOUNT = env.int("FRAUD_MAX_OTHER_USERS_PER_BANK_ACCOUNT", default=0)
FRAUD_MAX_OTHER_USERS_PER_CARD = env.int("FRAUD_MAX_OTHER_USERS_PER_CARD", default=0)

# Payments (SPEC §5, §7.7).
SUBSCRIPTION_ACH_PROVIDER = env.str("SUBSCRIPTION_ACH_PROVIDER", default="jpm")  # jpm | usio
MAX_PAYMENT_AMOUNT = env.str("MAX_PAYMENT_AMOUNT", default="5000.00")
PROCESSING_STUCK_MINUTES = env.int("PROCESSING_STUCK_MINUTES", default=5)
PROCESSING_GIVE_UP_MINUTES = env.int("PROCESSING_GIVE_UP_MINUTES", default=60)
IDEMPOTENCY_RETENTION_HOURS = env.int("IDEMPOTENCY_RETENTION_HOURS", default=24)
# Outbox delivery: events per relay batch; push deliveries: attempts before dead-lettering, back-off base.
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=500)
OUTBOX_PUSH_MAX_ATTEMPTS = env.int("OUTBOX_PUSH_MAX_ATTEMPTS", default=8)
OUTBOX_PUSH_BACKOFF_SECONDS = env.float("OUTBOX_PUSH_BACKOFF_SECONDS", default=30.0)
# An in-process consumer that fails is retried (back-off base, doubling, capped at 15 min) then dead-lettered.
OUTBOX_CONSUMER_MAX_ATTEMPTS = env.int("OUTBOX_CONSUMER_MAX_ATTEMPTS", default=10)
OUTBOX_CONSUMER_BACKOFF_SECONDS = env.float("OUTBOX_CONSUMER_BACKOFF_SECONDS", default=30.0)
# A relay run is requested at most this often after commits (coalescing a burst of events).
OUTBOX_KICK_SECONDS = env.float("OUTBOX_KICK_SECONDS", default=1.0)
# After a kick fails (broker down), a process tries no kick for this long; the beat schedules cover them.
OUTBOX_KICK_PAUSE_SECONDS = env.float("OUTBOX_KICK_PAUSE_SECONDS", default=30.0)
# Stuck-payment reconciler: lookups failing in a row at one account before it is skipped; time budget per run.
RECONCILER_MAX_CONSECUTIVE_ERRORS = env.int("RECONCILER_MAX_CONSECUTIVE_ERRORS", default=3)
RECONCILER_TIME_BUDGET_SECONDS = env.int("RECONCILER_TIME_BUDGET_SECONDS", default=240)

# Prenotes (SPEC §6): requests per job run and its time budget, submission attempts and back-off, verifier budget.
PRENOTE_BATCH_SIZE = env.int("PRENOTE_BATCH_SIZE", default=50)
PRENOTE_BATCH_TIME_BUDGET_SECONDS = env.int("PRENOTE_BATCH_TIME_BUDGET_SECONDS", default=10)
PRENOTE_MAX_ATTEMPTS = env.int("PRENOTE_MAX_ATTEMPTS", default=10)
PRENOTE_RETRY_BACKOFF_SECONDS = env.int("PRENOTE_RETRY_BACKOFF_SECONDS", default=60)
PRENOTE_VERIFY_TIME_BUDGET_SECONDS = env.int("PRENOTE_VERIFY_TIME_BUDGET_SECONDS", default=40)

# Refunds (SPEC §2.4, §8): the Usio account that pays refund credits; where a bare Usio confirmation is looked up.
REFUND_USIO_ACCOUNT = env.str("REFUND_USIO_ACCOUNT", default="float_credit")
REFUND_LOOKUP_USIO_ACCOUNTS = env.list("REFUND_LOOKUP_USIO_ACCOUNTS", default=["subscription", "float_debit", "loan"])
REFUND_RECONCILER_TIME_BUDGET_SECONDS = env.int("REFUND_RECONCILER_TIME_BUDGET_SECONDS", default=240)

# Syncing (SPEC §7): check-ach payments per job (Usio ones and JPM ones in jobs of their own), the worker's time
# budget (under the queue's 54 s limit) and the JPM status look-ups a job runs at once (threads doing only HTTP).
CHECK_ACH_JOB_SIZE = env.int("CHECK_ACH_JOB_SIZE", default=1000)  # Usio payments per job (no processor call)
CHECK_ACH_JPM_JOB_SIZE = env.int("CHECK_ACH_JPM_JOB_SIZE", default=200)  # JPM payments per job (a look-up each)
CHECK_ACH_TIME_BUDGET_SECONDS = env.int("CHECK_ACH_TIME_BUDGET_SECONDS", default=45)
CHECK_ACH_JPM_CONCURRENCY = env.int("CHECK_ACH_JPM_CONCURRENCY", default=8)
# Usio sync: report records read, staged and applied at a time (the worker's memory grows with it, not the window).
USIO_SYNC_PAGE_SIZE = env.int("USIO_SYNC_PAGE_SIZE", default=5000)
# The Usio merchant accounts (USIO_ACCOUNTS names) that the Usio sync and the balance report cover.
USIO_SYNC_ACCOUNTS = env.list("USIO_SYNC_ACCOUNTS", default=["subscription", "float_debit", "float_credit", "loan"])
USIO_SYNC_TRANSACTIONS_WINDOW_MINUTES = env.int("USIO_SYNC_TRANSACTIONS_WINDOW_MINUTES", default=35)
# Token refresh (SPEC §7.4): cards expiring within USIO_TOKEN_EXPIRY_DAYS or with tokens older than
# USIO_TOKEN_MAX_AGE_DAYS are refreshed through USIO_TOKEN_ACCOUNT (tokens are created on the master account).
USIO_TOKEN_MAX_AGE_DAYS = env.int("USIO_TOKEN_MAX_AGE_DAYS", default=180)
USIO_TOKEN_EXPIRY_DAYS = env.int("USIO_TOKEN_EXPIRY_DAYS", default=30)
USIO_TOKEN_ACCOUNT = env.str("USIO_TOKEN_ACCOUNT", default="master")

# --- Demo data (local only) -------------------------------------------------------------------------
DEMO_API_KEY = env.str("DEMO_API_KEY", default="")
