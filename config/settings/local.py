"""Development settings: embedded SQLite database and broker, development-only secrets, DEBUG opt-in."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env
from sandbox.defaults import SANDBOX_JPM_CLIENT_ID, SANDBOX_JPM_WEBHOOK_SECRET, SANDBOX_USIO_MERCHANT_IDS

ENVIRONMENT = env.str("ENVIRONMENT", default="local")

# Development-only secrets. Production has no defaults (config.settings.production).
SECRET_KEY = SECRET_KEY or "local-dev-only-insecure-secret-key-do-not-use-in-production-0123456789"
FIELD_ENCRYPTION_KEY = FIELD_ENCRYPTION_KEY or ["dGhpcy1pcy1hLWxvY2FsLWRldi1vbmx5LWZlcm5ldC0="]
HASH_KEY = HASH_KEY or "local-dev-only-hash-key"
JWT_SECRET = JWT_SECRET or "local-dev-only-jwt-secret-0123456789abcdef"
DEMO_API_KEY = DEMO_API_KEY or "psk_demo0000_local-demo-key-not-secret"

# Processors: the sandbox (python -m sandbox; started by `make run`) with its development credentials.
SANDBOX_URL = SANDBOX_URL or "http://127.0.0.1:8900"
USIO_BASE_URL = USIO_BASE_URL or f"{SANDBOX_URL}/usio"
for _name, _account in USIO_ACCOUNTS.items():
    _account["merchant_id"] = _account["merchant_id"] or SANDBOX_USIO_MERCHANT_IDS[_name]
    _account["login"] = _account["login"] or f"sandbox-{_name}"
    _account["password"] = _account["password"] or f"sandbox-{_name}-password"
JPM_BASE_URL = JPM_BASE_URL or f"{SANDBOX_URL}/jpm"
JPM_TOKEN_URL = JPM_TOKEN_URL or f"{JPM_BASE_URL}/oauth2/token"
JPM_CLIENT_ID = JPM_CLIENT_ID or SANDBOX_JPM_CLIENT_ID
JPM_PRIVATE_KEY_PATH = JPM_PRIVATE_KEY_PATH or str(BASE_DIR / "var" / "sandbox" / "jpm-client-key.pem")
JPM_KEY_ID = JPM_KEY_ID or "sandbox-key-1"
JPM_ACCOUNT_ID = JPM_ACCOUNT_ID or "000000010962009"
JPM_ACCOUNT_ROUTING_NUMBER = JPM_ACCOUNT_ROUTING_NUMBER or "021000021"
JPM_COMPANY_NAME = JPM_COMPANY_NAME or "FloatMe Sandbox"
JPM_WEBHOOK_SECRET = JPM_WEBHOOK_SECRET or SANDBOX_JPM_WEBHOOK_SECRET
SLACK_WEBHOOK_URL = SLACK_WEBHOOK_URL or f"{SANDBOX_URL}/slack/webhook"
TRANSACTION_SERVICE_URL = TRANSACTION_SERVICE_URL or f"{SANDBOX_URL}/transactions"
