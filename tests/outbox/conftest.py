"""Fixtures of the outbox tests: payments moved through the real status machine, an isolated consumer registry,
recording consumers, and a local HTTP receiver for push subscriptions."""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache

from core import outbox_relay
from core.models import OutboxEvent
from payments.models import Payment
from payments.status import payment_apply_status, payment_emit_event

# (purpose, payment_type, method, provider) of the payments the tests make.
KINDS = {
    "subscription_ach": ("subscription", "debit", "ach", "jpm"),
    "float_debit_ach": ("float", "debit", "ach", "usio"),
    "float_credit_ach": ("float", "credit", "ach", "usio"),
    "float_debit_pinless": ("float", "debit", "pinless", "usio"),
    "loan_debit_ach": ("loan", "debit", "ach", "usio"),
}


def make_payment(kind: str = "subscription_ach", *, user_id: str | None = None, amount: str = "25.00") -> Payment:
    purpose, payment_type, method, provider = KINDS[kind]
    return Payment.objects.create(
        user_id=user_id or f"user-{uuid.uuid4().hex[:12]}", purpose=purpose, payment_type=payment_type,
        payment_method=method, payment_provider=provider, amount=Decimal(amount),
        confirmation_id=f"C{uuid.uuid4().hex[:20]}", masked_account_number="6789" if method == "ach" else None,
    )


def move(payment: Payment, *steps) -> None:
    """Apply status changes in order: each step is a status or ``(status, {kwargs})``; ``"SENT"`` emits
    ``SUBSCRIPTION_SENT``. Every step must apply."""
    for step in steps:
        if step == "SENT":
            assert payment_emit_event(payment_id=payment.pk, event_type="SUBSCRIPTION_SENT", source="webhook")
            continue
        status, kwargs = step if isinstance(step, tuple) else (step, {})
        result = payment_apply_status(payment_id=payment.pk, to_status=status, source=kwargs.pop("source", "api"),
                                      **kwargs)
        assert result.applied, (status, result.outcome)


def returned(code: str) -> tuple[str, dict]:
    return ("FAILED", {"failure": "returned", "return_code": code, "return_info": "RETURNED", "source": "usio_sync"})


def subscription_with_events(user_id: str | None = None) -> Payment:
    """A JPM subscription debit with four events: CLEARED, SENT, COMPLETED, RETURNED (R01: not blocking)."""
    payment = make_payment("subscription_ach", user_id=user_id)
    move(payment, "ACHSENT", "CLEARED", "SENT", "COMPLETED", returned("R01"))
    return payment


def events_of(payment: Payment) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence"))


@pytest.fixture(autouse=True)
def _no_kick_flags():
    """The after-commit kick coalesces through the cache: start every test without a flag."""
    cache.delete_many(["core:outbox-relay-kick", "core:outbox-push-kick"])
    yield
    cache.delete_many(["core:outbox-relay-kick", "core:outbox-push-kick"])


@pytest.fixture
def registry():
    """An empty consumer registry for the test (the real consumers are put back afterwards)."""
    saved = dict(outbox_relay._CONSUMERS)
    outbox_relay._CONSUMERS.clear()
    yield outbox_relay._CONSUMERS
    outbox_relay._CONSUMERS.clear()
    outbox_relay._CONSUMERS.update(saved)


class Recorder:
    """A consumer that records each envelope it handles (thread-safe) and can be told to fail."""

    def __init__(self, name: str):
        self.name = name
        self.calls: list[dict] = []
        self.fail_on: dict[str, int] = {}  # event id → how many more calls raise
        self.fail_always: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()

    def __call__(self, envelope: dict) -> None:
        import time

        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls.append(envelope)
            remaining = self.fail_on.get(envelope["id"], 0)
            if remaining:
                self.fail_on[envelope["id"]] = remaining - 1
        if remaining or envelope["id"] in self.fail_always:
            raise RuntimeError(f"{self.name} failed on {envelope['type']}")

    def ids(self) -> list[str]:
        return [c["id"] for c in self.calls]

    def sequences(self, aggregate: Payment) -> list[int]:
        return [c["sequence"] for c in self.calls if c["data"]["id"] == str(aggregate.pk)]


@pytest.fixture
def recorder(registry):
    """``recorder(name, types=None)``: register a recording consumer in the isolated registry."""

    def _make(name: str, types: set[str] | None = None) -> Recorder:
        consumer = Recorder(name)
        outbox_relay.register_consumer(name, consumer, types)
        return consumer

    return _make


# --- A local HTTP receiver for push subscriptions -----------------------------------------------------------------


class Receiver:
    """Records every POST (headers, raw body) and answers with the next scripted status (default 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.default_status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"ok": 200 <= status < 300}).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
