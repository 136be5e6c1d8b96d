"""Helpers of the JPM webhook tests: signed deliveries, JPM subscription payments through the API and the sandbox,
the callbacks the sandbox queued, and the processing job run the way a worker runs it."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import TestCase
from rest_framework.test import APIClient

from core.models import OutboxEvent
from core.signatures import hmac_signature
from payments.models import Payment, PaymentStatusChange
from syncing.jpm_webhook_jobs import process_jpm_webhook_task
from syncing.models import JpmWebhookMessage
from tests.broker import drain
from tests.sandbox_fixtures import WEBHOOK_SECRET

URL = "/webhooks/jpm"
QUEUE = "jpm-webhooks"
USER = "jpmwh-user"
ROUTING = "026009593"
ACCOUNTS = {
    "acc-ok": "739146285017",  # settles
    "acc-r02": "5555009902",  # returned R02 (JPM AC04: blocking)
    "acc-r01": "5555009901",  # returned R01 (JPM AM04: not blocking)
    "acc-rejected": "5555009803",  # rejected R03 (JPM AC01)
}


def signed_headers(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> dict:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"HTTP_X_JPM_SIGNATURE": hmac_signature(secret=secret, body=body, timestamp=ts)}


def deliver(client, body: bytes | dict, *, sign: bool = True, **headers):
    """POST a message as JPM does (raw bytes, signed unless ``sign=False``)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    if sign:
        headers = {**signed_headers(body), **headers}
    with TestCase.captureOnCommitCallbacks(execute=True):  # the test's transaction never commits: run them
        return client.generic("POST", URL, data=body, content_type="application/json", **headers)


def message(*callbacks: dict) -> bytes:
    return json.dumps({"callbacks": list(callbacks)}).encode()


def callback(end_to_end_id: str, status: str, at: str = "2030-01-02T15:00:00+00:00", code: str | None = None,
             description: str = "Account closed") -> dict:
    item = {"endToEndId": end_to_end_id, "firmRootId": "FR-" + end_to_end_id[:8], "createDateTime": at,
            "paymentStatus": status, "exceptions": []}
    if code:
        item["exceptions"] = [{"errorCode": "ACH-RETURN", "errorDescription": description,
                               "ruleDefinition": "return", "externalCode": code}]
    return item


def queued_ids() -> list[int]:
    """The message ids the intake put on the jpm-webhooks queue (read and acked)."""
    ids = []
    for headers, payload in drain(QUEUE):
        assert headers["task"] == "syncing.process_jpm_webhook", headers
        ids.append(payload[0][0])
    return ids


def run_queued() -> list[dict]:
    """What the workers would do: run the job for every queued message, through Celery's tracer (eager)."""
    results = []
    for message_id in queued_ids():
        result = process_jpm_webhook_task.apply(args=[message_id])
        assert result.successful(), result.traceback
        results.append(result.get())
    return results


def sandbox_callbacks(sandbox) -> list[dict]:
    """Every callback the sandbox queued (pending), as JPM would send them."""
    return [item["callback"] for item in sandbox.control("GET", "jpm/callbacks")["pending"]]


def changes(payment) -> list[tuple]:
    return [(c.from_status, c.to_status, c.source) for c in
            PaymentStatusChange.objects.filter(payment_id=payment.pk).order_by("id")]


def event_types(payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


def fresh(payment) -> Payment:
    return Payment.objects.get(pk=payment.pk)


def state(payment) -> dict:
    return {"row": Payment.objects.filter(pk=payment.pk).values().get(), "changes": changes(payment),
            "events": event_types(payment)}


def nothing_stored() -> bool:
    return not JpmWebhookMessage.objects.exists()


@pytest.fixture
def jpm_customer(db):
    from bank_accounts.services import bank_account_save

    for account_id, number in ACCOUNTS.items():
        bank_account_save(user_id=USER, account_id=account_id, account_number=number, routing_number=ROUTING,
                          actor="test")
    return USER


@pytest.fixture
def subscribe(client_as, jpm_customer):
    """``subscribe(account_id)``: a JPM subscription ACH debit through the API (service key) → the Payment."""
    service = client_as("service")

    def _subscribe(account_id: str = "acc-ok", user_id: str = USER) -> Payment:
        body = {"user_id": user_id, "purpose": "subscription", "payment_method": "ach", "payment_type": "debit",
                "amount": "9.99", "account_id": account_id}
        response = service.post("/api/v1/payments", body, format="json",
                                HTTP_IDEMPOTENCY_KEY=f"key-{uuid.uuid4()}")
        assert response.status_code == 201, response.content
        payment = Payment.objects.get(pk=response.json()["id"])
        assert payment.payment_provider == "jpm" and payment.payment_status == "ACHSENT"
        return payment

    return _subscribe


@pytest.fixture
def jpm():
    """An unauthenticated client (JPM has no API key)."""
    return APIClient()


@pytest.fixture
def webhook_queue():
    """The jpm-webhooks queue emptied before and after the test."""
    drain(QUEUE)
    yield
    drain(QUEUE)
