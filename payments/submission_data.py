"""The data passed between the submission steps (``payments.services``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from core.models import IdempotencyKey
from payments.models import Method, Payment, PaymentType, Status
from payments.routing import Route

DEFAULT_FIRST_NAME = "FloatMe"
DEFAULT_LAST_NAME = "Customer"


# --- data ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmissionRequest:
    """A validated ``POST /payments`` body with its route (``payment_validate``)."""

    user_id: str
    purpose: str
    payment_type: str
    payment_method: str
    amount: Decimal
    route: Route
    account_id: str | None = None
    loan_id: str | None = None
    subscription_id: str | None = None
    cbc_card_id: str | None = None
    rtp_mode: str | None = None
    first_name: str = DEFAULT_FIRST_NAME
    last_name: str = DEFAULT_LAST_NAME
    client_id: str = ""
    actor: str = "system"


@dataclass(frozen=True)
class SubmissionResult:
    """The HTTP answer: status code and JSON body. ``replayed`` when it was not produced by this request."""

    status_code: int
    body: Any
    replayed: bool = False
    payment_id: str | None = None


@dataclass
class Claim:
    """Step 1's result. ``response`` set: the request is answered already (replay, recovery, refused pre-check) and
    steps 2 and 3 must not run. Else ``payment`` is the new PROCESSING payment and ``record`` its idempotency key."""

    request: SubmissionRequest
    record: IdempotencyKey | None = None
    payment: Payment | None = None
    response: SubmissionResult | None = None


Kind = Literal["sent", "approved", "declined", "rejected", "not_submitted", "unknown"]


@dataclass(frozen=True)
class ProcessorOutcome:
    """Step 2's result.

    ``kind``: ``sent`` (ACH accepted → ACHSENT), ``approved`` (card/RTP → COMPLETED), ``declined`` (card/RTP
    refused), ``rejected`` (ACH refused at once), ``not_submitted`` (certainly never processed) — the last three →
    FAILED — or ``unknown`` (the processor may have processed it: stays PROCESSING for the reconciler).
    """

    kind: Kind
    confirmation_id: str | None = None
    code: str | None = None
    message: str | None = None
    raw_payload_ref: str = ""
    invalidate_card_token: str | None = None  # a hard decline: the token that was refused
    error: str | None = field(default=None, compare=False)


# The status and failure kind each outcome moves the payment to (step 3).
_STATUS_FOR = {
    "sent": (Status.ACHSENT, None),
    "approved": (Status.COMPLETED, None),
    "declined": (Status.FAILED, "declined"),
    "rejected": (Status.FAILED, "rejected"),
    "not_submitted": (Status.FAILED, "not_submitted"),
}


def needs_bank_account(request: SubmissionRequest) -> bool:
    return request.payment_method in (Method.ACH, Method.RTP)


def needs_card(request: SubmissionRequest) -> bool:
    return request.payment_method in (Method.PINLESS, Method.RTP)


def card_token(card, request: SubmissionRequest) -> str:
    """The card token a payment uses: the debit token for a pinless debit, else the credit token (pinless credit,
    and RTP: SPEC §5 wants a valid card with a credit token for RTP although RTPCredit itself uses the account)."""
    if request.payment_method == Method.PINLESS and request.payment_type == PaymentType.DEBIT:
        return card.debit_transaction_reference_id or ""
    return card.transaction_reference_id or ""
