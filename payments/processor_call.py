"""Step 2 of the submission (SPEC §5): the processor call, outside any transaction, never retried.

Called through ``payments.services.payment_call_processor``; see that module for the whole flow.
"""

from __future__ import annotations

import logging
import re
from datetime import date

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import NotFoundError
from core.transactions import in_transaction
from integrations.errors import (
    ProcessorAuthError,
    ProcessorConfigurationError,
    ProcessorDeclined,
    ProcessorError,
    ProcessorUnavailable,
)
from payments.models import Method, Payment, PaymentType, Provider, Status
from payments.submission_data import (
    Claim,
    ProcessorOutcome,
    SubmissionRequest,
    card_token,
    needs_bank_account,
    needs_card,
)

logger = logging.getLogger(__name__)

#: SPEC §12: Usio soft declines (insufficient funds, not permitted, ...) leave the card valid.
SOFT_DECLINE_CODES = frozenset({"51", "57", "82"})
#: Usio refusals about our request or our merchant account, not the card (processors.md "Failure codes"):
#: request validation (10xx) and an insufficient prefunding balance (5040). They never invalidate a card.
_MERCHANT_SIDE_CODE = re.compile(r"^(10\d\d|5040)$")


# --- step 2 --------------------------------------------------------------------------------------------------------
def ach_execution_date() -> date:
    """JPM ``requestedExecutionDate``: today in Chicago, or the next ACH business day when today is not one."""
    from core.business_days import chicago_date, is_business_day, next_business_day

    today = chicago_date(timezone.now())
    return today if is_business_day(today) else next_business_day(today)


def _never_sent(exc: ProcessorError) -> bool:
    """The request certainly never reached the processor's payment endpoint: no connection was made, the token
    fetch failed (JPM never got the payment), credentials or TLS were refused, or the client is not configured."""
    if isinstance(exc, ProcessorAuthError | ProcessorConfigurationError):
        return True
    if exc.processor == "jpm" and exc.operation == "token":
        return True
    if isinstance(exc, ProcessorUnavailable):
        return exc.exchange is None or exc.exchange.status is None
    return False


def _not_submitted(reason: str, *, error: str | None = None) -> ProcessorOutcome:
    return ProcessorOutcome("not_submitted", message=reason, error=error)


def _declined(exc: ProcessorDeclined, *, ach: bool, card_token: str | None) -> ProcessorOutcome:
    code = str(exc.code)[:16]
    invalidate = None
    if card_token and code not in SOFT_DECLINE_CODES and not _MERCHANT_SIDE_CODE.match(code):
        invalidate = card_token
    return ProcessorOutcome("rejected" if ach else "declined", code=code, message=exc.message or str(exc),
                            raw_payload_ref=f"{exc.processor}.{exc.operation}", invalidate_card_token=invalidate)


def outcome_from_error(exc: ProcessorError, *, ach: bool, card_token: str | None = None) -> ProcessorOutcome:
    if isinstance(exc, ProcessorDeclined):
        return _declined(exc, ach=ach, card_token=card_token)
    if _never_sent(exc):
        reason = {ProcessorAuthError: "processor_auth_error",
                  ProcessorConfigurationError: "processor_not_configured"}.get(type(exc), "processor_unavailable")
        return _not_submitted(reason, error=str(exc))
    # ProcessorTimeout, ProcessorProtocolError, an HTTP 5xx: the processor may have processed it.
    return ProcessorOutcome("unknown", message=type(exc).__name__, error=str(exc))


def _switch_to_ach(payment: Payment, masked_account_number: str | None) -> None:
    """RTP fallback: record that the payment becomes an ACH credit BEFORE the ACH request is sent, so that if its
    outcome is unknown the reconciler looks for an ACH entry. A short transaction between two HTTP calls."""
    with transaction.atomic():
        Payment.objects.filter(pk=payment.pk, payment_status=Status.PROCESSING, payment_method=Method.RTP).update(
            payment_method=Method.ACH, masked_account_number=masked_account_number, updated_at=timezone.now())
    payment.payment_method = Method.ACH
    payment.masked_account_number = masked_account_number
    logger.info("rtp payment falls back to ach", extra={"payment_id": str(payment.pk)})


def _usio_ach(client, *, account, request: SubmissionRequest, payment: Payment):
    checking = account.account_type != "savings"
    if payment.payment_type == PaymentType.DEBIT:
        trans_code = "27" if checking else "37"
    else:
        trans_code = "22" if checking else "32"
    return client.submit_ach_payment(
        routing_number=account.routing_number, account_number=account.account_number, trans_code=trans_code,
        amount=payment.amount, reference=payment.reference, first_name=request.first_name,
        last_name=request.last_name)


def payment_call_processor(*, claim: Claim) -> ProcessorOutcome:
    """Step 2: send the payment to its processor once, outside any transaction (``RuntimeError`` inside one).

    Re-reads the card and bank account (numbers decrypted in memory only): gone or invalidated since step 1 →
    ``not_submitted``. Test environments only (``ENVIRONMENT != "prod"``): a card with ``force_failure`` is
    ``declined`` without a processor call. Operations (processors.md), our reference ``payment.reference``:
    JPM ``submit_ach_payment`` (endToEndId); Usio ``SubmitACHPayment`` (trans code 27/37 debit, 22/32 credit from
    the account type), ``SubmitTokenPayment`` (pinless debit, debit token), ``PinlessCredit`` (credit token), RTP
    ``RTPAccountCheck`` then ``RTPCredit`` — not eligible: ``rtp_mode=only`` → ``not_submitted``
    (``rtp_not_eligible``), ``fallback`` → the payment becomes ACH (``_switch_to_ach``) and is sent as a Usio ACH
    credit from the same merchant account. Errors map by ``outcome_from_error``. Never retried.
    """
    from bank_accounts.selectors import bank_account_get
    from cards.selectors import card_find
    from integrations.jpm import jpm_client
    from integrations.usio import usio_client

    if in_transaction():
        raise RuntimeError("payment_call_processor must not run inside a transaction (SPEC §5 step 2)")
    payment, request = claim.payment, claim.request
    if payment is None or claim.response is not None:
        raise ValueError("this claim has no payment to submit")

    card = token = None
    if needs_card(request):
        card = card_find(user_id=payment.user_id)
        if card is None:
            return _not_submitted("debit_card_missing")
        token = card_token(card, request)
        if not card.is_valid or not token:
            return _not_submitted("debit_card_invalid")
        if settings.ENVIRONMENT != "prod" and card.force_failure:
            logger.info("payment failed by force_failure", extra={"payment_id": str(payment.pk)})
            return ProcessorOutcome("declined", message="force_failure", raw_payload_ref="force_failure")
    account = None
    if needs_bank_account(request):
        try:
            account = bank_account_get(user_id=payment.user_id, account_id=payment.account_id, with_numbers=True)
        except NotFoundError:
            return _not_submitted("bank_account_not_found")

    reference = payment.reference
    ach = payment.payment_method == Method.ACH
    try:
        if payment.payment_provider == Provider.JPM:
            submission = jpm_client().submit_ach_payment(
                end_to_end_id=reference, amount=payment.amount,
                direction="DEBIT" if payment.payment_type == PaymentType.DEBIT else "CREDIT",
                account_number=account.account_number, routing_number=account.routing_number,
                account_type=account.account_type, name=f"{request.first_name} {request.last_name}",
                requested_execution_date=ach_execution_date())
            return ProcessorOutcome("sent", confirmation_id=reference,
                                    raw_payload_ref=f"jpm.payments:{submission.firm_root_id}")
        client = usio_client(request.route.usio_account_name)
        if ach:
            result = _usio_ach(client, account=account, request=request, payment=payment)
            return ProcessorOutcome("sent", confirmation_id=result.confirmation,
                                    raw_payload_ref=f"usio.SubmitACHPayment:{result.confirmation}")
        if payment.payment_method == Method.PINLESS:
            if payment.payment_type == PaymentType.DEBIT:
                result = client.submit_token_payment(token=token, amount=payment.amount, reference=reference)
                operation = "SubmitTokenPayment"
            else:
                result = client.pinless_credit(token=token, amount=payment.amount, reference=reference)
                operation = "PinlessCredit"
            return ProcessorOutcome("approved", confirmation_id=result.confirmation,
                                    raw_payload_ref=f"usio.{operation}:{result.confirmation}")
    except ProcessorError as exc:
        return outcome_from_error(exc, ach=ach, card_token=token if payment.payment_method == Method.PINLESS else None)
    except ValueError as exc:  # the client refused the arguments before sending anything
        return _not_submitted("invalid_processor_request", error=str(exc))
    return _call_rtp(client, account=account, request=request, payment=payment)


def _call_rtp(client, *, account, request: SubmissionRequest, payment: Payment) -> ProcessorOutcome:
    try:
        eligibility = client.rtp_account_check(routing_number=account.routing_number,
                                               account_number=account.account_number)
    except ProcessorError as exc:  # only a lookup: no money was sent, whatever happened
        return _not_submitted("rtp_check_failed", error=str(exc))
    except ValueError as exc:
        return _not_submitted("invalid_processor_request", error=str(exc))
    try:
        if eligibility.eligible:
            result = client.rtp_credit(routing_number=account.routing_number, account_number=account.account_number,
                                       amount=payment.amount, reference=payment.reference)
            return ProcessorOutcome("approved", confirmation_id=result.confirmation,
                                    raw_payload_ref=f"usio.RTPCredit:{result.confirmation}")
        if request.rtp_mode != "fallback":
            return _not_submitted("rtp_not_eligible")
        _switch_to_ach(payment, account.last4)
        result = _usio_ach(client, account=account, request=request, payment=payment)
        return ProcessorOutcome("sent", confirmation_id=result.confirmation,
                                raw_payload_ref=f"usio.SubmitACHPayment:{result.confirmation}")
    except ProcessorError as exc:
        return outcome_from_error(exc, ach=payment.payment_method == Method.ACH)
    except ValueError as exc:
        return _not_submitted("invalid_processor_request", error=str(exc))


