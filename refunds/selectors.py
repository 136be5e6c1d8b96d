"""Refund reads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from core.validators import validate_user_id
from refunds.models import Refund, RefundStatus

#: Newest first; ``id`` makes the order total so that cursor pages never skip or repeat a refund.
NEWEST_FIRST = ("-created_at", "-id")


def refund_list_for_user(*, user_id: str) -> QuerySet[Refund]:
    """The user's refunds, newest first (empty for a user with none). 422 ``invalid_user_id`` for a malformed id."""
    validate_user_id(user_id)
    return Refund.objects.filter(user_id=user_id).order_by(*NEWEST_FIRST)


def refund_totals_for_payment(*, payment_id) -> dict[str, Decimal]:
    """The payment's refunds by state: ``{"COMPLETED": total, "PROCESSING": total, "FAILED": total}`` (0.00 when
    none). COMPLETED and PROCESSING together are what the refundable balance holds."""
    rows = dict(Refund.objects.filter(payment_id=payment_id).order_by().values_list("status")
                .annotate(total=Sum("amount")))
    return {status: Decimal(rows.get(status) or 0).quantize(Decimal("0.01")) for status in RefundStatus.values}


def refund_stuck(*, created_before: datetime) -> QuerySet[Refund]:
    """Refunds PROCESSING since before ``created_before``, oldest first (the reconciler's work; support's view)."""
    return Refund.objects.filter(status=RefundStatus.PROCESSING, created_at__lt=created_before).order_by(
        "created_at", "id")
