"""Database constraints of ``Refund`` (SPEC §2.4): a refund that breaks them cannot be stored, whatever the code."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from refunds.models import Refund

pytestmark = pytest.mark.django_db


def values(**fields) -> dict:
    base = {"user_id": "user-a", "amount": "10.00", "description": "why", "account_type": "debit",
            "target": "arbitrary", "method": "card_credit", "usio_account": "float_credit",
            "merchant_account": "29063410", "support_name": "support-key"}
    base.update(fields)
    return base


@pytest.mark.parametrize("fields", [
    {"amount": "0.00"}, {"amount": "-1.00"}, {"description": ""}, {"status": "DONE"}, {"account_type": "wire"},
    {"target": "payment"},  # a payment target without a payment
    {"method": "card_refund"},  # a card refund without the transaction it refunds
    {"method": "ach_credit", "account_type": "ach"},  # an ACH credit without a bank account
    {"status": "COMPLETED"},  # completed without Usio's confirmation and date
    {"status": "COMPLETED", "refund_confirmation_id": "U1"},
])
def test_constraints(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(**values(**fields))
    assert Refund.objects.count() == 0


def test_a_valid_refund_and_the_unique_refund_confirmation():
    Refund.objects.create(**values(status="COMPLETED", refund_confirmation_id="U1", date_refunded=timezone.now()))
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(**values(status="COMPLETED", refund_confirmation_id="U1", date_refunded=timezone.now()))
    assert Refund.objects.count() == 1
    assert len(Refund.objects.get().reference) == 32
