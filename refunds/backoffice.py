"""Refunding a payment from the back office (issue 8): the admin's refund form (``payments/admin.py``) calls this.

It is the API's refund (``refunds.services``: the same validation, the same pre-checks under the payment's row
lock, the same three steps, the same error codes), for one of our payments, with these differences:

- the caller is the staff user: a ``Principal`` of role ``support`` or ``admin`` whose ``client_id`` is
  ``staff:<user pk>`` (idempotency keys are scoped per staff user), the support identity is their name, email and
  address, and the actor of the refund (its audit entry, a REFUNDED status change) is their username;
- the ``Idempotency-Key`` is generated when the form is rendered and the fingerprint is the one the API computes for
  the same JSON body, so a double submit of one form refunds once (the second gets the first's answer);
- a refusal by the pre-checks writes nothing at all: they are run once in a transaction that is rolled back before
  the key is claimed (the API stores such a 4xx on the key; a form re-rendered with an error gets a new key anyway);
- the audit entry ``refund_claim`` writes (``refund.create``, in the same transaction as the refund) carries the
  reason typed in the form (``RefundRequest.audit_reason``); the description is in its ``changes``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from django.db import transaction
from django.urls import reverse

from core.auth.principal import ROLE_ADMIN, ROLE_SUPPORT, Principal
from core.errors import ValidationError
from core.idempotency import fingerprint
from core.models import IdempotencyKey
from core.transactions import in_transaction
from payments.models import Source
from refunds.data import RefundRequest, RefundResult, SupportIdentity
from refunds.selectors import refund_totals_for_payment


def refund_staff_principal(*, staff_id, username: str, is_admin: bool) -> Principal:
    """The staff user as a refund caller: role ``admin`` or ``support``, named by username, keys scoped to them."""
    return Principal(role=ROLE_ADMIN if is_admin else ROLE_SUPPORT, name=username, client_id=f"staff:{staff_id}")


def refund_refundable_balance(*, payment) -> Decimal:
    """What can still be refunded of ``payment``: its amount minus its COMPLETED and PROCESSING refunds (the rule
    ``refunds.prechecks`` enforces under the row lock; a refund in flight holds its amount), never below 0.00."""
    totals = refund_totals_for_payment(payment_id=payment.pk)
    return max(payment.amount - totals["COMPLETED"] - totals["PROCESSING"], Decimal("0.00"))


def refund_payment_body(*, payment, amount: str, description: str) -> dict:
    """The ``POST /api/v1/refunds`` body that refunds ``amount`` of ``payment`` (what the form stands for)."""
    return {"user_id": payment.user_id, "amount": amount, "description": description, "payment_id": str(payment.pk)}


class _DryRun(Exception):
    """Rolls the pre-check transaction back."""


def _precheck(request: RefundRequest) -> None:
    """Run the pre-checks of step 1 (``refund_plan``: payment, provider, status, balance) and roll back: a refusal
    is raised having written nothing. Step 1 runs them again under the lock, so a refund racing this one is still
    refused there."""
    from refunds.prechecks import refund_plan

    try:
        with transaction.atomic():
            refund_plan(request=request)
            raise _DryRun
    except _DryRun:
        pass


def refund_payment_from_admin(*, principal: Principal, support: SupportIdentity, payment, amount: str,
                              description: str, reason: str, idempotency_key: str) -> RefundResult:
    """Refund ``amount`` of ``payment`` for a staff user (see the module): ``refund_validate`` → the pre-checks,
    rolled back (skipped when this key was used already: the claim then replays its answer) → ``refund_claim``
    with the audit reason → ``refund_call_processor`` (outside any transaction) → ``refund_apply_outcome``.

    Returns the API's answer: 201 + the refund (COMPLETED, or FAILED with Usio's code), 202 + the PROCESSING
    refund (outcome unknown: the refund reconciler resolves it), a replay of the first submit of the same form, or
    a stored 4xx (a refusal that raced the pre-checks). Raises, having written nothing: 422 ``reason_required``,
    the validation errors of ``refund_validate`` (``invalid_amount``, ``amount_over_limit``, ...), the pre-check
    refusals (``refund_exceeds_balance``, ``refund_not_supported``, ``payment_not_refundable``, ...), 409
    ``idempotency_in_progress`` (the same form submitted twice at once).
    """
    from refunds.processor_call import refund_call_processor
    from refunds.services import refund_apply_outcome, refund_claim, refund_validate

    if not reason or not reason.strip():
        raise ValidationError("A reason is required.", code="reason_required", details={"field": "reason"})
    if in_transaction():
        raise RuntimeError("refund_payment_from_admin must not run inside a transaction (it calls Usio)")
    data = refund_payment_body(payment=payment, amount=amount, description=description)
    request = refund_validate(principal=principal, support=support, data=data)
    request = replace(request, actor=principal.name[:150], audit_reason=reason.strip())
    if not IdempotencyKey.objects.filter(client_id=principal.client_id, key=idempotency_key).exists():
        _precheck(request)
    body_fingerprint = fingerprint(method="POST", path=reverse("refund-create"), body=data)
    claim = refund_claim(request=request, idempotency_key=idempotency_key, fingerprint=body_fingerprint)
    if claim.response is not None:
        return claim.response
    outcome = refund_call_processor(claim=claim)
    return refund_apply_outcome(claim=claim, outcome=outcome, source=Source.ADMIN)
