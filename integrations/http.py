"""The HTTP base every client uses: explicit timeouts, no automatic retries, typed errors, and a
redacted record of each exchange for audit.

Failure mapping (the rule callers rely on):
- could not connect (refused, DNS, connect timeout) → ``ProcessorUnavailable``: the request never left;
- read timeout, or the connection dropped after the request was sent → ``ProcessorTimeout``: it may have
  been processed;
- HTTP 5xx → ``ProcessorUnavailable``; 401/403 → ``ProcessorAuthError``;
- a body that is not the JSON the protocol promises → ``ProcessorProtocolError`` (raised by ``json_body``).

Kept-alive connections (``keepalive_seconds``, the processor clients): each thread keeps one connection per
processor origin between calls, instead of a new TCP connection per client. A POST on a connection that drops after
the request was sent is still ``ProcessorTimeout`` (outcome unknown), so a pooled connection must not be one the
server is closing: one idle longer than ``keepalive_seconds`` (well under any server's keep-alive timeout) is never
reused, and urllib3 checks a pooled connection for a close the server already sent before reusing it
(``is_connection_dropped``), opening a new one instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.utils import get_environ_proxies
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
#: Connections per (thread, origin): one per TLS configuration (urllib3 keys its pools by them), a few at most.
_KEEPALIVE_POOLS = 4
#: ``PROCESSOR_KEEPALIVE_SECONDS``' default: a connection idle longer than this is not reused. Well under the
#: shortest common server keep-alive timeouts (gunicorn 2 s, Apache 5 s; nginx 75 s, AWS load balancers 60 s).
DEFAULT_KEEPALIVE_SECONDS = 1.0
_kept_alive = threading.local()


def _thread_adapter(url: str, idle_seconds: float) -> list:
    """This thread's transport to ``url``'s origin, its connection kept alive between calls; dropped and replaced
    when it has been idle longer than ``idle_seconds`` (its connection might be closing on the server's side).
    Returns ``[adapter, when it was last used]`` (``time.monotonic``), the caller updating the time."""
    parts = urlsplit(url)
    origin = (parts.scheme, parts.netloc)
    adapters = getattr(_kept_alive, "adapters", None)
    if adapters is None:
        adapters = _kept_alive.adapters = {}
    entry = adapters.get(origin)
    if entry is not None and time.monotonic() - entry[1] > idle_seconds:
        entry[0].close()
        entry = None
    if entry is None:
        # No automatic retries here either (see HttpClient.__init__).
        entry = [HTTPAdapter(max_retries=0, pool_connections=_KEEPALIVE_POOLS, pool_maxsize=1), 0.0]
        adapters[origin] = entry
    return entry


class KeptAliveAdapter(BaseAdapter):
    """A transport that sends through the calling thread's kept-alive connection to the request's origin
    (``_thread_adapter``), never one idle longer than ``idle_seconds``. The connections belong to the thread, not to
    one client: ``close`` (a client's session closed) leaves them to the thread's next call."""

    def __init__(self, idle_seconds: float):
        super().__init__()
        if not idle_seconds > 0:
            raise ValueError("idle_seconds must be positive")
        self.idle_seconds = idle_seconds

    def send(self, request, **kwargs):
        entry = _thread_adapter(request.url, self.idle_seconds)
        try:
            return entry[0].send(request, **kwargs)
        finally:
            # Idle from now on (the body is read right after: the idle time is, if anything, overestimated).
            entry[1] = time.monotonic()

    def close(self) -> None:
        pass


_environment: dict[tuple, dict] = {}


def _environ_proxies(url: str) -> dict:
    """``requests.utils.get_environ_proxies(url)`` (the ``*_proxy`` variables, NO_PROXY honoured), read once per
    process and origin — like the settings, the environment is the process's configuration (scanning it on every
    call costs tens of microseconds: ``os.environ`` decodes every variable). ``clear_environment_cache`` forgets it."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    proxies = _environment.get(key)
    if proxies is None:
        proxies = _environment[key] = get_environ_proxies(url)
    return dict(proxies)


def clear_environment_cache() -> None:
    """Forget the proxies read from the environment (a test that changes it)."""
    _environment.clear()


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


#: Bytes per read of a streamed answer (``HttpClient._send_streamed``).
_STREAM_CHUNK = 1 << 16
_CUT_OFF = "connection lost while the answer was read"


def _read_head(chunks: Iterator[bytes], size: int) -> bytes:
    """At least the first ``size`` bytes of ``chunks`` (all of them when fewer), whole chunks."""
    parts, length = [], 0
    for chunk in chunks:
        parts.append(chunk)
        length += len(chunk)
        if length >= size:
            break
    return b"".join(parts)


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
    reason = getattr(reason, "original_error", reason)  # a proxy that could not be reached: the same
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
        keepalive_seconds: float | None = None,
    ):
        """``keepalive_seconds``: send through the thread's kept-alive connections (``KeptAliveAdapter``), never
        reusing one idle longer than that; None or 0: this client's own connections (one per client)."""
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
            self.session.mount(prefix, KeptAliveAdapter(keepalive_seconds) if keepalive_seconds
                               else HTTPAdapter(max_retries=0))
        # requests would re-read the whole environment for proxies on every call (``os.environ`` decodes every
        # variable: tens of microseconds a call): the environment is honoured here instead (``_environment_settings``:
        # the same proxies, NO_PROXY and CA bundle; the proxies read once per process, ``_environ_proxies``).
        # Credentials are always explicit: no .netrc.
        self._trusts_environment = self.session.trust_env
        self.session.trust_env = False

    def _environment_settings(self, url: str) -> dict:
        """What requests takes from the environment for ``url`` when the session trusts it: ``proxies`` and
        ``verify``; nothing when the session was given with ``trust_env`` off."""
        if not self._trusts_environment:
            return {"verify": self.verify}
        verify = self.verify
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        return {"proxies": _environ_proxies(url), "verify": verify}

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _send(self, method: str, path: str, *, operation: str, **kwargs: Any) -> tuple[requests.Response, Exchange]:
        """Send one request; return the response (its body read) and its audit record, or raise a typed error.

        ``audit_body`` is what to record instead of the wire body (e.g. the JSON inside a JWS);
        ``audit_url`` what to record instead of a URL that is itself a secret (a Slack webhook).
        """
        response, exchange, _ = self._exchange(method, path, operation=operation, stream=False, **kwargs)
        return response, exchange

    def _send_streamed(self, method: str, path: str, *, operation: str,
                       **kwargs: Any) -> tuple[requests.Response, Exchange, Iterator[bytes]]:
        """``_send`` for a large answer, read as it arrives: also returns the body's chunks (bytes), to be read to
        the end (the connection is reused only then; ``response.close()`` otherwise). The audit record holds the
        same first ``_MAX_AUDIT_BODY`` bytes as ``_send``'s; a connection lost while the rest is read raises
        ``ProcessorTimeout`` from the chunks. An error status (4xx, 5xx) is read whole, as ``_send`` reads it."""
        return self._exchange(method, path, operation=operation, stream=True, **kwargs)

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        stream: bool,
        json_body: Any = None,
        data: Any = None,
        params: dict | None = None,
        headers: dict | None = None,
        audit_body: Any = None,
        url: str | None = None,
        audit_url: str | None = None,
    ) -> tuple[requests.Response, Exchange, Iterator[bytes] | None]:
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
                method, target, json=json_body, data=data, params=params, headers=headers, stream=stream,
                timeout=self.timeout, cert=self.cert, allow_redirects=False, **self._environment_settings(target),
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

        rest = None
        try:
            if stream and response.status_code < 400:
                rest = response.iter_content(_STREAM_CHUNK)
                head = _read_head(rest, _MAX_AUDIT_BODY)
            else:
                head = response.content
        except requests.RequestException as exc:
            response.close()
            raise fail(ProcessorTimeout, _CUT_OFF, status=response.status_code) from exc
        exchange = Exchange(
            **base,
            status=response.status_code,
            response_body=_redacted_body(head[:_MAX_AUDIT_BODY]),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        chunks = None if rest is None else self._cut_off_is_timeout(itertools.chain((head,), rest), exchange)
        if response.status_code >= 500:
            raise ProcessorUnavailable(f"HTTP {response.status_code}", processor=self.processor,
                                       operation=operation, exchange=exchange)
        if response.status_code in (401, 403):
            raise ProcessorAuthError(f"HTTP {response.status_code}", processor=self.processor,
                                     operation=operation, exchange=exchange)
        return response, exchange, chunks

    def _cut_off_is_timeout(self, chunks: Iterator[bytes], exchange: Exchange) -> Iterator[bytes]:
        """``chunks``, with a connection lost (or timing out) while they are read raised as ``ProcessorTimeout``: the
        request was sent, the answer did not arrive whole."""
        try:
            yield from chunks
        except requests.RequestException as exc:
            raise ProcessorTimeout(_CUT_OFF, processor=self.processor, operation=exchange.operation,
                                   exchange=dataclasses.replace(exchange, error=_CUT_OFF)) from exc

    def json_body(self, response: requests.Response, exchange: Exchange, *, operation: str) -> Any:
        """The response's JSON, or ``ProcessorProtocolError`` when it is not JSON."""
        try:
            return response.json()
        except ValueError as exc:
            raise ProcessorProtocolError("answer is not valid JSON", processor=self.processor,
                                         operation=operation, exchange=exchange) from exc
