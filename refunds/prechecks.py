"""Refund pre-checks (``refunds.services`` step 1): what a refund is tied to, whether it may be made, and how.

Read-only: ``refund_find_usio_transaction`` asks Usio (before step 1), ``refund_plan`` reads and locks stored state
inside step 1's transaction and says what to create, or raises the 4xx that refuses it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from core.errors import NotFoundError, ServiceUnavailableError, ValidationError
from refunds.data import FoundTransaction, RefundRequest
from refunds.models import AccountType, Refund, RefundMethod, RefundStatus, RefundTarget

logger = logging.getLogger(__name__)

#: Refunds that hold part of a balance: done, or maybe done (outcome unknown).
HOLDING_STATUSES = (RefundStatus.PROCESSING, RefundStatus.COMPLETED)
DEFAULT_REFUND_USIO_ACCOUNT = "float_credit"
#: The merchant accounts card debits are taken through (SPEC §5 routing): where a Usio transaction is looked for.
DEFAULT_LOOKUP_USIO_ACCOUNTS = ("subscription", "float_debit", "loan")


# --- settings -------------------------------------------------------------------------------------------------------
def refund_usio_account() -> str:
    """``REFUND_USIO_ACCOUNT`` (default ``float_credit``, the prefunded payout account): the merchant account that
    pays the credits a refund originates (PinlessCredit, ACH credits)."""
    return str(getattr(settings, "REFUND_USIO_ACCOUNT", DEFAULT_REFUND_USIO_ACCOUNT))


def lookup_usio_accounts() -> tuple[str, ...]:
    """``REFUND_LOOKUP_USIO_ACCOUNTS``: the accounts asked, in order, for a Usio transaction with no payment."""
    return tuple(getattr(settings, "REFUND_LOOKUP_USIO_ACCOUNTS", DEFAULT_LOOKUP_USIO_ACCOUNTS))


def merchant_id_of(account_name: str) -> str | None:
    """The merchant id configured for a ``USIO_ACCOUNTS`` name, or None."""
    account = (getattr(settings, "USIO_ACCOUNTS", {}) or {}).get(account_name) or {}
    return str(account.get("merchant_id") or "") or None


def account_name_of(merchant_id: str | None) -> str | None:
    """The first ``USIO_ACCOUNTS`` name whose merchant id is ``merchant_id``, or None (a payment whose account is
    no longer configured cannot be refunded with SubmitCCVoid: Usio refunds a card debit only on its own account)."""
    if not merchant_id:
        return None
    accounts = getattr(settings, "USIO_ACCOUNTS", {}) or {}
    return next((name for name in accounts if merchant_id_of(name) == str(merchant_id)), None)


# --- the Usio transaction of a refund with no payment record (before step 1; read-only) ---------------------------
def refund_find_usio_transaction(*, confirmation_id: str) -> FoundTransaction:
    """Look ``confirmation_id`` up at Usio (``GetTransactionDetails``) on each configured account of
    ``REFUND_LOOKUP_USIO_ACCOUNTS`` in order (``subscription``, ``float_debit``, ``loan``: the accounts card debits
    are taken through); the first that knows it wins.

    Refusals: one of our payments has this confirmation (422 ``confirmation_has_payment``: refund it by
    ``payment_id``, nothing is asked); no account knows it (422 ``usio_transaction_not_found``); an account could
    not be asked (503 ``usio_unavailable``: "not found" cannot be concluded). Read-only: no refund is sent.
    """
    from integrations.errors import ProcessorConfigurationError, ProcessorError
    from integrations.usio import usio_client
    from payments.selectors import payment_get

    try:
        payment = payment_get(identifier=confirmation_id)
    except NotFoundError:
        payment = None
    if payment is not None:
        raise ValidationError("This confirmation belongs to one of our payments: refund it with payment_id.",
                              code="confirmation_has_payment",
                              details={"field": "confirmation_id", "payment_id": str(payment.pk)})
    asked = []
    for name in lookup_usio_accounts():
        merchant_id = merchant_id_of(name)
        if not merchant_id:
            continue
        try:
            answer = usio_client(name).get_transaction_details(confirmation=confirmation_id)
        except ProcessorConfigurationError:
            continue
        except ProcessorError as exc:
            logger.warning("usio transaction lookup failed", extra={"usio_account": name, "error": type(exc).__name__})
            raise ServiceUnavailableError("Usio could not be asked about this transaction. Retry later.",
                                          code="usio_unavailable", details={"usio_account": name}) from None
        asked.append(name)
        for found in answer.transactions:
            if found.confirmation == confirmation_id:
                return FoundTransaction(
                    usio_account=name, merchant_account=merchant_id, confirmation=found.confirmation,
                    transaction_type=found.transaction_type, status=found.status, amount=found.amount,
                    refunded_amount=found.refunded_amount, is_refund=bool(found.original_confirmation))
    raise ValidationError("Usio has no transaction with this confirmation id.", code="usio_transaction_not_found",
                          details={"field": "confirmation_id", "usio_accounts": asked})


# --- pre-checks (stored state; inside step 1's transaction) -------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What step 1 creates: how the money moves, from which account, to what."""

    method: str
    account_type: str
    usio_account: str
    merchant_account: str
    payment: Any = None
    confirmation_id: str | None = None
    account_id: str | None = None
    masked_account_number: str | None = None
    masked_card_number: str | None = None


def _not_supported(message: str, reason: str, **details) -> ValidationError:
    return ValidationError(message, code="refund_not_supported", details={"reason": reason, **details})


def _exceeds(amount: Decimal, refundable: Decimal, **details) -> ValidationError:
    refundable = max(refundable, Decimal("0.00"))
    return ValidationError(f"The amount is more than the {refundable} that can still be refunded.",
                           code="refund_exceeds_balance",
                           details={"field": "amount", "amount": str(amount), "refundable": str(refundable),
                                    **{k: str(v) for k, v in details.items()}})


def _held(queryset) -> tuple[Decimal, Decimal]:
    """(COMPLETED total, PROCESSING total) of a refund queryset."""
    rows = dict(queryset.filter(status__in=HOLDING_STATUSES).order_by().values_list("status")
                .annotate(total=Sum("amount")))
    cent = Decimal("0.01")  # SQLite sums lose the scale (Decimal("30")): keep two places for the answers
    return (Decimal(rows.get(RefundStatus.COMPLETED) or 0).quantize(cent),
            Decimal(rows.get(RefundStatus.PROCESSING) or 0).quantize(cent))


def _payout_account() -> tuple[str, str]:
    name = refund_usio_account()
    merchant_id = merchant_id_of(name)
    if not merchant_id:
        raise _not_supported("The Usio account refunds are paid from is not configured.",
                             "usio_account_not_configured", usio_account=name)
    return name, merchant_id


def _bank_account(user_id: str, account_id: str):
    from bank_accounts.selectors import bank_account_get

    try:
        return bank_account_get(user_id=user_id, account_id=account_id)
    except NotFoundError:
        raise ValidationError("The user has no bank account with this account_id.", code="bank_account_not_found",
                              details={"field": "account_id"}) from None


def _plan_payment(request: RefundRequest) -> Plan:
    """A refund of one of our payments: lock it, check it is a refundable Usio debit of this user, check the
    balance under the lock. Codes (422): ``payment_not_found``, ``payment_user_mismatch``,
    ``refund_not_supported`` (JPM, a credit, a prenote, an unknown merchant account), ``payment_not_refundable``
    (not COMPLETED), ``bank_account_not_found`` (ACH: the payment's bank account is gone),
    ``refund_exceeds_balance``."""
    from payments.models import Method, Payment, PaymentType, Provider, Purpose, Status
    from payments.selectors import payment_get

    try:
        found = payment_get(identifier=request.payment_identifier)
    except NotFoundError:
        raise ValidationError("No payment has this payment_id or confirmation id.", code="payment_not_found",
                              details={"field": "payment_id"}) from None
    # The lock serialises every refund of this payment (and its status changes) until step 1 commits.
    payment = Payment.objects.select_for_update().get(pk=found.pk)
    if payment.user_id != request.user_id:
        raise ValidationError("The payment belongs to another user.", code="payment_user_mismatch",
                              details={"field": "payment_id"})
    if payment.payment_provider != Provider.USIO:
        raise _not_supported("Only Usio payments can be refunded.", "jpm_payment",
                             payment_provider=payment.payment_provider)
    if payment.purpose == Purpose.PRENOTE or payment.payment_type != PaymentType.DEBIT:
        raise _not_supported("Only debits (money taken from the user) can be refunded.", "not_a_debit",
                             payment_type=payment.payment_type, purpose=payment.purpose)
    if payment.payment_status != Status.COMPLETED or not payment.confirmation_id:
        raise ValidationError("Only a COMPLETED payment can be refunded.", code="payment_not_refundable",
                              details={"payment_status": payment.payment_status})
    completed, processing = _held(Refund.objects.filter(payment=payment))
    refundable = payment.amount - completed - processing
    if request.amount > refundable:
        raise _exceeds(request.amount, refundable, payment_amount=payment.amount, refunded=completed,
                       processing=processing)

    if payment.payment_method == Method.PINLESS:
        name = account_name_of(payment.merchant_account)
        if name is None:
            raise _not_supported("The payment's Usio merchant account is not configured.",
                                 "merchant_account_not_configured", merchant_account=payment.merchant_account or "")
        return Plan(method=RefundMethod.CARD_REFUND, account_type=AccountType.DEBIT, usio_account=name,
                     merchant_account=payment.merchant_account, payment=payment,
                     confirmation_id=payment.confirmation_id, masked_card_number=payment.masked_card_number)
    if payment.payment_method == Method.ACH:
        account = _bank_account(payment.user_id, payment.account_id or "")
        name, merchant_id = _payout_account()
        return Plan(method=RefundMethod.ACH_CREDIT, account_type=AccountType.ACH, usio_account=name,
                     merchant_account=merchant_id, payment=payment, account_id=payment.account_id,
                     masked_account_number=account.last4)
    raise _not_supported("This payment method cannot be refunded.", "payment_method",  # pragma: no cover
                         payment_method=payment.payment_method)


def _advisory_lock(key: str) -> None:
    """Serialise the refunds of one Usio transaction until the transaction ends (PostgreSQL advisory lock; SQLite
    runs write transactions one at a time — IMMEDIATE — so it needs none)."""
    if connection.vendor != "postgresql":
        return
    number = int.from_bytes(hashlib.sha256(f"refund:{key}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number])


def _plan_usio_transaction(request: RefundRequest, found: FoundTransaction | None) -> Plan:
    """A refund of a Usio transaction with no payment record, as Usio reported it before step 1. Codes (422):
    ``refund_not_supported`` (a credit or a refund), ``usio_transaction_not_refundable`` (not settled: returned,
    charged back, failed, pending), ``refund_exceeds_balance`` (amount - max(Usio's ``RefundedAmount``, our
    COMPLETED refunds) - our PROCESSING refunds, under the transaction's advisory lock)."""
    if found is None or found.confirmation != request.confirmation_id:
        raise ValueError("a usio_transaction refund needs the transaction found by refund_find_usio_transaction")
    if found.transaction_type != "debit" or found.is_refund:
        raise _not_supported("Only a debit (money taken from the user) can be refunded.", "not_a_debit",
                             transaction_type=found.transaction_type)
    if found.status != "settled":
        raise ValidationError("Only a settled Usio transaction can be refunded.",
                              code="usio_transaction_not_refundable", details={"status": found.status})
    _advisory_lock(found.confirmation)
    completed, processing = _held(Refund.objects.filter(confirmation_id=found.confirmation))
    # Usio's RefundedAmount already includes our completed refunds (and refunds made elsewhere); a refund still
    # PROCESSING may or may not be in it: counted on top, so a doubt refuses rather than over-refunds.
    refunded = max(found.refunded_amount, completed)
    refundable = found.amount - refunded - processing
    if request.amount > refundable:
        raise _exceeds(request.amount, refundable, transaction_amount=found.amount, refunded=refunded,
                       processing=processing)
    return Plan(method=RefundMethod.CARD_REFUND, account_type=AccountType.DEBIT, usio_account=found.usio_account,
                 merchant_account=found.merchant_account, confirmation_id=found.confirmation)


def _plan_arbitrary(request: RefundRequest) -> Plan:
    """A credit of any amount to the user's card (``debit``: the card's credit token; 422 ``debit_card_missing``,
    ``debit_card_invalid``) or bank account (``ach``: 422 ``bank_account_not_found``)."""
    from cards.selectors import card_find

    name, merchant_id = _payout_account()
    if request.account_type == AccountType.DEBIT:
        card = card_find(user_id=request.user_id)
        if card is None:
            raise ValidationError("The user has no debit card.", code="debit_card_missing")
        if not card.is_valid or not card.transaction_reference_id:
            raise ValidationError("The user's debit card cannot receive credits; add the card again.",
                                  code="debit_card_invalid")
        return Plan(method=RefundMethod.CARD_CREDIT, account_type=AccountType.DEBIT, usio_account=name,
                     merchant_account=merchant_id, masked_card_number=card.masked_card_number)
    account = _bank_account(request.user_id, request.account_id or "")
    return Plan(method=RefundMethod.ACH_CREDIT, account_type=AccountType.ACH, usio_account=name,
                 merchant_account=merchant_id, account_id=request.account_id, masked_account_number=account.last4)


def refund_plan(*, request: RefundRequest, found: FoundTransaction | None = None) -> Plan:
    """What step 1 creates for ``request`` (inside its transaction: may lock the payment or the Usio
    transaction), or the ``ServiceError`` that refuses it. Read-only."""
    if request.target == RefundTarget.PAYMENT:
        return _plan_payment(request)
    if request.target == RefundTarget.USIO_TRANSACTION:
        return _plan_usio_transaction(request, found)
    return _plan_arbitrary(request)
