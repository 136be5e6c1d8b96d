"""Payment reads for the API (and anyone else who needs to find a payment)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet

from core.business_days import CHICAGO, add_business_days, chicago_date
from core.errors import NotFoundError
from core.validators import validate_user_id
from payments.models import Payment, Status

#: SPEC §7.7: support sees ACHSENT payments older than this many business days as stuck.
STUCK_ACHSENT_BUSINESS_DAYS = 5

#: Newest first. ``submit_date`` leads (the ``(user_id, submit_date)`` index serves the user's list); ``created_at``
#: and ``id`` make the order total so that cursor pages never skip or repeat a payment.
NEWEST_FIRST = ("-submit_date", "-created_at", "-id")


def payment_list_for_user(*, user_id: str) -> QuerySet[Payment]:
    """The user's payments, newest first (empty for a user with none). 422 ``invalid_user_id`` for a malformed id."""
    validate_user_id(user_id)
    return Payment.objects.filter(user_id=user_id).order_by(*NEWEST_FIRST)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)  # hyphenated or the 32-hex ``payment.reference``
    except (ValueError, AttributeError, TypeError):
        return None


def payment_get(*, identifier: str) -> Payment:
    """The payment whose processor ``confirmation_id`` is ``identifier`` — or, when none is, whose own id is
    (hyphenated UUID or the 32-hex reference): a payment still PROCESSING, or failed before the processor gave it a
    confirmation, has only our id. 404 ``payment_not_found`` otherwise. One query when found by confirmation id,
    at most two in all."""
    identifier = str(identifier or "")
    payment = Payment.objects.filter(confirmation_id=identifier).first() if identifier else None
    if payment is None:
        payment_id = _as_uuid(identifier)
        if payment_id is not None:
            payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None:
        raise NotFoundError("No such payment.", code="payment_not_found")
    return payment


def payment_stuck_cutoffs(*, now: datetime) -> tuple[datetime, datetime]:
    """(created before → a PROCESSING payment is stuck, submitted before → an ACHSENT payment is stuck) at ``now``
    (SPEC §7.7): PROCESSING longer than ``PROCESSING_STUCK_MINUTES``; ACHSENT for more than 5 business days ⟺
    submitted before the 6th business day before today (America/Chicago)."""
    processing = now - timedelta(minutes=settings.PROCESSING_STUCK_MINUTES)
    day = add_business_days(chicago_date(now), -(STUCK_ACHSENT_BUSINESS_DAYS + 1))
    return processing, datetime.combine(day, datetime.min.time(), tzinfo=CHICAGO)


def payment_stuck_conditions(*, now: datetime) -> dict[str, Q]:
    """``{"processing": Q, "achsent": Q}``: the stuck payments of each kind (the admin filter, the dashboard)."""
    processing_cutoff, achsent_cutoff = payment_stuck_cutoffs(now=now)
    return {
        "processing": Q(payment_status=Status.PROCESSING, created_at__lt=processing_cutoff),
        "achsent": Q(payment_status=Status.ACHSENT) & (
            Q(submit_date__lt=achsent_cutoff) | Q(submit_date__isnull=True, created_at__lt=achsent_cutoff)),
    }
