"""Shared fixtures of the payments tests: request bodies, a user's bank account and debit card, callers per role,
the processor calls the sandbox saw, and a snapshot of everything a refused request must not change.

Append-friendly: other engineers add their fixtures at the end of this file.
"""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from rest_framework.test import APIClient

from core.models import IdempotencyKey, OutboxEvent
from payments.models import Payment, PaymentStatusChange

USER = "user-1"
OTHER_USER = "user-2"
ACCOUNT_ID = "acc-1"
# Valid ABA routing numbers: ROUTING is RTP-eligible in the sandbox (its default list), ROUTING_NOT_RTP is not.
ROUTING = "026009593"
ROUTING_NOT_RTP = "111000025"
ACCOUNT = "739146285017"  # settles (sandbox conventions: no 98nn/99nn suffix)
ACCOUNT_REJECTED = "7391462898" + "02"  # ends 9802: rejected at once with R02
DEBIT_TOKEN = "tok_debit_000000000001"
CREDIT_TOKEN = "tok_credit_000000000001"
CARD_LAST4 = "4242"
PAYMENTS_URL = "/api/v1/payments"
PROCESSOR_SERVICES = ("usio", "jpm")


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def payment_body(**overrides) -> dict:
    """A valid float ACH debit of 25.00 for USER from ACCOUNT_ID; ``None`` values remove a field."""
    body = {
        "user_id": USER,
        "purpose": "float",
        "payment_method": "ach",
        "payment_type": "debit",
        "amount": "25.00",
        "account_id": ACCOUNT_ID,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def card_body(**overrides) -> dict:
    """``payment_body`` for a pinless float debit (no account_id)."""
    return payment_body(payment_method="pinless", account_id=None, **overrides)


def post_payment(client: APIClient, body: dict, key: str | None = "auto", **headers):
    """POST /api/v1/payments with ``Idempotency-Key`` (a fresh one by default; ``None`` sends none)."""
    if key == "auto":
        key = new_key()
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(PAYMENTS_URL, body, format="json", **headers)


def processor_calls(sandbox, operation: str | None = None) -> list[dict]:
    """Every request the sandbox received at a processor's payment/lookup operations (JPM tokens excluded), in
    order; ``operation`` like ``usio.SubmitTokenPayment`` or ``jpm.payments``."""
    calls = [r for r in sandbox.requests() if r["service"] in PROCESSOR_SERVICES and r["operation"] != "jpm.token"]
    if operation is not None:
        calls = [r for r in calls if r["operation"] == operation]
    return calls


def reference_of(call: dict) -> str | None:
    """Our reference as the sandbox logged it (Usio ``AdditionalSearch``, JPM ``endToEndId``)."""
    body = call["body"] or {}
    if "jws" in body:
        body = body["jws"]
    if call["service"] == "jpm":
        return ((body.get("payments") or {}).get("paymentIdentifiers") or {}).get("endToEndId")
    return body.get("AdditionalSearch")


def snapshot() -> dict:
    """What a refused request must leave unchanged."""
    return {
        "payments": list(Payment.objects.order_by("pk").values()),
        "changes": PaymentStatusChange.objects.count(),
        "events": OutboxEvent.objects.count(),
    }


def completed_keys() -> int:
    return IdempotencyKey.objects.filter(status="completed").count()


@pytest.fixture
def bank_account(db):
    """``bank_account(...)``: save a bank account (defaults: USER, ACCOUNT_ID, ACCOUNT, ROUTING, checking)."""
    from bank_accounts.services import bank_account_save

    def _make(*, user_id: str = USER, account_id: str = ACCOUNT_ID, account_number: str = ACCOUNT,
              routing_number: str = ROUTING, account_type: str | None = None):
        return bank_account_save(user_id=user_id, account_id=account_id, account_number=account_number,
                                 routing_number=routing_number, account_type=account_type,
                                 actor="service:test").account

    return _make


@pytest.fixture
def debit_card(db):
    """``debit_card(...)``: save the user's debit card (defaults: USER, DEBIT_TOKEN, CREDIT_TOKEN, last 4 4242)."""
    from cards.services import card_save

    def _make(*, user_id: str = USER, debit_token: str = DEBIT_TOKEN, credit_token: str = CREDIT_TOKEN,
              last4: str = CARD_LAST4):
        card, _ = card_save(user_id=user_id, masked_card_number=last4, card_exp=f"12{date.today().year + 2}",
                            transaction_reference_id=credit_token, debit_transaction_reference_id=debit_token,
                            actor="service:test")
        return card

    return _make


@pytest.fixture
def caller(client_as, make_jwt):
    """``caller(role)``: an APIClient for service/support/admin, ``user`` (JWT of USER), ``other_user`` (JWT of
    OTHER_USER) or ``none`` (no credentials)."""

    def _caller(role: str) -> APIClient:
        if role == "none":
            return APIClient()
        if role in ("user", "other_user"):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_jwt(USER if role == 'user' else OTHER_USER)}")
            return client
        return client_as(role)

    return _caller


@pytest.fixture
def service(caller) -> APIClient:
    return caller("service")


@pytest.fixture
def prenote_kicks():
    """The prenote job kicks the code under test sent to the broker (queue ``prenotes``).

    Call it to read what was sent since the test began (cumulative; the messages are acknowledged so that no other
    test sees them). The coalescing flag is cleared before and after, so each test starts with no kick pending.
    """
    from django.core.cache import cache

    from payments.prenote_jobs import KICK_KEY
    from tests.broker import drain

    drain("prenotes")
    cache.delete(KICK_KEY)
    seen: list[str] = []

    def read() -> list[str]:
        seen.extend(headers["task"] for headers, _payload in drain("prenotes"))
        return list(seen)

    yield read
    drain("prenotes")
    cache.delete(KICK_KEY)
