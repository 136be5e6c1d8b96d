"""Back-office actions on one payment (issue 8): "sync now" and "mark a stuck payment failed".

Both are called by the admin (``payments/admin.py``) with the staff user's username as ``actor`` and the reason
they typed; both change a status only through the status machine (``payments.status``) with source ``admin``, and
record one ``AuditEntry`` in the same transaction as the change. A refused action writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationError
from core.transactions import in_transaction
from payments.jpm_status import status_steps_apply
from payments.models import Payment, Provider, Source, Status
from payments.status import payment_apply_status

NOT_SUBMITTED = "not_submitted"
MARKED_FAILED_PREFIX = "marked failed by support: "
_PROCESSOR_NAMES = {Provider.JPM: "JPM", Provider.USIO: "Usio"}


def _require_reason(reason: str) -> str:
    if not reason or not str(reason).strip():
        raise ValidationError("A reason is required.", code="reason_required", details={"field": "reason"})
    return str(reason).strip()


def _payment(payment_id) -> Payment:
    try:
        return Payment.objects.get(pk=payment_id)
    except (Payment.DoesNotExist, ValueError, TypeError, DjangoValidationError):
        raise NotFoundError("No such payment.", code="payment_not_found") from None


# --- sync now -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncResult:
    """What "sync now" found and did: the processor's answer in words (``answer``), whether it knows the payment,
    the payment's status before and after, and the statuses entered (and events written) in order."""

    answer: str
    found: bool
    from_status: str
    to_status: str
    applied: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def payment_sync_now(*, payment_id, actor: str, reason: str) -> SyncResult:
    """Ask the payment's processor for its status now (our reference: JPM ``get_payment_status``, Usio
    ``GetTransactionDetails`` — the reconciler's lookup, ``payments.reconciler.payment_processor_lookup``) and
    apply what it says.

    The lookup runs first, outside any transaction. Then, in ONE transaction: the steps that lead to the
    processor's status go through the status machine (``status_steps_apply``, source ``admin``, ``actor``): a step
    the machine refuses (already done, or a status the payment is past) is skipped, so a payment never regresses;
    and one ``AuditEntry`` (``payment.sync_now``, the reason, the answer and what changed) is written — also when
    nothing changed (it records that support asked). A payment the processor does not know is left as it is
    (failing it is "mark failed", a separate decision).

    Refusals (nothing written, no audit): 422 ``reason_required`` (before asking), 404 ``payment_not_found``,
    503 ``processor_unavailable`` ("could not reach …": unreachable, timeout, unreadable answer, credentials,
    configuration), 409 ``processor_record_mismatch`` (the processor's record does not fit the payment). Safe to
    repeat: applying the same answer twice changes nothing the second time.
    """
    from integrations.errors import ProcessorError
    from payments.reconciler import ProcessorRecordMismatch, payment_processor_lookup

    reason = _require_reason(reason)
    payment = _payment(payment_id)
    processor = _PROCESSOR_NAMES.get(payment.payment_provider, payment.payment_provider)
    if in_transaction():
        raise RuntimeError("payment_sync_now must not run inside a transaction (it calls the processor)")
    try:
        finding = payment_processor_lookup(payment)
    except ProcessorError as exc:
        raise ServiceUnavailableError(
            f"Could not reach {processor} ({type(exc).__name__}); nothing was changed. Try again later.",
            code="processor_unavailable", details={"processor": payment.payment_provider}) from None
    except ProcessorRecordMismatch as exc:
        raise ConflictError(f"{processor}'s record does not fit this payment: {exc}. Nothing was changed.",
                            code="processor_record_mismatch", details={"processor": payment.payment_provider}) \
            from None

    with transaction.atomic():
        before = Payment.objects.select_for_update().only("payment_status").get(pk=payment.pk).payment_status
        applied: list[str] = []
        after = before
        if finding.found:
            steps = status_steps_apply(payment=payment, steps=finding.steps, source=Source.ADMIN, actor=actor,
                                       raw_payload_ref=finding.raw_payload_ref)
            applied, after = steps.applied, steps.status
        audit_record(actor=actor, action="payment.sync_now", target_type="payment", target_id=str(payment.pk),
                     reason=reason, user_id=payment.user_id,
                     changes={"processor_answer": finding.answer, "found": finding.found, "from_status": before,
                              "to_status": after, "applied": applied})
    return SyncResult(answer=finding.answer, found=finding.found, from_status=before, to_status=after,
                      applied=applied)


# --- mark a stuck payment failed ------------------------------------------------------------------------------------
def payment_stuck_cutoff(*, now: datetime | None = None) -> datetime:
    """A PROCESSING payment created before this is stuck (SPEC §7.7: ``PROCESSING_STUCK_MINUTES``)."""
    return (now or timezone.now()) - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)


def payment_mark_failed_refusal(*, payment: Payment, now: datetime | None = None) -> ConflictError | None:
    """Why ``payment`` may not be marked failed now (the error ``payment_mark_failed`` would raise), or None.
    Only a payment PROCESSING for longer than ``PROCESSING_STUCK_MINUTES`` may be: a younger one is still being
    submitted, and any other status is the processor's known answer."""
    if payment.payment_status != Status.PROCESSING:
        return ConflictError(f"Only a PROCESSING payment can be marked failed; this one is {payment.payment_status}.",
                             code="payment_not_processing", details={"payment_status": payment.payment_status})
    if payment.created_at >= payment_stuck_cutoff(now=now):
        return ConflictError(
            f"This payment has been PROCESSING for less than {settings.PROCESSING_STUCK_MINUTES} minutes: it is "
            "still being submitted, not stuck. Wait, then use \"sync now\" first.",
            code="payment_not_stuck", details={"stuck_minutes": settings.PROCESSING_STUCK_MINUTES})
    return None


def payment_mark_failed(*, payment_id, actor: str, reason: str, now: datetime | None = None) -> Payment:
    """Mark a stuck payment FAILED by hand (SPEC §7.7's give-up, decided by support): in ONE transaction, under the
    payment's row lock, check it is still PROCESSING and older than ``PROCESSING_STUCK_MINUTES``, then
    ``payment_apply_status(FAILED, failure="not_submitted", return_info="marked failed by support: <reason>"
    [:255], source=admin, actor)`` (history row, ``*_FAILED`` event) and one ``AuditEntry``
    (``payment.mark_failed``).

    No processor is asked: support should "sync now" first (the processor may have the payment). Refusals
    (nothing written): 422 ``reason_required``, 404 ``payment_not_found``, 409 ``payment_not_processing`` /
    ``payment_not_stuck``. Not repeatable: a second call finds the payment FAILED and is refused.
    """
    reason = _require_reason(reason)
    _payment(payment_id)  # 404 before opening a transaction
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        refusal = payment_mark_failed_refusal(payment=payment, now=now)
        if refusal is not None:
            raise refusal
        result = payment_apply_status(
            payment_id=payment.pk, to_status=Status.FAILED, source=Source.ADMIN, actor=actor,
            failure=NOT_SUBMITTED, return_info=f"{MARKED_FAILED_PREFIX}{reason}"[:255],
            raw_payload_ref=f"admin:mark_failed:{actor}"[:255])
        if not result.applied:  # cannot happen under the lock; never audit a change that did not happen
            raise RuntimeError("PROCESSING → FAILED refused under the row lock")
        audit_record(actor=actor, action="payment.mark_failed", target_type="payment", target_id=str(payment.pk),
                     reason=reason, user_id=payment.user_id,
                     changes={"from_status": Status.PROCESSING, "to_status": Status.FAILED,
                              "return_info": result.payment.return_info})
    return result.payment
