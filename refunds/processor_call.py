"""Step 2 of a refund (``refunds.services``): the Usio call, outside any transaction, never retried."""

from __future__ import annotations

import logging

from core.errors import NotFoundError
from core.transactions import in_transaction
from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorError,
    ProcessorUnavailable,
)
from refunds.data import RefundClaim, RefundOutcome
from refunds.models import Refund, RefundMethod

logger = logging.getLogger(__name__)

#: Names sent with an ACH credit (Usio requires them; the bank account stores none): as payments do by default.
ACH_FIRST_NAME = "FloatMe"
ACH_LAST_NAME = "Customer"


def _not_submitted(reason: str, *, error: str | None = None) -> RefundOutcome:
    return RefundOutcome("not_submitted", code="not_submitted", message=reason, error=error)


def _never_sent(exc: ProcessorError) -> bool:
    """The request certainly never reached Usio: no connection made, credentials refused, client not configured."""
    if isinstance(exc, ProcessorAuthError | ProcessorConfigurationError):
        return True
    if isinstance(exc, ProcessorUnavailable):
        return exc.exchange is None or exc.exchange.status is None
    return False


def outcome_from_error(exc: ProcessorError) -> RefundOutcome:
    """A Usio refusal → ``declined`` with its code; never sent → ``not_submitted``; anything else (timeout, an
    unreadable answer, HTTP 5xx) → ``unknown``: Usio may have processed it."""
    if isinstance(exc, ProcessorDeclined):
        return RefundOutcome("declined", code=str(exc.code)[:16], message=exc.message or str(exc),
                             raw_payload_ref=f"{exc.processor}.{exc.operation}")
    if _never_sent(exc):
        reason = {ProcessorAuthError: "processor_auth_error",
                  ProcessorConfigurationError: "processor_not_configured"}.get(type(exc), "processor_unavailable")
        return _not_submitted(reason, error=str(exc))
    return RefundOutcome("unknown", message=type(exc).__name__, error=str(exc))


def _ach_credit(client, refund: Refund):
    from bank_accounts.selectors import bank_account_get

    try:
        account = bank_account_get(user_id=refund.user_id, account_id=refund.account_id, with_numbers=True)
    except NotFoundError:
        return None
    trans_code = "32" if account.account_type == "savings" else "22"  # NACHA credit: checking 22, savings 32
    return client.submit_ach_payment(
        routing_number=account.routing_number, account_number=account.account_number, trans_code=trans_code,
        amount=refund.amount, reference=refund.reference, first_name=ACH_FIRST_NAME, last_name=ACH_LAST_NAME)


def refund_call_processor(*, claim: RefundClaim) -> RefundOutcome:
    """Step 2: send the refund to Usio once, outside any transaction (``RuntimeError`` inside one).

    By ``refund.method`` on the refund's merchant account (``usio_client(refund.usio_account)``):
    ``card_refund`` → ``SubmitCCVoid`` (``void_or_refund(confirmation_id=, amount=)``; no client reference);
    ``card_credit`` → ``PinlessCredit`` to the card's credit token, re-read now (card gone or invalid →
    ``not_submitted``); ``ach_credit`` → ``SubmitACHPayment`` trans code 22 (checking) / 32 (savings) to the bank
    account, numbers decrypted in memory only (account gone → ``not_submitted``). Our reference
    (``refund.reference``) goes in ``AdditionalSearch``/``AccountCode1`` of the credits. Errors map by
    ``outcome_from_error``. Never retried.
    """
    from cards.selectors import card_find
    from integrations.usio import usio_client

    if in_transaction():
        raise RuntimeError("refund_call_processor must not run inside a transaction (three-step submission)")
    refund = claim.refund
    if refund is None or claim.response is not None:
        raise ValueError("this claim has no refund to submit")
    try:
        client = usio_client(refund.usio_account)
        if refund.method == RefundMethod.CARD_REFUND:
            operation = "SubmitCCVoid"
            result = client.void_or_refund(confirmation_id=refund.confirmation_id, amount=refund.amount)
        elif refund.method == RefundMethod.CARD_CREDIT:
            operation = "PinlessCredit"
            card = card_find(user_id=refund.user_id)
            if card is None or not card.is_valid or not card.transaction_reference_id:
                return _not_submitted("debit_card_invalid" if card else "debit_card_missing")
            result = client.pinless_credit(token=card.transaction_reference_id, amount=refund.amount,
                                           reference=refund.reference)
        else:
            operation = "SubmitACHPayment"
            result = _ach_credit(client, refund)
            if result is None:
                return _not_submitted("bank_account_not_found")
    except ProcessorError as exc:
        return outcome_from_error(exc)
    except ValueError as exc:  # the client refused the arguments before sending anything
        return _not_submitted("invalid_processor_request", error=str(exc))
    return RefundOutcome("approved", confirmation_id=result.confirmation,
                         raw_payload_ref=f"usio.{operation}:{result.confirmation}")
