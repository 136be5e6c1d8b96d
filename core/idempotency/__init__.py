"""Idempotency keys (SPEC §5): ``services`` holds the rules, ``http`` the header, fingerprint and replay helpers,
``jobs`` the purge (imported by ``CoreConfig.ready``)."""

from core.idempotency.http import (
    IDEMPOTENCY_KEY_PARAMETER,
    fingerprint,
    idempotency_key_from_request,
    replay_response,
    request_fingerprint,
)
from core.idempotency.services import (
    Claimed,
    IdempotencyOutcome,
    Replay,
    Stale,
    idempotency_attach,
    idempotency_begin,
    idempotency_complete,
    idempotency_purge,
    idempotency_release,
    idempotency_replay,
    idempotency_retention_hours,
    validate_idempotency_key,
)

__all__ = [
    "IDEMPOTENCY_KEY_PARAMETER",
    "Claimed",
    "IdempotencyOutcome",
    "Replay",
    "Stale",
    "fingerprint",
    "idempotency_attach",
    "idempotency_begin",
    "idempotency_complete",
    "idempotency_key_from_request",
    "idempotency_purge",
    "idempotency_release",
    "idempotency_replay",
    "idempotency_retention_hours",
    "replay_response",
    "request_fingerprint",
    "validate_idempotency_key",
]
