"""Helpers of the Usio sync tests (imported by ``test_usio_sync*.py``): payments made through the API, the
windows that cover them, and a snapshot of everything a sync may change."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.business_days import chicago_date
from core.models import OutboxEvent
from payments.models import Payment, PaymentStatusChange
from syncing.models import UsioTransaction
from syncing.usio_sync import usio_chicago_day_window
from tests.payments.conftest import DEBIT_TOKEN, card_body, payment_body, post_payment

RETURNED = "7391462899"  # + NN: settles, then returned RNN at 10:00 CT the next Chicago day
SETTLES = "739146285017"


def merchant_id(account: str) -> str:
    return settings.USIO_ACCOUNTS[account]["merchant_id"]


def float_ach(service, bank_account, account_number: str = SETTLES, **overrides) -> Payment:
    """A float ACH debit (Usio float_debit) from a bank account with ``account_number``, through the API."""
    bank_account(account_number=account_number, **{k: v for k, v in overrides.items() if k == "user_id"})
    response = post_payment(service, payment_body(**overrides))
    assert response.status_code in (201, 202), response.content
    return Payment.objects.get(pk=response.json()["id"])


def card_payment(service, debit_card, token: str = DEBIT_TOKEN) -> Payment:
    """A pinless float debit with ``token`` (``timeout``: left PROCESSING), through the API."""
    debit_card(debit_token=token)
    response = post_payment(service, card_body())
    assert response.status_code in (201, 202), response.content
    return Payment.objects.get(pk=response.json()["id"])


def next_chicago_day_window() -> tuple[datetime, datetime]:
    """The Chicago day after today: the day a ``99NN`` account submitted today is returned (sandbox)."""
    return usio_chicago_day_window(chicago_date(timezone.now()) + timedelta(days=1))


def today_window() -> tuple[datetime, datetime]:
    return usio_chicago_day_window(chicago_date(timezone.now()))


def around(payment: Payment, minutes: int = 5) -> tuple[datetime, datetime]:
    """A transactions window around the payment's submission (the sandbox clock was not moved before it)."""
    return payment.created_at - timedelta(minutes=minutes), timezone.now() + timedelta(minutes=minutes)


def events(payment: Payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


def changes(payment: Payment) -> list[tuple]:
    return list(PaymentStatusChange.objects.filter(payment=payment).order_by("id")
                .values_list("from_status", "to_status", "source"))


def state() -> dict:
    """Everything a sync writes: staging rows (with ``updated_at``), payments, history, events."""
    return {
        "staged": list(UsioTransaction.objects.order_by("pk").values()),
        "payments": list(Payment.objects.order_by("pk").values()),
        "history": list(PaymentStatusChange.objects.order_by("pk").values()),
        "events": list(OutboxEvent.objects.order_by("pk").values_list("pk", "type")),
    }
