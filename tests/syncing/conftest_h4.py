"""Helpers of the token refresh, JPM sync, balance report and debit-fixer tests (imported by those modules)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from cards.models import DebitCard, DebitCardChange
from core.models import AuditEntry, DeadLetter

DEBIT = "tok_debit_000000000001"
CREDIT = "tok_credit_000000000001"


def chicago_now():
    return timezone.localtime(timezone.now(), ZoneInfo(settings.BUSINESS_TIME_ZONE))


def exp_this_month() -> str:
    now = chicago_now()
    return f"{now.month:02d}{now.year}"


def exp_in_years(years: int = 2) -> str:
    return f"12{chicago_now().year + years}"


def make_card(user_id: str, *, debit: str = DEBIT, credit: str = CREDIT, card_exp: str | None = None,
              last4: str = "4242", age_days: int = 0) -> DebitCard:
    """Save a card through the service; ``age_days`` back-dates ``created_on`` (test setup of an old card)."""
    from cards.services import card_save

    card, _ = card_save(user_id=user_id, masked_card_number=last4, card_exp=card_exp or exp_in_years(2),
                        transaction_reference_id=credit, debit_transaction_reference_id=debit, actor="service:test")
    if age_days:
        DebitCard.objects.filter(pk=card.pk).update(created_on=timezone.now() - timedelta(days=age_days))
        card.refresh_from_db()
    return card


def cards_state() -> tuple:
    """Everything the card pipelines may write: a failure must leave it unchanged."""
    return (list(DebitCard.objects.order_by("pk").values()), DebitCardChange.objects.count(),
            AuditEntry.objects.count())


def refresh_calls(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("usio") if r["operation"].endswith("RefreshToken")]


def dead_letters(task_name: str) -> list[DeadLetter]:
    return list(DeadLetter.objects.filter(task_name=task_name).order_by("pk"))
