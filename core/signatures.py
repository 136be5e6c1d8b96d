"""HMAC-SHA256 request signatures: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.

One scheme for both directions: the JPM webhook we receive (SPEC §10, header ``X-JPM-Signature``) and the push
deliveries we send (``X-Payments-Signature``, SPEC §4). The timestamp is signed with the body, so a captured
request cannot be replayed outside the tolerance window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300


def hmac_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def hmac_signature_verify(*, secret: str, header: str, body: bytes, now: float | None = None,
                          tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> bool:
    """Parse the header, check the age (both directions: a clock ahead is as suspicious as one behind), recompute
    the HMAC and compare in constant time. Any malformed header is simply ``False``; an empty secret never
    verifies."""
    if not secret or not header:
        return False
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        received = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = hmac_signature(secret=secret, body=body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, received)
