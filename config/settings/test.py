"""Test settings: the same stack as local, with fast password hashing and fast retries.

DATABASE_URL and CELERY_BROKER_URL still switch to PostgreSQL and Redis (``.ci/run`` runs the suite
on both stacks).
"""

from config.settings.base import BASE_DIR
from config.settings.local import *  # noqa: F403
from config.settings.local import DATABASES, env

ENVIRONMENT = env.str("ENVIRONMENT", default="test")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_RETRY_BACKOFF_SECONDS = env.float("CELERY_RETRY_BACKOFF_SECONDS", default=0.0)
# Tests serve no collected static files (make run collects them).
STATIC_ROOT = None
WHITENOISE_AUTOREFRESH = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Tests never share the development broker file with `make run`.
if not env.str("CELERY_BROKER_URL", default=""):
    CELERY_BROKER_URL = f"sqla+sqlite:///{BASE_DIR / 'var' / 'test-celery-broker.sqlite3'}"

# SQLite tests use a file (not :memory:) so that worker processes started by the tests share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test-db.sqlite3")}
