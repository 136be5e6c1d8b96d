"""Refunds (SPEC §2.4, §8, issue 6): validation, the three-step submission, and finishing a refund.

``refund_create`` = ``refund_validate`` → (a refund of a Usio transaction: ``refund_find_usio_transaction``) →
``refund_claim`` (step 1) → ``refund_call_processor`` (step 2, ``refunds.processor_call``) →
``refund_apply_outcome`` (step 3). The steps are public so that a crash between them can be simulated.

What a refund can be tied to, and how the money moves (all Usio; docs/refunds.md has the reasons):

- ``payment_id``, a card payment: a Usio pinless **debit**, COMPLETED, up to its amount minus the refunds so far.
  ``SubmitCCVoid`` of the payment's confirmation on the payment's own merchant account (Usio refunds only there).
- ``payment_id``, an ACH payment: a Usio ACH **debit**, COMPLETED (past the return window), same balance rule.
  An ACH credit (22/32) to the payment's bank account, paid from ``REFUND_USIO_ACCOUNT``.
- ``confirmation_id``: a settled Usio debit with no payment record, up to its amount minus Usio's
  ``RefundedAmount`` (or our completed refunds, if more) minus our refunds in flight. ``SubmitCCVoid`` on the
  account that holds it (found by asking ``REFUND_LOOKUP_USIO_ACCOUNTS`` in order).
- ``account_type: debit``: any amount (at most ``MAX_PAYMENT_AMOUNT``); ``PinlessCredit`` to the card's credit
  token, paid from ``REFUND_USIO_ACCOUNT``.
- ``account_type: ach`` + ``account_id``: any amount; an ACH credit (22/32) to that bank account, paid from
  ``REFUND_USIO_ACCOUNT``.

1. **Claim** — one transaction: the ``Idempotency-Key`` is claimed; for a payment, the payment row is locked
   (``SELECT … FOR UPDATE``) and the refundable balance (amount - COMPLETED and PROCESSING refunds) checked under
   that lock, so concurrent refunds can never exceed it; a Usio transaction is serialised the same way by a
   transaction-scoped advisory lock on its confirmation (PostgreSQL; SQLite serialises writers anyway); the
   refund is created PROCESSING, audited, and linked to the key. A refused pre-check creates nothing and its 4xx
   is stored on the key (as for payments: a corrected request needs a new key).
2. **Usio call** — outside any transaction, never retried; our reference (``refund.reference``) where the
   operation takes one (PinlessCredit, ACH credit; SubmitCCVoid takes none).
3. **Outcome** — one transaction (``refund_finish``): COMPLETED with Usio's confirmation and ``date_refunded``
   (and the payment → REFUNDED with its ``*_REFUNDED`` event once its COMPLETED refunds reach its amount), or
   FAILED with Usio's code and message; the answer (201 + the refund) is stored on the key.

An unknown outcome (timeout, malformed answer, HTTP 5xx) leaves the refund PROCESSING — its amount still held
against the balance — and the key in progress; the answer is 202. The same key then gets 409 (lease live) or the
refund's current state (``Stale``); a new key is refused while the balance is held. The refund reconciler
(``refunds.reconciler``) resolves it by asking Usio. A timeout never produces a second refund.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from core.audit import audit_record
from core.auth.principal import ROLE_ADMIN, ROLE_SUPPORT, Principal
from core.errors import (
    PermissionDeniedError,
    ServiceError,
    ValidationError,
)
from core.idempotency import Replay, Stale, idempotency_attach, idempotency_begin, idempotency_complete
from core.models import IdempotencyKey
from core.validators import validate_user_id
from refunds.data import (
    FoundTransaction,
    RefundClaim,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SupportIdentity,
)
from refunds.models import AccountType, Refund, RefundStatus, RefundTarget
from refunds.prechecks import refund_find_usio_transaction, refund_plan
from refunds.serializers import refund_render

logger = logging.getLogger(__name__)

HTTP_CREATED = 201
HTTP_ACCEPTED = 202
ALLOWED_ROLES = (ROLE_SUPPORT, ROLE_ADMIN)
_CONFIRMATION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TARGET_FIELDS = ("payment_id", "confirmation_id", "account_type")


# --- validation (the body only: nothing read, nothing written) -------------------------------------------------------
def _text(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def refund_validate(*, principal: Principal, support: SupportIdentity, data: dict) -> RefundRequest:
    """Check a refund request against everything that does not depend on stored state, in this order:
    the caller is support or admin (403 ``permission_denied``), ``user_id`` (422 ``invalid_user_id``), the amount
    (422 ``invalid_amount`` / ``amount_over_limit``: the payments rules), exactly one target among ``payment_id``,
    ``confirmation_id`` and ``account_type`` (422 ``refund_target_missing`` / ``refund_target_conflict``), a
    well-formed ``confirmation_id`` (422 ``invalid_confirmation_id``), ``account_id`` well-formed (422
    ``invalid_account_id``), present for ``account_type: ach`` (422 ``account_id_required``) and absent otherwise
    (422 ``account_id_not_allowed``).

    ``data`` is the input serializer's validated data (``description`` non-blank, ``account_type`` a known value).
    Pure: a refusal here involves no idempotency record, so a corrected request may reuse the key.
    """
    from bank_accounts.validation import validate_account_id
    from payments.services import clean_amount

    if principal.role not in ALLOWED_ROLES:
        raise PermissionDeniedError("Only support and admin callers may refund.")
    user_id = data.get("user_id")
    validate_user_id(user_id)
    amount = clean_amount(data.get("amount"))

    given = [name for name in _TARGET_FIELDS if _text(data, name) is not None]
    if not given:
        raise ValidationError("Say what to refund: payment_id, confirmation_id or account_type.",
                              code="refund_target_missing", details={"fields": list(_TARGET_FIELDS)})
    if len(given) > 1:
        raise ValidationError("Give exactly one of payment_id, confirmation_id and account_type.",
                              code="refund_target_conflict", details={"fields": given})
    confirmation_id = _text(data, "confirmation_id")
    if confirmation_id is not None and not _CONFIRMATION.match(confirmation_id):
        raise ValidationError("confirmation_id must be 1-64 letters, digits, '_' or '-'.",
                              code="invalid_confirmation_id", details={"field": "confirmation_id"})
    account_type = _text(data, "account_type")
    account_id = _text(data, "account_id")
    if account_id is not None:
        validate_account_id(account_id)
    if account_type == AccountType.ACH and account_id is None:
        raise ValidationError("account_id (the bank account to credit) is required for account_type ach.",
                              code="account_id_required", details={"field": "account_id"})
    if account_type != AccountType.ACH and account_id is not None:
        raise ValidationError("account_id is only used with account_type ach.", code="account_id_not_allowed",
                              details={"field": "account_id"})

    target = (RefundTarget.PAYMENT if given == ["payment_id"] else
              RefundTarget.USIO_TRANSACTION if given == ["confirmation_id"] else RefundTarget.ARBITRARY)
    return RefundRequest(
        user_id=user_id, amount=amount, description=str(data["description"]).strip(), target=target,
        support=support, payment_identifier=_text(data, "payment_id"), confirmation_id=confirmation_id,
        account_type=account_type, account_id=account_id, loan_id=_text(data, "loan_id"),
        subscription_id=_text(data, "subscription_id"), client_id=principal.client_id, actor=str(principal)[:150],
    )


# --- step 1 ---------------------------------------------------------------------------------------------------------
def _recover(record: IdempotencyKey) -> RefundResult:
    """A stale key whose request created a refund: answer with the refund as it is now (201, stored for good, once
    it left PROCESSING; 202 and the key still in progress until then)."""
    refund = Refund.objects.get(pk=record.resource_id)
    body = refund_render(refund)
    if refund.status == RefundStatus.PROCESSING:
        return RefundResult(HTTP_ACCEPTED, body, replayed=True, refund_id=str(refund.pk))
    idempotency_complete(record=record, status_code=HTTP_CREATED, body=body, resource_id=str(refund.pk))
    return RefundResult(HTTP_CREATED, body, replayed=True, refund_id=str(refund.pk))


def refund_claim(*, request: RefundRequest, idempotency_key: str, fingerprint: str,
                 found: FoundTransaction | None = None, lease_seconds: int | None = None) -> RefundClaim:
    """Step 1: in ONE transaction claim the key, run the pre-checks (locking the payment or the Usio transaction)
    and create the PROCESSING refund.

    Outcomes: 409 ``idempotency_in_progress`` / 422 ``idempotency_key_reused`` are raised (nothing written); a
    completed key → ``RefundClaim.response`` is its stored answer (``replayed``); a stale key → the refund as it is
    now (``_recover``); a refused pre-check → ``response`` is the 4xx, also stored on the key, and no refund
    exists; else ``refund`` is the new refund (PROCESSING, support identity, key and client), an audit entry
    (``refund.create``, reason = the description) is written and the key is linked to it.
    """
    begin_kwargs = {"lease_seconds": lease_seconds} if lease_seconds else {}
    with transaction.atomic():
        outcome = idempotency_begin(client_id=request.client_id, key=idempotency_key, fingerprint=fingerprint,
                                    **begin_kwargs)
        if isinstance(outcome, Replay):
            return RefundClaim(request=request, response=RefundResult(
                outcome.status_code, outcome.body, replayed=True, refund_id=outcome.resource_id))
        record = outcome.record
        if isinstance(outcome, Stale) and record.resource_id:
            return RefundClaim(request=request, record=record, response=_recover(record))
        try:
            plan = refund_plan(request=request, found=found)
        except ServiceError as exc:
            body = {"error": exc.as_dict()}
            idempotency_complete(record=record, status_code=exc.status_code, body=body)
            logger.info("refund refused", extra={"user_id": request.user_id, "code": exc.code})
            return RefundClaim(request=request, record=record, response=RefundResult(exc.status_code, body))

        support = request.support
        refund = Refund(
            user_id=request.user_id, amount=request.amount, description=request.description,
            account_type=plan.account_type, target=request.target, method=plan.method, payment=plan.payment,
            loan_id=request.loan_id, subscription_id=request.subscription_id, confirmation_id=plan.confirmation_id,
            usio_account=plan.usio_account, merchant_account=plan.merchant_account, account_id=plan.account_id,
            masked_account_number=plan.masked_account_number, masked_card_number=plan.masked_card_number,
            support_name=support.name[:150], support_email=(support.email or "")[:254],
            support_last_ip=support.ip or None, status=RefundStatus.PROCESSING, idempotency_key=idempotency_key,
            client_id=request.client_id,
        )
        refund.save(force_insert=True)
        audit_record(actor=request.actor, action="refund.create", target_type="refund", target_id=str(refund.pk),
                     reason=request.audit_reason or request.description, user_id=request.user_id,
                     changes={"amount": str(refund.amount), "description": request.description,
                              "target": refund.target, "method": refund.method,
                              "payment_id": str(refund.payment_id) if refund.payment_id else None,
                              "confirmation_id": refund.confirmation_id, "account_id": refund.account_id})
        idempotency_attach(record=record, resource_id=str(refund.pk))
    logger.info("refund created", extra={"refund_id": str(refund.pk), "user_id": request.user_id,
                                         "method": refund.method, "target": refund.target})
    return RefundClaim(request=request, record=record, refund=refund)


# --- step 3 (and the reconciler) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinishResult:
    applied: bool  # False: the refund had left PROCESSING already (nothing changed)
    refund: Refund
    payment_refunded: bool = False  # this finish moved the payment to REFUNDED


def refund_finish(*, refund_id, outcome: RefundOutcome, source: str, actor: str,
                  at: datetime | None = None) -> FinishResult:
    """Apply a known outcome to a PROCESSING refund: ``approved`` → COMPLETED with ``refund_confirmation_id`` and
    ``date_refunded`` (``at``, default now); ``declined`` / ``not_submitted`` → FAILED with ``failure_code`` /
    ``failure_message``. When a COMPLETED refund brings the payment's COMPLETED refunds to its amount, the payment
    becomes REFUNDED through ``payment_apply_status`` (``source``, ``actor``), which writes its ``*_REFUNDED``
    event (from COMPLETED only; a payment charged back or returned meanwhile stays as it is, logged).

    One transaction; the payment row (if any) is locked before the refund row, as in step 1. Conditional on the
    refund being PROCESSING: a second finish (step 3 racing the reconciler) changes nothing. ``unknown`` is not
    an outcome to apply (``ValueError``).
    """
    from payments.models import Payment, Status
    from payments.status import payment_apply_status

    if outcome.kind == "unknown":
        raise ValueError("an unknown outcome leaves the refund PROCESSING")
    with transaction.atomic():
        payment_id = Refund.objects.filter(pk=refund_id).values_list("payment_id", flat=True).get()
        payment = Payment.objects.select_for_update().get(pk=payment_id) if payment_id else None
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.PROCESSING:
            return FinishResult(False, refund)
        now = timezone.now()
        if outcome.kind == "approved":
            updates = {"status": RefundStatus.COMPLETED, "refund_confirmation_id": outcome.confirmation_id,
                       "date_refunded": at or now, "updated_at": now}
        else:
            updates = {"status": RefundStatus.FAILED, "failure_code": (outcome.code or outcome.kind)[:16],
                       "failure_message": (outcome.message or outcome.kind)[:255], "updated_at": now}
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PROCESSING).update(**updates)
        refund.refresh_from_db()
        refunded = False
        if payment is not None and refund.status == RefundStatus.COMPLETED:
            completed = Refund.objects.filter(payment=payment, status=RefundStatus.COMPLETED).aggregate(
                total=Sum("amount"))["total"] or Decimal("0.00")
            if completed >= payment.amount:
                result = payment_apply_status(
                    payment_id=payment.pk, to_status=Status.REFUNDED, source=source, actor=actor[:150],
                    raw_payload_ref=f"refund:{refund.pk}")
                refunded = result.applied
    logger.info("refund finished", extra={"refund_id": str(refund.pk), "refund_status": refund.status,
                                          "code": refund.failure_code, "source": source,
                                          "payment_refunded": refunded})
    return FinishResult(True, refund, refunded)


def refund_apply_outcome(*, claim: RefundClaim, outcome: RefundOutcome, source: str | None = None) -> RefundResult:
    """Step 3. ``unknown`` → nothing changes (refund PROCESSING, its amount still held, key in progress): 202 with
    the refund. Else in ONE transaction ``refund_finish`` (``source``: ``api`` by default, ``admin`` from the back
    office; the caller as actor) and the answer — 201 with the refund as it now is — stored on the key."""
    from payments.models import Source

    refund = claim.refund
    if refund is None or claim.response is not None:
        raise ValueError("this claim has no refund to apply an outcome to")
    if outcome.kind == "unknown":
        refund.refresh_from_db()
        logger.warning("refund outcome unknown; left PROCESSING for the reconciler",
                       extra={"refund_id": str(refund.pk), "error": outcome.message})
        return RefundResult(HTTP_ACCEPTED, refund_render(refund), refund_id=str(refund.pk))
    with transaction.atomic():
        finished = refund_finish(refund_id=refund.pk, outcome=outcome, source=source or Source.API,
                                 actor=claim.request.actor)
        body = refund_render(finished.refund)
        if claim.record is not None:
            idempotency_complete(record=claim.record, status_code=HTTP_CREATED, body=body,
                                 resource_id=str(refund.pk))
    claim.refund = finished.refund
    return RefundResult(HTTP_CREATED, body, refund_id=str(refund.pk))


# --- the whole flow -------------------------------------------------------------------------------------------------
def refund_create(*, principal: Principal, support: SupportIdentity, idempotency_key: str, fingerprint: str,
                  data: dict) -> RefundResult:
    """Refund (SPEC §8): ``refund_validate`` → for a Usio transaction ``refund_find_usio_transaction`` (a read-only
    lookup) → ``refund_claim`` → ``refund_call_processor`` → ``refund_apply_outcome``.

    Returns 201 + the refund (COMPLETED or FAILED — a Usio refusal is a FAILED refund with its code), 202 + the
    PROCESSING refund (outcome unknown), a replayed/recovered answer, or a stored 4xx of a refused pre-check.
    Raises (nothing written, key not kept): body errors (403/422), the lookup's 422/503, 409
    ``idempotency_in_progress`` / 422 ``idempotency_key_reused``. Idempotent per (API client, key): at most one
    refund and one Usio refund call; the support identity is ``support``, never the body.
    """
    from refunds.processor_call import refund_call_processor

    request = refund_validate(principal=principal, support=support, data=data)
    found = None
    if request.target == RefundTarget.USIO_TRANSACTION:
        found = refund_find_usio_transaction(confirmation_id=request.confirmation_id)
    claim = refund_claim(request=request, idempotency_key=idempotency_key, fingerprint=fingerprint, found=found)
    if claim.response is not None:
        return claim.response
    outcome = refund_call_processor(claim=claim)
    return refund_apply_outcome(claim=claim, outcome=outcome)

