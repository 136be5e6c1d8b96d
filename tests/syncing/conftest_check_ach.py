"""Fixtures and helpers of the check-ach tests (imported by ``tests/syncing/test_check_ach*.py``).

Payments are created through the real API (service key) against the sandbox; the test then places them in time
with a queryset ``.update(submit_date=...)`` and runs check-ach with ``now=`` (our clock) — the sandbox clock is
moved with ``sandbox.advance`` for JPM statuses.
"""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from core.business_days import CHICAGO
from core.models import DeadLetter, OutboxEvent
from payments.models import Payment, PaymentStatusChange
from tests.payments import conftest as payments_fixtures
from tests.payments.conftest import ACCOUNT, payment_body, post_payment

RETURNED_R02 = "7391462899" + "02"  # settles, then returned R02 (JPM: ISO AC04 after 2 days)
REJECTED_R03 = "7391462898" + "03"  # rejected at once with R03 (JPM: ACHSENT, then REJECTED AC01)


# The payments tests' fixtures, re-exported (bound by assignment: a test module binds them the same way).
bank_account, debit_card = payments_fixtures.bank_account, payments_fixtures.debit_card


def chicago(*args) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)


def state(payment) -> dict:
    """What check-ach may change on a payment: a payment left alone keeps all of it."""
    row = Payment.objects.filter(pk=payment.pk).values().get()
    return {
        "row": row,
        "changes": PaymentStatusChange.objects.filter(payment_id=payment.pk).count(),
        "events": list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                       .values_list("type", flat=True)),
    }


def totals() -> tuple[int, int, int]:
    """(status changes, outbox events, dead letters) in the whole database."""
    return PaymentStatusChange.objects.count(), OutboxEvent.objects.count(), DeadLetter.objects.count()


def events(payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


@pytest.fixture
def make_payment(sandbox, client_as, bank_account):
    """``make_payment(purpose=, payment_type=, account_number=, provider=, submit_date=)``: POST it through the API
    (a new user and bank account each time, so a return blocking one user never refuses the next payment) and
    return the Payment; ``submit_date`` (aware) moves it in time."""
    service = client_as("service")
    counter = itertools.count(1)

    def _make(*, purpose: str = "float", payment_type: str = "debit", account_number: str = ACCOUNT,
              provider: str | None = None, submit_date: datetime | None = None, method: str = "ach") -> Payment:
        n = next(counter)
        user_id, account_id = f"user-ca-{n}", f"acc-ca-{n}"
        bank_account(user_id=user_id, account_id=account_id, account_number=account_number)
        body = payment_body(user_id=user_id, account_id=account_id, purpose=purpose, payment_type=payment_type,
                            provider=provider, payment_method=method)
        response = post_payment(service, body)
        assert response.status_code == 201, response.content
        payment = Payment.objects.get(pk=response.json()["id"])
        if submit_date is not None:
            Payment.objects.filter(pk=payment.pk).update(submit_date=submit_date)
            payment.refresh_from_db()
        return payment

    return _make
