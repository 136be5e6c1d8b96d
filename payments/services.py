"""Submitting a payment (SPEC §5): validation, routing, pre-checks and the three-step submission.

``payment_submit`` = ``payment_validate`` → ``payment_claim`` (step 1) → ``payment_call_processor`` (step 2) →
``payment_apply_outcome`` (step 3). The steps are public so that a crash between them can be simulated.

1. **Claim** — one transaction: the ``Idempotency-Key`` is claimed, the state pre-checks run (blocklist, bank
   account, debit card), and the payment is created PROCESSING with its first history row (``None → PROCESSING``,
   source ``api``, no event) and linked to the key. A refused pre-check creates no payment and stores its 4xx as
   the key's response (a retry with the same key and body gets the same answer; a corrected request needs a new
   key — Stripe's rule: results are saved once the request started executing).
2. **Processor call** — outside any transaction (never a lock across HTTP), never retried, our reference
   (``payment.reference``) as the processor's client reference.
3. **Outcome** — one transaction: ``payment_apply_status`` (ACH → ACHSENT; card/RTP approved → COMPLETED; declined,
   rejected or certainly not submitted → FAILED), a hard card decline invalidates the card, and the response
   (201 + the payment) is stored on the key.

An unknown outcome (read timeout, dropped connection, malformed answer, HTTP 5xx) leaves the payment PROCESSING and
the key in progress; the answer is 202 with the PROCESSING payment. The stuck-payment reconciler (SPEC §7.7) asks the
processor by our reference and resolves it; a retry of the request after the key's lease gets the payment's current
state (``Stale`` recovery: 201 and stored once the payment left PROCESSING, 202 until then). Only when the request
certainly never reached the processor (connection never made, a refused token fetch, refused credentials, a client
not configured) is the payment FAILED at once (``return_info`` says why): a FAILED status is final, so it is never
written for a request the processor may have processed.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.auth.permissions import ensure_user_access
from core.auth.principal import Principal
from core.errors import NotFoundError, ServiceError, ValidationError
from core.idempotency import (
    Replay,
    Stale,
    idempotency_attach,
    idempotency_begin,
    idempotency_complete,
    idempotency_replay,
)
from core.models import IdempotencyKey
from core.sql import insert_row
from core.validators import validate_user_id
from payments.models import Method, Payment, PaymentStatusChange, Provider, Source, Status
from payments.processor_call import payment_call_processor
from payments.routing import route, usio_merchant_id
from payments.serializers import payment_render
from payments.status import payment_apply_status
from payments.submission_data import (
    _STATUS_FOR,
    Claim,
    ProcessorOutcome,
    SubmissionRequest,
    SubmissionResult,
    card_token,
    needs_bank_account,
    needs_card,
)

logger = logging.getLogger(__name__)

RTP_MODES = ("fallback", "only")
DEFAULT_RTP_MODE = "only"
#: Names sent with an ACH entry when the request has none (Usio requires first and last name, JPM a name).
DEFAULT_FIRST_NAME = "FloatMe"
DEFAULT_LAST_NAME = "Customer"
NAME_MAX_LENGTH = 50
_AMOUNT_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_CENT = Decimal("0.01")

HTTP_CREATED = 201
HTTP_ACCEPTED = 202


# --- validation (body only: nothing read, nothing written) -----------------------------------------------------------
def _invalid_amount(reason: str) -> ValidationError:
    return ValidationError("amount must be a positive number of dollars with at most two decimals.",
                           code="invalid_amount", details={"field": "amount", "reason": reason})


def max_payment_amount() -> Decimal:
    """``MAX_PAYMENT_AMOUNT`` (a decimal string, default 5000.00)."""
    return Decimal(str(getattr(settings, "MAX_PAYMENT_AMOUNT", "5000.00")))


def clean_amount(value: Any) -> Decimal:
    """The amount as a Decimal with two places, or 422.

    Accepts a JSON number or a plain decimal string (``"12.5"``, ``"12.50"``; no exponent, no spaces). Rules:
    a number (``invalid_amount``, reason ``not_a_number``), > 0 (``not_positive``), at most two decimals
    (``too_many_decimals``; trailing zeros do not count: ``"1.100"`` is 1.10), at most ``MAX_PAYMENT_AMOUNT``
    (``amount_over_limit``).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _invalid_amount("not_a_number")
    if isinstance(value, str):
        if not _AMOUNT_TEXT.match(value):
            raise _invalid_amount("not_a_number")
        text = value
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise _invalid_amount("not_a_number") from None
    if not amount.is_finite():
        raise _invalid_amount("not_a_number")
    if amount <= 0:
        raise _invalid_amount("not_positive")
    if amount != amount.quantize(_CENT, rounding="ROUND_DOWN"):
        raise _invalid_amount("too_many_decimals")
    limit = max_payment_amount()
    if amount > limit:
        raise ValidationError(f"amount is above the limit of {limit}.", code="amount_over_limit",
                              details={"field": "amount", "max": str(limit)})
    return amount.quantize(_CENT)


def _clean_name(value: Any, default: str, field_name: str) -> str:
    if value is None:
        return default
    text = str(value).strip()
    if not text or len(text) > NAME_MAX_LENGTH or not text.isprintable():
        raise ValidationError(f"{field_name} must be 1-{NAME_MAX_LENGTH} printable characters.",
                              code="invalid_name", details={"field": field_name})
    return text


def _optional_text(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    text = str(value)
    return text or None


def payment_validate(*, principal: Principal, data: dict) -> SubmissionRequest:
    """Check a payment request against everything that does not depend on stored state, in this order:
    the caller may pay for this user (403 ``not_your_user``), ``user_id`` (422 ``invalid_user_id``), the route
    (422 ``unsupported_route``), the amount (422 ``invalid_amount`` / ``amount_over_limit``), ``account_id``
    well-formed (422 ``invalid_account_id``), present for ACH and RTP (422 ``account_id_required``) and absent for
    pinless (422 ``account_id_not_allowed``), ``rtp_mode`` only for RTP (422 ``rtp_mode_not_allowed``), the names
    (422 ``invalid_name``).

    ``data`` is the input serializer's validated data (enum values already checked). Pure: reads nothing, writes
    nothing, so a refusal here involves no idempotency record and a corrected request may reuse the key.
    """
    user_id = data.get("user_id")
    ensure_user_access(principal, str(user_id))
    validate_user_id(user_id)
    purpose, payment_type, payment_method = data.get("purpose"), data.get("payment_type"), data.get("payment_method")
    the_route = route(purpose=purpose, payment_type=payment_type, payment_method=payment_method,
                      provider_override=data.get("provider") or None)
    amount = clean_amount(data.get("amount"))

    account_id = _optional_text(data, "account_id")
    if account_id is not None:
        from bank_accounts.validation import validate_account_id  # a pure format rule (422 invalid_account_id)

        validate_account_id(account_id)
    if payment_method in (Method.ACH, Method.RTP) and not account_id:
        raise ValidationError("account_id (the bank account) is required for ACH and RTP payments.",
                              code="account_id_required", details={"field": "account_id"})
    if payment_method == Method.PINLESS and account_id:
        raise ValidationError("account_id is not used by pinless payments (they use the debit card).",
                              code="account_id_not_allowed", details={"field": "account_id"})
    rtp_mode = data.get("rtp_mode") or None
    if payment_method == Method.RTP:
        rtp_mode = rtp_mode or DEFAULT_RTP_MODE
        if rtp_mode not in RTP_MODES:
            raise ValidationError("rtp_mode must be fallback or only.", code="invalid_rtp_mode",
                                  details={"field": "rtp_mode"})
    elif rtp_mode is not None:
        raise ValidationError("rtp_mode applies to RTP payments only.", code="rtp_mode_not_allowed",
                              details={"field": "rtp_mode"})

    return SubmissionRequest(
        user_id=user_id, purpose=purpose, payment_type=payment_type, payment_method=payment_method, amount=amount,
        route=the_route, account_id=account_id, loan_id=_optional_text(data, "loan_id"),
        subscription_id=_optional_text(data, "subscription_id"), cbc_card_id=_optional_text(data, "cbc_card_id"),
        rtp_mode=rtp_mode,
        first_name=_clean_name(data.get("first_name"), DEFAULT_FIRST_NAME, "first_name"),
        last_name=_clean_name(data.get("last_name"), DEFAULT_LAST_NAME, "last_name"),
        client_id=principal.client_id, actor=str(principal),
    )


# --- pre-checks (stored state; inside step 1's transaction) ---------------------------------------------------
@dataclass(frozen=True)
class _Checked:
    masked_account_number: str | None = None
    masked_card_number: str | None = None


def _precheck(request: SubmissionRequest) -> _Checked:
    """SPEC §5 checks on stored state, each with its code (422): an ACH payment — or an RTP payment that may fall
    back to ACH — needs a user who is not BLOCKED (``user_blocklisted``); ACH and RTP need the bank account
    (``bank_account_not_found``); pinless and RTP need a card (``debit_card_missing``) that is valid and holds the
    token the payment uses (``debit_card_invalid``). Read-only."""
    from bank_accounts.selectors import bank_account_get
    from blocklist.selectors import blocklist_is_blocked
    from cards.selectors import card_find

    checked = {}
    may_be_ach = request.payment_method == Method.ACH or request.rtp_mode == "fallback"
    if may_be_ach and blocklist_is_blocked(user_id=request.user_id):
        raise ValidationError("The user is blocked from ACH payments.", code="user_blocklisted")
    if needs_bank_account(request):
        try:
            account = bank_account_get(user_id=request.user_id, account_id=request.account_id)
        except NotFoundError:
            raise ValidationError("The user has no bank account with this account_id.",
                                  code="bank_account_not_found", details={"field": "account_id"}) from None
        checked["masked_account_number"] = account.last4
    if needs_card(request):
        card = card_find(user_id=request.user_id)
        if card is None:
            raise ValidationError("The user has no debit card.", code="debit_card_missing")
        if not card.is_valid or not card_token(card, request):
            raise ValidationError("The user's debit card is not valid for this payment; add the card again.",
                                  code="debit_card_invalid")
        checked["masked_card_number"] = card.masked_card_number
    return _Checked(**checked)


# --- step 1 --------------------------------------------------------------------------------------------------------
def _error_body(exc: ServiceError) -> dict:
    return {"error": exc.as_dict()}


def _recover(record: IdempotencyKey, request: SubmissionRequest) -> SubmissionResult:
    """A stale key whose request created a payment: answer with the payment as it is now. Once it left PROCESSING
    the answer (201) is stored for good; while PROCESSING it is 202 and the key stays in progress."""
    payment = Payment.objects.get(pk=record.resource_id)
    body = payment_render(payment)
    if payment.payment_status == Status.PROCESSING:
        return SubmissionResult(HTTP_ACCEPTED, body, replayed=True, payment_id=str(payment.pk))
    idempotency_complete(record=record, status_code=HTTP_CREATED, body=body, resource_id=str(payment.pk))
    return SubmissionResult(HTTP_CREATED, body, replayed=True, payment_id=str(payment.pk))


def payment_claim(*, principal: Principal, idempotency_key: str, fingerprint: str, data: dict,
                  lease_seconds: int | None = None) -> Claim:
    """Step 1: validate, then in ONE transaction claim the key, run the pre-checks and create the PROCESSING payment.

    Outcomes: a validation error is raised (nothing written, key not claimed); 409 ``idempotency_in_progress`` /
    422 ``idempotency_key_reused`` are raised (nothing written); a completed key → ``Claim.response`` is the stored
    answer (``replayed``); a stale key → the current state of its payment (see ``_recover``); a refused pre-check →
    ``Claim.response`` is the 4xx, also stored on the key, and no payment exists; else ``Claim.payment`` is the new
    payment (PROCESSING, ``submit_date`` now, masked numbers, merchant account, key and client; JPM payments get
    ``confirmation_id`` = our reference at once so a fast webhook finds them) with one history row
    ``None → PROCESSING`` (source ``api``; no event), and the key is linked to it.
    """
    request = payment_validate(principal=principal, data=data)
    begin_kwargs = {"lease_seconds": lease_seconds} if lease_seconds else {}
    # The payment's id is chosen now so that a new key is linked to it by its INSERT (no idempotency_attach).
    payment_id = uuid.uuid4()
    with transaction.atomic():
        outcome = idempotency_begin(client_id=principal.client_id, key=idempotency_key, fingerprint=fingerprint,
                                    resource_id=str(payment_id), **begin_kwargs)
        if isinstance(outcome, Replay):
            return Claim(request=request, response=SubmissionResult(
                outcome.status_code, outcome.body, replayed=True, payment_id=outcome.resource_id))
        record = outcome.record
        if isinstance(outcome, Stale) and record.resource_id:
            return Claim(request=request, record=record, response=_recover(record, request))
        # Claimed, or Stale without a payment (its request created nothing): claimed afresh.
        try:
            checked = _precheck(request)
        except ServiceError as exc:
            body = _error_body(exc)
            idempotency_complete(record=record, status_code=exc.status_code, body=body, no_resource=True)
            logger.info("payment refused", extra={"user_id": request.user_id, "code": exc.code})
            return Claim(request=request, record=record, response=SubmissionResult(exc.status_code, body))

        now = timezone.now()
        payment = Payment(
            id=payment_id, user_id=request.user_id, purpose=request.purpose, payment_method=request.payment_method,
            payment_type=request.payment_type, payment_provider=request.route.provider, amount=request.amount,
            loan_id=request.loan_id, subscription_id=request.subscription_id, cbc_card_id=request.cbc_card_id,
            account_id=request.account_id if needs_bank_account(request) else None,
            masked_account_number=checked.masked_account_number, masked_card_number=checked.masked_card_number,
            payment_status=Status.PROCESSING, submit_date=now, idempotency_key=idempotency_key,
            client_id=principal.client_id,
        )
        if request.route.usio_account_name:
            payment.merchant_account = usio_merchant_id(request.route.usio_account_name)
        if request.route.provider == Provider.JPM:
            payment.confirmation_id = payment.reference  # JPM's endToEndId is ours
        insert_row(payment)  # = payment.save(force_insert=True), compiled by hand (core.sql: every submission)
        # Creation is not a transition (payment_apply_status moves existing payments), so the first history row is
        # written here; it carries no event (SPEC §4: submitting writes none).
        insert_row(PaymentStatusChange(payment=payment, from_status=None, to_status=Status.PROCESSING,
                                       source=Source.API, actor=request.actor[:150]))
        if record.resource_id != str(payment.pk):  # a stale key claimed afresh keeps its (empty) link: set it
            idempotency_attach(record=record, resource_id=str(payment.pk))
    logger.info("payment created", extra={"payment_id": str(payment.pk), "user_id": request.user_id,
                                          "provider": payment.payment_provider, "method": payment.payment_method})
    return Claim(request=request, record=record, payment=payment)


# --- step 3 --------------------------------------------------------------------------------------------------------
def payment_apply_outcome(*, claim: Claim, outcome: ProcessorOutcome) -> SubmissionResult:
    """Step 3: apply the processor's outcome and answer.

    ``unknown`` → nothing changes (payment PROCESSING, key in progress) and the answer is 202 with the payment.
    Else, in ONE transaction: ``payment_apply_status`` (``sent`` → ACHSENT, ``approved`` → COMPLETED, ``declined`` /
    ``rejected`` / ``not_submitted`` → FAILED with that failure, ``return_code`` = the processor's code,
    ``return_info`` = its message or our reason), the processor's ``confirmation_id``; a hard card decline
    invalidates the card (``card_invalidate(only_if_token=...)``: a card replaced meanwhile is left alone); the
    answer 201 + the payment as it now is is stored on the key. A status change refused by the status machine
    (a webhook got there first) changes nothing and the answer shows the payment's actual state.
    """
    from cards.services import card_invalidate

    payment, request = claim.payment, claim.request
    if payment is None or claim.response is not None:
        raise ValueError("this claim has no payment to apply an outcome to")
    if outcome.kind == "unknown":
        payment.refresh_from_db()
        logger.warning("payment outcome unknown; left PROCESSING for the reconciler",
                       extra={"payment_id": str(payment.pk), "error": outcome.message})
        return SubmissionResult(HTTP_ACCEPTED, payment_render(payment), payment_id=str(payment.pk))

    to_status, failure = _STATUS_FOR[outcome.kind]
    with transaction.atomic():
        result = payment_apply_status(
            payment_id=payment.pk, to_status=to_status, source=Source.API, actor=request.actor[:150],
            failure=failure, return_code=outcome.code if to_status == Status.FAILED else None,
            return_info=outcome.message if to_status == Status.FAILED else None,
            confirmation_id=outcome.confirmation_id or None, raw_payload_ref=outcome.raw_payload_ref,
            savepoint=False)  # an error here ends this whole transaction: nothing of step 3 is kept
        if outcome.invalidate_card_token:
            card_invalidate(user_id=payment.user_id, actor="system",
                            reason=f"payment {payment.pk} declined {outcome.code}: {outcome.message}",
                            only_if_token=outcome.invalidate_card_token)
        current = result.payment if result.applied else Payment.objects.get(pk=payment.pk)
        body = payment_render(current)
        if claim.record is not None:
            idempotency_complete(record=claim.record, status_code=HTTP_CREATED, body=body,
                                 resource_id=str(payment.pk))
    logger.info("payment submitted", extra={"payment_id": str(payment.pk), "outcome": outcome.kind,
                                            "payment_status": current.payment_status, "code": outcome.code})
    claim.payment = current
    return SubmissionResult(HTTP_CREATED, body, payment_id=str(payment.pk))


# --- the whole flow ------------------------------------------------------------------------------------------------
def payment_replay(*, principal: Principal, idempotency_key: str, fingerprint: str) -> SubmissionResult | None:
    """A client's retry of a completed submission — the same key and body — answered from the stored response
    (``idempotency_replay``: one read, no lock) before the body is validated and checked again; the answer is the one
    ``payment_submit`` would replay. None when the key is not completed for this body: call ``payment_submit``, which
    decides every other case (new key, in progress, reused with another body) as before."""
    replay = idempotency_replay(client_id=principal.client_id, key=idempotency_key, fingerprint=fingerprint)
    if replay is None:
        return None
    return SubmissionResult(replay.status_code, replay.body, replayed=True, payment_id=replay.resource_id)


def payment_submit(*, principal: Principal, idempotency_key: str, fingerprint: str, data: dict) -> SubmissionResult:
    """Submit a payment (SPEC §5): ``payment_claim`` → ``payment_call_processor`` → ``payment_apply_outcome``.

    Returns the answer: 201 + the payment (ACHSENT, COMPLETED or FAILED), 202 + the PROCESSING payment (outcome
    unknown), a replayed/recovered answer, or a stored 4xx of a refused pre-check. Raises (nothing written, key not
    kept) for body validation errors (403/422) and for 409 ``idempotency_in_progress`` / 422
    ``idempotency_key_reused``. Idempotent per (API client, key): at most one payment and one processor call.
    """
    claim = payment_claim(principal=principal, idempotency_key=idempotency_key, fingerprint=fingerprint, data=data)
    if claim.response is not None:
        return claim.response
    outcome = payment_call_processor(claim=claim)
    return payment_apply_outcome(claim=claim, outcome=outcome)

