"""Production settings: no default for any secret; HTTPS everywhere; refuses to start incomplete."""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import broker_transport_options, env, tune_database

ENVIRONMENT = env.str("ENVIRONMENT", default="prod")
DEBUG = env.bool("DEBUG", default=False)

_REQUIRED = ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "HASH_KEY", "DATABASE_URL", "CELERY_BROKER_URL")
_missing = [name for name in _REQUIRED if not env.str(name, default="").strip()]
if _missing:
    raise ImproperlyConfigured(
        "Production settings refuse to start without: " + ", ".join(_missing) + " (see .env.example)"
    )

SECRET_KEY = env.str("SECRET_KEY")
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY")
HASH_KEY = env.str("HASH_KEY")
DATABASES = {"default": tune_database(env.db_url_config(env.str("DATABASE_URL")))}
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
DEMO_API_KEY = ""

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Health probes come from the load balancer over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
