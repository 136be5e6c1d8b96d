"""Development settings: embedded SQLite database and broker, development-only secrets, DEBUG opt-in."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

ENVIRONMENT = env.str("ENVIRONMENT", default="local")

# Development-only secrets. Production has no defaults (config.settings.production).
SECRET_KEY = SECRET_KEY or "local-dev-only-insecure-secret-key-do-not-use-in-production-0123456789"
FIELD_ENCRYPTION_KEY = FIELD_ENCRYPTION_KEY or ["dGhpcy1pcy1hLWxvY2FsLWRldi1vbmx5LWZlcm5ldC0="]
HASH_KEY = HASH_KEY or "local-dev-only-hash-key"
JWT_SECRET = JWT_SECRET or "local-dev-only-jwt-secret-0123456789abcdef"
DEMO_API_KEY = DEMO_API_KEY or "psk_demo0000_local-demo-key-not-secret"
