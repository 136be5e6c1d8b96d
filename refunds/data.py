"""The data passed between the refund submission steps (``refunds.services``) and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from core.models import IdempotencyKey
from refunds.models import Refund


@dataclass(frozen=True)
class SupportIdentity:
    """Who asks for the refund (SPEC §8: from the authenticated caller and the request, never from the body).

    API keys: ``name`` = the key's name, ``email`` = "" (keys have none), ``ip`` = the request's ``REMOTE_ADDR``.
    A staff admin action passes the staff user's name and email.
    """

    name: str
    email: str = ""
    ip: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    """A validated ``POST /refunds`` body with its caller (``refund_validate``)."""

    user_id: str
    amount: Decimal
    description: str
    target: str  # RefundTarget
    support: SupportIdentity
    payment_identifier: str | None = None  # our payment id or its confirmation id
    confirmation_id: str | None = None  # a Usio transaction with no payment record
    account_type: str | None = None  # arbitrary refunds: debit | ach
    account_id: str | None = None  # arbitrary ACH refunds: the bank account
    loan_id: str | None = None
    subscription_id: str | None = None
    client_id: str = ""
    actor: str = "system"
    audit_reason: str | None = None  # why (the back office's reason); the audit entry falls back to the description


@dataclass(frozen=True)
class FoundTransaction:
    """The Usio transaction a ``usio_transaction`` refund refunds, as Usio reported it before step 1."""

    usio_account: str
    merchant_account: str
    confirmation: str
    transaction_type: str
    status: str
    amount: Decimal
    refunded_amount: Decimal
    is_refund: bool


@dataclass(frozen=True)
class RefundResult:
    """The HTTP answer: status code and JSON body. ``replayed`` when this request did not produce it."""

    status_code: int
    body: Any
    replayed: bool = False
    refund_id: str | None = None


@dataclass
class RefundClaim:
    """Step 1's result. ``response`` set: the request is answered already (replay, recovery, refused pre-check)
    and steps 2 and 3 must not run. Else ``refund`` is the new PROCESSING refund and ``record`` its key."""

    request: RefundRequest
    record: IdempotencyKey | None = None
    refund: Refund | None = None
    response: RefundResult | None = None


OutcomeKind = Literal["approved", "declined", "not_submitted", "unknown"]


@dataclass(frozen=True)
class RefundOutcome:
    """Step 2's result (or the reconciler's finding).

    ``approved`` → COMPLETED with ``confirmation_id`` (the refund's Usio transaction); ``declined`` (Usio said no:
    ``code``/``message``) and ``not_submitted`` (certainly never processed) → FAILED; ``unknown`` (Usio may have
    processed it) → stays PROCESSING for the reconciler.
    """

    kind: OutcomeKind
    confirmation_id: str | None = None
    code: str | None = None
    message: str | None = None
    raw_payload_ref: str = ""
    error: str | None = field(default=None, compare=False)
