"""The sandbox's development identities, shared by the sandbox and the local/test settings.

Usio merchant ids of processors.md (master, subscription debit, float debit); float credit and loan
are not public, so the sandbox invents them.
"""

SANDBOX_USIO_MERCHANT_IDS = {
    "master": "10790868",
    "subscription": "29111679",
    "float_debit": "29063402",
    "float_credit": "29063410",
    "loan": "29063420",
}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8900
# Development-only secret of the JPM webhook signature, shared by the sandbox and the local settings.
SANDBOX_JPM_WEBHOOK_SECRET = "local-dev-only-jpm-webhook-secret"
SANDBOX_JPM_CLIENT_ID = "sandbox-client"
