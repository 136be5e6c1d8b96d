"""Payment reads for the API (and anyone else who needs to find a payment)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFoundError
from core.validators import validate_user_id
from payments.models import Payment

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
