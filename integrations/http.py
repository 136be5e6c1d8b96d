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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3
from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from core.redaction import redact, redact_text
from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorProtocolError,
    ProcessorTimeout,
    ProcessorUnavailable,
)

_MAX_AUDIT_BODY = 20_000
#: Connection pools per (owner, route): one per host and TLS configuration, a few at most.
_KEEPALIVE_POOLS = 4
#: ``PROCESSOR_KEEPALIVE_SECONDS``' default: a connection idle longer than this is not reused. Well under the
#: shortest common server keep-alive timeouts (gunicorn 2 s, Apache 5 s; nginx 75 s, AWS load balancers 60 s).
DEFAULT_KEEPALIVE_SECONDS = 1.0
#: Sent with every request unless the caller sets them (what requests sent, but for the agent's name).
_DEFAULT_HEADERS = {"User-Agent": f"payments-service urllib3/{urllib3.__version__}",
                    "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}
_kept_alive = threading.local()


def _new_manager(proxy: str | None, tls: dict) -> urllib3.PoolManager:
    """The pools of one route: to the origin itself, or through ``proxy`` (its credentials, if its URL carries any,
    sent as ``Proxy-Authorization``). One connection per pool (a thread or a client sends one request at a time);
    never a transport retry or a redirect (``urlopen`` is always called with ``retries=False``)."""
    if proxy is None:
        return urllib3.PoolManager(num_pools=_KEEPALIVE_POOLS, maxsize=1, **tls)
    if not proxy.lower().startswith(("http://", "https://")):
        raise ValueError("only http(s) proxies are supported")
    username, password = get_auth_from_url(proxy)
    headers = urllib3.make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, num_pools=_KEEPALIVE_POOLS, maxsize=1, **tls)


def _thread_manager(route: tuple, make: Callable[[], urllib3.PoolManager], idle_seconds: float) -> list:
    """This thread's pools for ``route`` (origin, proxy, TLS settings), their connection kept alive between calls;
    dropped and replaced when idle longer than ``idle_seconds`` (the connection might be closing on the server's
    side); ``make()`` builds a new one. Returns ``[manager, when it was last used]`` (``time.monotonic``), the caller
    updating the time. The
    connections belong to the thread, not to one client: a client closed leaves them to the thread's next call."""
    managers = getattr(_kept_alive, "managers", None)
    if managers is None:
        managers = _kept_alive.managers = {}
    entry = managers.get(route)
    if entry is not None and time.monotonic() - entry[1] > idle_seconds:
        entry[0].clear()
        entry = None
    if entry is None:
        entry = managers[route] = [make(), 0.0]
    return entry


_environment: dict[tuple, dict] = {}


def _environ_proxies(url: str) -> dict:
    """``requests.utils.get_environ_proxies(url)`` (the ``*_proxy`` variables, NO_PROXY honoured, as requests honours
    them), read once per process and origin — like the settings, the environment is the process's configuration
    (scanning it on every call costs tens of microseconds: ``os.environ`` decodes every variable).
    ``clear_environment_cache`` forgets it."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    proxies = _environment.get(key)
    if proxies is None:
        proxies = _environment[key] = get_environ_proxies(url)
    return dict(proxies)


def clear_environment_cache() -> None:
    """Forget the proxies read from the environment (a test that changes it)."""
    _environment.clear()


def _tls_settings(verify: bool | str, cert: tuple[str, str] | str | None) -> dict:
    """urllib3's pool arguments for ``verify`` (True: the certifi bundle, as requests; a path: that bundle or
    directory; False: no verification) and ``cert`` (client certificate and key files, or one file with both)."""
    if verify is False:
        tls: dict = {"cert_reqs": "CERT_NONE"}
    elif verify is True:
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
    elif os.path.isdir(verify):
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": verify}
    else:
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": verify}
    if isinstance(cert, tuple | list):
        tls["cert_file"], tls["key_file"] = cert
    elif cert:
        tls["cert_file"] = cert
    return tls


class Response:
    """An answer as the clients read it: ``status_code``, ``headers``, ``content`` (the body's bytes, once read),
    ``text``, ``json()``, and ``close()`` (also as a context manager) for a streamed answer — its connection is
    kept for reuse only when the body was read to the end, else closed."""

    __slots__ = ("_consumed", "_raw", "content", "headers", "status_code")

    def __init__(self, raw: urllib3.BaseHTTPResponse):
        self._raw = raw
        self.status_code: int = raw.status
        self.headers = raw.headers
        self.content: bytes | None = None
        self._consumed = False

    def _read_all(self) -> bytes:
        self.content = self._raw.read()
        self._consumed = True
        self._raw.release_conn()
        return self.content

    def _chunks(self, size: int) -> Iterator[bytes]:
        yield from self._raw.stream(size)
        self._consumed = True
        self._raw.release_conn()

    @property
    def text(self) -> str:
        """The body decoded with the charset its ``Content-Type`` names (UTF-8 when none), bad bytes replaced."""
        charset = self.headers.get("Content-Type", "").lower().partition("charset=")[2].split(";")[0].strip(" \"'")
        try:
            return (self.content or b"").decode(charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return (self.content or b"").decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body's JSON (UTF-8 with or without a byte-order mark, UTF-16 or UTF-32, as JSON allows);
        ``ValueError`` when it is not JSON."""
        return json.loads(self.content or b"")

    def close(self) -> None:
        if not self._consumed:
            self._raw.close()  # half-read: the connection is not reused
        self._raw.release_conn()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def _transport_error(exc: Exception) -> tuple[type, str]:
    """The typed error (class, message) for what urllib3 (or http.client, refusing a header or a URL) raised while a
    request was made: whether it could have reached the processor decides between "unavailable" (never sent) and
    "timeout" (outcome unknown)."""
    cause = getattr(exc, "original_error", exc)  # a proxy that failed: what failed
    if isinstance(cause, NewConnectionError):  # a subclass of ConnectTimeoutError: first
        return ProcessorUnavailable, "could not connect"
    if isinstance(cause, ConnectTimeoutError):
        return ProcessorUnavailable, "connect timeout"
    if isinstance(cause, SSLError):
        # TLS refused (client certificate or server verification): nothing was processed.
        return ProcessorAuthError, "TLS handshake failed"
    if isinstance(exc, ReadTimeoutError):
        return ProcessorTimeout, "no answer within the read timeout"
    if isinstance(exc, ProtocolError | ProxyError):
        return ProcessorTimeout, "connection lost after the request was sent"
    return ProcessorUnavailable, f"request failed: {type(exc).__name__}"


class HttpClient:
    """Base of every client. Subclasses call ``_send`` and parse with ``json_body``.

    The transport is urllib3 (requests' own), called directly: requests' per-call preparation (merging session
    settings, hooks, cookies, re-parsing the URL) cost about as much CPU as the HTTP exchange itself. What the
    clients relied on from requests is kept: explicit connect/read timeouts, no retries and no redirects, the
    certifi CA bundle (or ``verify``), client certificates, proxies from the environment as requests reads them
    (``_environ_proxies``; ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` when ``verify`` is True), no ``.netrc``, JSON
    bodies as requests encodes them, gzip answers decoded."""

    processor = "http"

    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        cert: tuple[str, str] | None = None,
        verify: bool | str = True,
        keepalive_seconds: float | None = None,
    ):
        """``keepalive_seconds``: send through the thread's kept-alive connections (``_thread_manager``), never
        reusing one idle longer than that; None or 0: this client's own connections (closed by ``close``)."""
        if not base_url:
            raise ProcessorConfigurationError(
                "base URL is not configured", processor=self.processor, operation="configure"
            )
        if keepalive_seconds is not None and keepalive_seconds < 0:
            raise ValueError("keepalive_seconds must not be negative")
        self.base_url = base_url.rstrip("/")
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.cert = cert
        self.verify = verify
        self.keepalive_seconds = keepalive_seconds or 0
        self._own: dict[tuple, urllib3.PoolManager] = {}  # keep-alive off: this client's pools, per route

    def close(self) -> None:
        """Close this client's own connections (none when it uses the thread's kept-alive ones)."""
        for manager in self._own.values():
            manager.clear()
        self._own.clear()

    def _manager(self, url: str) -> tuple[urllib3.PoolManager, list | None]:
        """The pools for ``url`` with the environment's proxy and CA bundle: the thread's kept-alive ones (with their
        ``[manager, last used]`` entry, for the caller to stamp) or this client's own."""
        verify = self.verify
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        proxies = _environ_proxies(url)
        proxy = select_proxy(url, proxies) if proxies else None
        parts = urlsplit(url)
        route = (parts.scheme, parts.netloc, proxy, verify, self.cert)
        def make() -> urllib3.PoolManager:
            return _new_manager(proxy, _tls_settings(verify, self.cert))

        if self.keepalive_seconds:
            entry = _thread_manager(route, make, self.keepalive_seconds)
            return entry[0], entry
        manager = self._own.get(route)
        if manager is None:
            manager = self._own[route] = make()
        return manager, None

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _send(self, method: str, path: str, *, operation: str, **kwargs: Any) -> tuple[Response, Exchange]:
        """Send one request; return the response (its body read) and its audit record, or raise a typed error.

        ``audit_body`` is what to record instead of the wire body (e.g. the JSON inside a JWS);
        ``audit_url`` what to record instead of a URL that is itself a secret (a Slack webhook).
        """
        response, exchange, _ = self._exchange(method, path, operation=operation, stream=False, **kwargs)
        return response, exchange

    def _send_streamed(self, method: str, path: str, *, operation: str,
                       **kwargs: Any) -> tuple[Response, Exchange, Iterator[bytes]]:
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
    ) -> tuple[Response, Exchange, Iterator[bytes] | None]:
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

        entry = None
        try:
            if params:
                query = urlencode([(key, value) for key, value in params.items() if value is not None], doseq=True)
                target = f"{target}{'&' if '?' in target else '?'}{query}" if query else target
            body, wire_headers = _body(json_body, data, headers)
            manager, entry = self._manager(target)
            raw = manager.urlopen(method, target, body=body, headers=wire_headers, redirect=False, retries=False,
                                  timeout=self._timeout, preload_content=False, decode_content=True)
        except (HTTPError, ValueError) as exc:  # ValueError: a header or URL http.client refuses, a NaN in the JSON
            cls, message = _transport_error(exc)
            raise fail(cls, message) from exc
        finally:
            if entry is not None:
                # Idle from now on (the body is read right after: the idle time is, if anything, overestimated).
                entry[1] = time.monotonic()

        response, rest = Response(raw), None
        try:
            if stream and response.status_code < 400:
                rest = response._chunks(_STREAM_CHUNK)
                head = _read_head(rest, _MAX_AUDIT_BODY)
            else:
                head = response._read_all()
        except (HTTPError, OSError) as exc:
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
        except (HTTPError, OSError) as exc:
            raise ProcessorTimeout(_CUT_OFF, processor=self.processor, operation=exchange.operation,
                                   exchange=dataclasses.replace(exchange, error=_CUT_OFF)) from exc

    def json_body(self, response: Response, exchange: Exchange, *, operation: str) -> Any:
        """The response's JSON, or ``ProcessorProtocolError`` when it is not JSON."""
        try:
            return response.json()
        except ValueError as exc:
            raise ProcessorProtocolError("answer is not valid JSON", processor=self.processor,
                                         operation=operation, exchange=exchange) from exc


def _body(json_body: Any, data: Any, headers: dict | None) -> tuple[bytes | None, dict]:
    """The wire body and headers as requests made them: ``json_body`` as ``json.dumps`` (NaN refused) in UTF-8 with
    ``Content-Type: application/json``; ``data`` as it is (bytes or text), or a dict form-encoded with
    ``Content-Type: application/x-www-form-urlencoded``; a ``Content-Type`` the caller set wins."""
    wire = {**_DEFAULT_HEADERS, **(headers or {})}
    content_type = None
    if data is not None:
        if isinstance(data, dict):
            body = urlencode(list(data.items()), doseq=True).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body = data.encode() if isinstance(data, str) else data
    elif json_body is not None:
        body = json.dumps(json_body, allow_nan=False).encode()
        content_type = "application/json"
    else:
        body = None
    if content_type and not any(name.lower() == "content-type" for name in wire):
        wire["Content-Type"] = content_type
    return body, wire
