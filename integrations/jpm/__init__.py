"""J.P. Morgan Treasury Services: ACH payments, status, transactions, callbacks (processors.md).

``client.py`` does HTTP, ``auth.py`` the OAuth2 ``private_key_jwt`` token, ``signing.py`` optional JWS bodies,
``adapter.py`` JPM JSON ⇄ dataclasses, ``codes.py`` ISO → NACHA. Wire shapes and assumptions:
docs/sandbox-jpm.md.
"""

from integrations.jpm.adapter import (
    JpmCallback,
    JpmException,
    JpmPaymentNotFound,
    JpmPaymentStatus,
    JpmSubmission,
    JpmTransaction,
    JpmTransactionsPage,
    parse_callback_message,
)
from integrations.jpm.auth import clear_token_cache
from integrations.jpm.client import JpmClient, jpm_client
from integrations.jpm.codes import ISO_TO_NACHA, nacha_for

__all__ = [
    "ISO_TO_NACHA",
    "JpmCallback",
    "JpmClient",
    "JpmException",
    "JpmPaymentNotFound",
    "JpmPaymentStatus",
    "JpmSubmission",
    "JpmTransaction",
    "JpmTransactionsPage",
    "clear_token_cache",
    "jpm_client",
    "nacha_for",
    "parse_callback_message",
]
