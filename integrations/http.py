"""The HTTP base every client uses: explicit timeouts, no automatic retries, typed errors, and a
redacted record of each exchange for audit.

Failure mapping (the rule callers rely on):
- could not connect (refused, DNS, connect timeout) → ``ProcessorUnavailable``: the request never left;
- read timeout, or the connection dropped after the request was sent → ``ProcessorTimeout``: it may have
  been processed;
- HTTP 5xx → ``ProcessorUnavailable``; 401/403 → ``ProcessorAuthError``;
- a body that is not the JSON the protocol promises → ``ProcessorProtocolError`` (raised by ``json_body``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from core.redaction import redact, redact_text
from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)

_MAX_AUDIT_BODY = 20_000


@dataclass(frozen=True)
class Exchange:
    """One request/response, redacted (no credentials, tokens or account numbers), for audit."""

    processor: str
    operation: str
    method: str
    url: str
    request_body: Any
    status: int | None = None
    response_body: Any = None
    duration_ms: float | None = None
    error: str | None = None
    request_headers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "processor": self.processor,
            "operation": self.operation,
            "method": self.method,
            "url": self.url,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "status": self.status,
            "response_body": self.response_body,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


def _redacted_body(body: Any) -> Any:
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            return redact(json.loads(body))
        except ValueError:
            return redact_text(body[:_MAX_AUDIT_BODY])
    return redact(body)


def _redacted_headers(headers: dict) -> dict:
    return redact({k: v for k, v in headers.items() if k.lower() not in ("cookie", "set-cookie")})


def _connection_never_made(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never established, so the request was never sent."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class HttpClient:
    """Base of every client. Subclasses call ``_send`` and parse with ``json_body``."""

    processor = "http"

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        cert: tuple[str, str] | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
    ):
        if not base_url:
            raise ProcessorConfigurationError(
                "base URL is not configured", processor=self.processor, operation="configure"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.cert = cert
        self.verify = verify
        self.session = session or requests.Session()
        # No automatic retries anywhere: a POST retried by the transport could move money twice.
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, HTTPAdapter(max_retries=0))

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json_body: Any = None,
        data: Any = None,
        params: dict | None = None,
        headers: dict | None = None,
        audit_body: Any = None,
        url: str | None = None,
        audit_url: str | None = None,
    ) -> tuple[requests.Response, Exchange]:
        """Send one request; return the response and its audit record, or raise a typed error.

        ``audit_body`` is what to record instead of the wire body (e.g. the JSON inside a JWS);
        ``audit_url`` what to record instead of a URL that is itself a secret (a Slack webhook).
        """
        target = url or self._url(path)
        recorded = _redacted_body(audit_body if audit_body is not None else (json_body if json_body is not None
                                                                              else data))
        base = {
            "processor": self.processor,
            "operation": operation,
            "method": method,
            "url": audit_url or redact_text(target),
            "request_body": recorded,
            "request_headers": _redacted_headers(headers or {}),
        }
        started = time.perf_counter()

        def fail(cls, message: str, *, status=None, response_body=None):
            exchange = Exchange(**base, status=status, response_body=response_body, error=message,
                                duration_ms=round((time.perf_counter() - started) * 1000, 1))
            return cls(message, processor=self.processor, operation=operation, exchange=exchange)

        try:
            response = self.session.request(
                method, target, json=json_body, data=data, params=params, headers=headers,
                timeout=self.timeout, cert=self.cert, verify=self.verify, allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise fail(ProcessorUnavailable, "connect timeout") from exc
        except requests.exceptions.SSLError as exc:
            # TLS refused (client certificate or server verification): nothing was processed.
            raise fail(ProcessorAuthError, "TLS handshake failed") from exc
        except requests.ReadTimeout as exc:
            raise fail(ProcessorTimeout, "no answer within the read timeout") from exc
        except requests.ConnectionError as exc:
            if _connection_never_made(exc):
                raise fail(ProcessorUnavailable, "could not connect") from exc
            raise fail(ProcessorTimeout, "connection lost after the request was sent") from exc
        except requests.RequestException as exc:
            raise fail(ProcessorUnavailable, f"request failed: {type(exc).__name__}") from exc

        exchange = Exchange(
            **base,
            status=response.status_code,
            response_body=_redacted_body(response.content[:_MAX_AUDIT_BODY]),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if response.status_code >= 500:
            raise ProcessorUnavailable(f"HTTP {response.status_code}", processor=self.processor,
                                       operation=operation, exchange=exchange)
        if response.status_code in (401, 403):
            raise ProcessorAuthError(f"HTTP {response.status_code}", processor=self.processor,
                                     operation=operation, exchange=exchange)
        return response, exchange

    def json_body(self, response: requests.Response, exchange: Exchange, *, operation: str) -> Any:
        """The response's JSON, or ``ProcessorProtocolError`` when it is not JSON."""
        try:
            return response.json()
        except ValueError as exc:
            raise ProcessorProtocolError("answer is not valid JSON", processor=self.processor,
                                         operation=operation, exchange=exchange) from exc
