"""The sandbox framework: clock, fault injection, request log, and the service plug-in interface.

Each fake (``sandbox/usio.py``, ``sandbox/jpm/``, ``sandbox/outbound.py``) is a ``SandboxService``
mounted under ``/<name>/``; ``sandbox/app.py`` dispatches to them and serves the control API.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from core.redaction import redact
from sandbox.defaults import SANDBOX_JPM_CLIENT_ID, SANDBOX_JPM_WEBHOOK_SECRET, SANDBOX_USIO_MERCHANT_IDS

FAULT_MODES = ("500", "400", "timeout", "malformed", "slow")


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8900
    # How long a "timeout" answer hangs: longer than the clients' read timeout.
    hang_seconds: float = 35.0
    # Routing numbers that are RTP-eligible (RTPAccountCheck).
    rtp_routing_numbers: tuple[str, ...] = ("021000021", "011000015", "026009593")
    # Usio merchant accounts: merchant id -> (login, password); same defaults as the local settings.
    usio_accounts: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {
            mid: (f"sandbox-{name}", f"sandbox-{name}-password") for name, mid in SANDBOX_USIO_MERCHANT_IDS.items()
        }
    )
    usio_initial_balance: Decimal = Decimal("100000.00")
    # JPM: the OAuth client and the public key its assertions (and JWS bodies) are verified with.
    jpm_client_id: str = SANDBOX_JPM_CLIENT_ID
    jpm_public_key_path: str = ""
    jpm_require_signed_bodies: bool = False
    jpm_token_ttl_seconds: int = 3600
    # Where "deliver callbacks" posts, and the shared secret it signs with (SPEC §10).
    jpm_webhook_url: str = "http://127.0.0.1:8000/webhooks/jpm"
    jpm_webhook_secret: str = SANDBOX_JPM_WEBHOOK_SECRET


class Clock:
    """Real time plus an offset the control API advances ("advance time by N days")."""

    def __init__(self):
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, *, days: float = 0, seconds: float = 0) -> datetime:
        self.offset += timedelta(days=days, seconds=seconds)
        return self.now()

    def reset(self) -> None:
        self.offset = timedelta(0)


@dataclass
class Fault:
    mode: str
    remaining: int
    delay: float = 0.0


class Faults:
    """Scripted failures: the next N calls of an operation answer 500 / 400 / hang / malformed JSON / slowly."""

    def __init__(self):
        self._rules: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, operation: str, mode: str, count: int = 1, delay: float = 0.0) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._rules.setdefault(operation, deque()).append(Fault(mode, count, delay))

    def take(self, operation: str) -> Fault | None:
        with self._lock:
            for key in (operation, operation.split(".")[0] + ".*", "*"):
                queue = self._rules.get(key)
                if queue:
                    fault = queue[0]
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.popleft()
                    return fault
        return None

    def pending(self) -> dict:
        with self._lock:
            return {op: [f.__dict__ for f in q] for op, q in self._rules.items() if q}

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()


class RequestLog:
    """Every request received, redacted — the witness for "no duplicate submissions"."""

    def __init__(self, limit: int = 100_000):
        self._entries: deque[dict] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, *, service: str, operation: str, method: str, path: str, body: Any, status: int,
            fault: str | None) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append({
                "seq": self._seq, "at": datetime.now(UTC).isoformat(), "service": service,
                "operation": operation, "method": method, "path": path, "body": redact(body),
                "status": status, "fault": fault,
            })

    def list(self, *, service: str | None = None, operation: str | None = None) -> list[dict]:
        with self._lock:
            return [e for e in self._entries
                    if (service is None or e["service"] == service)
                    and (operation is None or e["operation"] == operation)]

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Context:
    config: SandboxConfig
    clock: Clock = field(default_factory=Clock)
    faults: Faults = field(default_factory=Faults)
    log: RequestLog = field(default_factory=RequestLog)
    services: dict[str, SandboxService] = field(default_factory=dict)


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json", headers=headers)


def request_json(request: Request) -> Any:
    """The request's JSON body, or None when it is absent or not JSON (handlers answer as the processor)."""
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        return None


class SandboxService:
    """One fake peer mounted at ``/<name>/``; its control routes live at ``/_control/<name>/``."""

    name = "service"

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.lock = threading.RLock()

    def operation(self, request: Request, subpath: str) -> str:
        """The operation name used for faults and the request log, e.g. ``usio.SubmitTokenPayment``."""
        return f"{self.name}.{subpath.split('/')[0] or 'root'}"

    def handle(self, request: Request, subpath: str) -> Response:
        raise NotImplementedError

    def control(self, request: Request, subpath: str) -> Response | None:
        """Service-specific control routes; None = not found."""
        return None

    def reset(self) -> None:
        """Forget everything (ledger, tokens, messages)."""

    def on_clock_advanced(self) -> None:
        """Move time-driven state forward (statuses, returns) to ``self.ctx.clock.now()``."""

    def log_body(self, request: Request) -> Any:
        """What to record of the request body (the base records the JSON or the text)."""
        body = request_json(request)
        return body if body is not None else request.get_data(as_text=True)[:2000]


def sleep_for_hang(ctx: Context) -> None:
    time.sleep(ctx.config.hang_seconds)


def hang_after(response: Response) -> Response:
    """Mark an answer to be sent only after ``hang_seconds``: the request was processed (and is logged at
    once), but the client times out first. The app does the waiting, after logging."""
    response.hang_after = True
    return response
