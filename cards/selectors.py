"""Reads of the cards domain: the active card, its history, whether it may change, users behind a card hash."""

from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from cards.models import COUNTED_CHANGE_TYPES, DebitCard, DebitCardChange
from core.errors import NotFoundError
from core.sql import select_first
from core.validators import validate_user_id

#: SPEC §8: at most DEBIT_CARD_MAX_CHANGES card saves within this many days.
CHANGE_WINDOW_DAYS = 30
DEFAULT_MAX_CHANGES = 3
#: Payment methods that charge or credit the card (SPEC §2.1 ``payment_method``).
CARD_PAYMENT_METHODS = ("pinless", "rtp")

REASON_PAYMENT_PROCESSING = "payment_processing"
REASON_MAX_CHANGES = "max_changes_reached"


def max_changes() -> int:
    """``settings.DEBIT_CARD_MAX_CHANGES`` (default 3): card saves allowed per 30-day window."""
    return int(getattr(settings, "DEBIT_CARD_MAX_CHANGES", DEFAULT_MAX_CHANGES))


def card_find(*, user_id: str) -> DebitCard | None:
    """The user's active card, or None."""
    # = DebitCard.objects.filter(user_id=user_id).first(), compiled by hand (core.sql: read twice per submission)
    return select_first(DebitCard, where={"user_id": user_id}, order_by=("pk",))


def card_get(*, user_id: str) -> DebitCard:
    """The user's active card. Raises 422 ``invalid_user_id`` for a malformed id, 404 ``debit_card_not_found``
    when the user has no card."""
    validate_user_id(user_id)
    card = card_find(user_id=user_id)
    if card is None:
        raise NotFoundError("The user has no debit card.", code="debit_card_not_found")
    return card


def card_changes_list(*, user_id: str) -> QuerySet[DebitCardChange]:
    """The user's card history, newest first (empty for a user who never had a card)."""
    validate_user_id(user_id)
    return DebitCardChange.objects.filter(user_id=user_id).order_by("-at", "-id")


def card_changes_in_window(*, user_id: str, now: datetime | None = None) -> int:
    """How many card saves (created/replaced) the user made in the last 30 days (``at`` > now - 30 days)."""
    since = (now or timezone.now()) - timedelta(days=CHANGE_WINDOW_DAYS)
    return DebitCardChange.objects.filter(
        user_id=user_id, change_type__in=COUNTED_CHANGE_TYPES, at__gt=since
    ).count()


def user_has_processing_card_payment(*, user_id: str) -> bool:
    """True when the user has a pinless or RTP payment still PROCESSING (outcome not yet known).

    A read-only lookup of ``payments.Payment`` through the app registry (cards does not import payments, which
    imports cards). Without the payments app installed the lookup raises LookupError and nothing is in flight.
    """
    try:
        payment_model = apps.get_model("payments", "Payment")
    except LookupError:
        return False
    return payment_model.objects.filter(
        user_id=user_id, payment_method__in=CARD_PAYMENT_METHODS, payment_status="PROCESSING"
    ).exists()


def card_changeable(*, user_id: str) -> tuple[bool, str | None]:
    """Whether the user may save (or delete) a card now, and why not (SPEC §8).

    Not changeable while a pinless/RTP payment is PROCESSING (reason ``payment_processing``), nor after
    ``DEBIT_CARD_MAX_CHANGES`` card saves in the last 30 days (reason ``max_changes_reached``; deletions,
    admin updates and invalidations do not count). Returns ``(True, None)`` otherwise. Read-only.
    ``card_save`` re-evaluates it under the card's row lock, so the answer here is advisory.
    """
    validate_user_id(user_id)
    if user_has_processing_card_payment(user_id=user_id):
        return False, REASON_PAYMENT_PROCESSING
    if card_changes_in_window(user_id=user_id) >= max_changes():
        return False, REASON_MAX_CHANGES
    return True, None


def card_user_ids_for_hash(*, hashed_card_number: str) -> list[str]:
    """Cross-app contract (fraud): distinct user ids, sorted, whose active card or recorded card history
    (old or new side of a change) has this keyed hash. Empty for an empty hash."""
    if not hashed_card_number:
        return []
    active = DebitCard.objects.filter(hashed_card_number=hashed_card_number).values_list("user_id", flat=True)
    history = DebitCardChange.objects.filter(
        Q(old_hashed_card_number=hashed_card_number) | Q(new_hashed_card_number=hashed_card_number)
    ).values_list("user_id", flat=True)
    return sorted(set(active) | set(history))
