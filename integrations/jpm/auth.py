"""JPM OAuth2 client credentials with ``private_key_jwt`` (RFC 7523 §2.2; RFC 6749 §4.4).

The client proves its identity with a short-lived JWT signed by our RSA key (RS256, ``kid`` = JPM_KEY_ID,
``iss`` = ``sub`` = client id, ``aud`` = the token URL, a random ``jti``, ``exp`` = now + 5 min), posted
form-encoded to JPM_TOKEN_URL. The access token is cached process-wide (keyed by client id + token URL) until
shortly before ``expires_in`` runs out, so N API calls cost one token request.

Failure rules (callers rely on them):
- the token endpoint refuses (4xx, or an answer without a bearer token) → ``ProcessorAuthError``;
- it is unreachable, 5xx or does not answer in time → ``ProcessorUnavailable``: the API call was never sent,
  so nothing is "outcome unknown" yet;
- an API call answered 401 drops the cached token (``invalidate``); the client decides whether to retry.

Never logged or recorded: the assertion, the access token, the key.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt

from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorTimeout,
    ProcessorUnavailable,
)

if TYPE_CHECKING:
    from integrations.http import HttpClient

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300
# Refresh this long before the token expires (at most; a tenth of the lifetime for short-lived tokens).
REFRESH_MARGIN_SECONDS = 60.0
# RFC 6749 makes expires_in optional: without it, reuse the token this long only.
DEFAULT_TOKEN_SECONDS = 60.0
OPERATION = "token"


@dataclass(frozen=True)
class _CachedToken:
    value: str
    refresh_at: float  # time.monotonic()


_cache: dict[tuple[str, str], _CachedToken] = {}
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached access token (tests; after rotating credentials)."""
    with _guard:
        _cache.clear()


def _lock_for(key: tuple[str, str]) -> threading.Lock:
    with _guard:
        return _key_locks.setdefault(key, threading.Lock())


class JpmTokenSource:
    """Issues client assertions and hands out (cached) access tokens for one client id + token URL."""

    def __init__(self, *, client_id: str, token_url: str, private_key, key_id: str = ""):
        self.client_id = client_id
        self.token_url = token_url
        self._private_key = private_key  # a loaded RSA key or PEM bytes; never logged
        self.key_id = key_id
        self.key = (client_id, token_url)

    def __repr__(self) -> str:
        return f"JpmTokenSource(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def client_assertion(self, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)
        except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
            raise ProcessorConfigurationError("the JPM private key cannot sign RS256", processor="jpm",
                                              operation=OPERATION) from exc

    def cached(self) -> str | None:
        with _guard:
            token = _cache.get(self.key)
        if token is not None and time.monotonic() < token.refresh_at:
            return token.value
        return None

    def get(self, client: HttpClient) -> tuple[str, bool]:
        """An access token and whether it came from the cache. One thread fetches; the others wait for it."""
        token = self.cached()
        if token is not None:
            return token, True
        with _lock_for(self.key):
            token = self.cached()  # another thread may have fetched it meanwhile
            if token is not None:
                return token, True
            value, lifetime = self._fetch(client)
            margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
            with _guard:
                _cache[self.key] = _CachedToken(value, time.monotonic() + lifetime - margin)
            return value, False

    def invalidate(self, token: str) -> None:
        """Drop ``token`` from the cache (only that one: a newer token fetched meanwhile stays)."""
        with _guard:
            cached = _cache.get(self.key)
            if cached is not None and cached.value == token:
                del _cache[self.key]

    def _fetch(self, client: HttpClient) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
            "client_id": self.client_id,
        }
        audit = {**form, "client_assertion": "[REDACTED]"}
        try:
            response, exchange = client._send("POST", "", operation=OPERATION, data=form, url=self.token_url,
                                              headers={"Accept": "application/json"}, audit_body=audit)
        except ProcessorTimeout as exc:
            # No token, so the API call was never sent: nothing to reconcile, safe to try again.
            raise ProcessorUnavailable("the token endpoint did not answer in time", processor="jpm",
                                       operation=OPERATION, exchange=exc.exchange) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            reason = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
            raise ProcessorAuthError(f"the token endpoint refused the client ({reason or response.status_code})",
                                     processor="jpm", operation=OPERATION, exchange=exchange)
        token = body.get("access_token") if isinstance(body, dict) else None
        token_type = body.get("token_type") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or str(token_type).lower() != "bearer":
            raise ProcessorAuthError("the token endpoint answer has no bearer access token", processor="jpm",
                                     operation=OPERATION, exchange=exchange)
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = DEFAULT_TOKEN_SECONDS
        logger.info("jpm access token obtained", extra={"jpm_client_id": self.client_id,
                                                         "expires_in": expires_in})
        return token, float(expires_in)
