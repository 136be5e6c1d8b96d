"""Shared fixtures of the refund tests: payments to refund (made through the payments API against the sandbox),
Usio transactions with no payment record, the refund request, the Usio calls the sandbox saw, and a snapshot of
everything a refused request must not change."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.models import AuditEntry, IdempotencyKey, OutboxEvent
from payments.models import Payment, PaymentStatusChange
from refunds.models import Refund
from tests.payments import conftest as payments_fixtures
from tests.payments.conftest import ACCOUNT, ACCOUNT_ID, ROUTING, USER, card_body, payment_body, post_payment

# The payments tests' fixtures, shared here: a user's bank account and debit card, callers per role.
bank_account = payments_fixtures.bank_account
debit_card = payments_fixtures.debit_card
caller = payments_fixtures.caller
service = payments_fixtures.service
__all__ = ["ACCOUNT", "ACCOUNT_ID", "ROUTING", "USER"]  # re-exported for the refund tests

OTHER_USER = "user-2"
REFUNDS_URL = "/api/v1/refunds"
REFUND_OPERATIONS = ("usio.SubmitCCVoid", "usio.PinlessCredit", "usio.SubmitACHPayment")


def new_key() -> str:
    return f"refund-{uuid.uuid4()}"


def merchant_id(name: str) -> str:
    return settings.USIO_ACCOUNTS[name]["merchant_id"]


def post_refund(client: APIClient, body: dict, key: str | None = "auto", **headers):
    """POST /api/v1/refunds with ``Idempotency-Key`` (a fresh one by default; ``None`` sends none)."""
    if key == "auto":
        key = new_key()
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(REFUNDS_URL, body, format="json", **headers)


def refund_body(**overrides) -> dict:
    """A refund of 10.00 to USER; give the target (``payment_id=``, ``confirmation_id=``, ``account_type=``).
    ``None`` values remove a field."""
    body = {"user_id": USER, "amount": "10.00", "description": "customer complaint #42"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def usio_calls(sandbox, operation: str | None = None) -> list[dict]:
    """Every Usio request the sandbox received (``usio.SubmitCCVoid`` ...), in order."""
    calls = [r for r in sandbox.requests(service="usio")]
    return [r for r in calls if operation is None or r["operation"] == operation]


def refund_calls(sandbox) -> list[dict]:
    """The Usio requests that move refund money (SubmitCCVoid, PinlessCredit, SubmitACHPayment)."""
    return [r for r in usio_calls(sandbox) if r["operation"] in REFUND_OPERATIONS]


def usio_transaction(sandbox, confirmation: str) -> dict:
    """The sandbox ledger entry of a Usio transaction (``refunded``, ``amount``, ...)."""
    return next(tx for tx in sandbox.control("GET", "usio/ledger")["transactions"]
                if tx["confirmation"] == confirmation)


def snapshot() -> dict:
    """What a refused refund must leave unchanged."""
    return {
        "refunds": list(Refund.objects.order_by("pk").values()),
        "payments": list(Payment.objects.order_by("pk").values()),
        "changes": PaymentStatusChange.objects.count(),
        "events": OutboxEvent.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def held(payment) -> Decimal:
    from refunds.selectors import refund_totals_for_payment

    totals = refund_totals_for_payment(payment_id=payment.pk)
    return totals["COMPLETED"] + totals["PROCESSING"]


def key_record(key: str) -> IdempotencyKey:
    return IdempotencyKey.objects.get(key=key)


@pytest.fixture
def support(caller) -> APIClient:
    return caller("support")


@pytest.fixture
def card_payment(sandbox, service, debit_card):
    """``card_payment(amount="50.00", purpose="float", user_id=USER)``: a COMPLETED Usio pinless debit made through
    the payments API (the sandbox ledger holds its card transaction)."""
    cards = set()

    def _make(amount: str = "50.00", *, purpose: str = "float", user_id: str = USER) -> Payment:
        if user_id not in cards:
            debit_card(user_id=user_id)
            cards.add(user_id)
        response = post_payment(service, card_body(amount=amount, purpose=purpose, user_id=user_id))
        assert response.status_code == 201, response.content
        payment = Payment.objects.get(pk=response.json()["id"])
        assert payment.payment_status == "COMPLETED"
        return payment

    return _make


@pytest.fixture
def ach_payment(sandbox, service, bank_account):
    """``ach_payment(amount="80.00", account_type=None, purpose="float")``: a Usio ACH debit made through the
    payments API, then COMPLETED (check-ach's three-business-day gate, applied through the status machine)."""
    from payments.status import payment_apply_status

    made = []

    def _make(amount: str = "80.00", *, account_type: str | None = None, purpose: str = "float",
              complete: bool = True) -> Payment:
        if not made:
            made.append(bank_account(account_type=account_type))
        response = post_payment(service, payment_body(amount=amount, purpose=purpose))
        assert response.status_code == 201, response.content
        assert response.json()["payment_status"] == "ACHSENT"
        payment = Payment.objects.get(pk=response.json()["id"])
        if complete:
            payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach", actor="check_ach")
            payment.refresh_from_db()
        return payment

    return _make


@pytest.fixture
def external_card_transaction(sandbox):
    """``external_card_transaction(amount="40.00", account="float_debit", card=<token>)``: a settled Usio card debit
    with no payment record (made with the Usio client directly, as another system would); its confirmation."""
    from integrations.usio import usio_client

    def _make(amount: str = "40.00", *, account: str = "float_debit", card: str = "tok_external_0001") -> str:
        result = usio_client(account).submit_token_payment(token=card, amount=Decimal(amount),
                                                           reference=f"external-{uuid.uuid4().hex[:12]}")
        return result.confirmation

    return _make
