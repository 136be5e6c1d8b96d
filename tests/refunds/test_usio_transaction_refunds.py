"""Refunds of a Usio transaction with no payment record (SPEC §8): looked up at Usio first (the card-debit accounts
in order), refused if unknown, bounded by the transaction's amount minus Usio's RefundedAmount and our refunds."""

from decimal import Decimal

import pytest

from refunds.models import Refund
from tests.refunds.conftest import (
    merchant_id,
    new_key,
    post_refund,
    refund_body,
    refund_calls,
    snapshot,
    usio_calls,
    usio_transaction,
)

pytestmark = pytest.mark.django_db


def lookups(sandbox) -> list[dict]:
    return usio_calls(sandbox, "usio.GetTransactionDetails")


def test_refund_of_a_usio_transaction_found_on_the_second_account(sandbox, support, external_card_transaction):
    confirmation = external_card_transaction("40.00", account="float_debit")
    response = post_refund(support, refund_body(confirmation_id=confirmation, amount="15.00"))

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["status"], data["target"], data["method"], data["account_type"]) == \
        ("COMPLETED", "usio_transaction", "card_refund", "debit")
    assert (data["payment_id"], data["confirmation_id"]) == (None, confirmation)
    assert data["merchant_account"] == merchant_id("float_debit")
    # subscription first (not there), then float_debit (found): read-only lookups, then one refund.
    assert [c["body"]["Confirmation"] for c in lookups(sandbox)] == [confirmation, confirmation]
    [call] = refund_calls(sandbox)
    assert (call["operation"], call["body"]["ConfirmationID"], call["body"]["Amount"]) == \
        ("usio.SubmitCCVoid", confirmation, "15.00")
    assert usio_transaction(sandbox, confirmation)["refunded"] == "15.00"
    assert usio_transaction(sandbox, data["refund_confirmation_id"])["original_confirmation"] == confirmation


def test_the_balance_counts_usio_refunds_and_ours(sandbox, support, external_card_transaction):
    from integrations.usio import usio_client

    confirmation = external_card_transaction("40.00", account="subscription")
    usio_client("subscription").void_or_refund(confirmation_id=confirmation, amount=Decimal("10.00"))  # elsewhere
    first = post_refund(support, refund_body(confirmation_id=confirmation, amount="20.00"))
    assert first.json()["status"] == "COMPLETED"
    before, calls = snapshot(), len(refund_calls(sandbox))

    over = post_refund(support, refund_body(confirmation_id=confirmation, amount="10.01"))

    assert over.status_code == 422
    error = over.json()["error"]
    assert (error["code"], error["details"]["refundable"], error["details"]["refunded"]) == \
        ("refund_exceeds_balance", "10.00", "30.00")
    assert snapshot() == before and len(refund_calls(sandbox)) == calls
    assert post_refund(support, refund_body(confirmation_id=confirmation, amount="10.00")).json()["status"] == \
        "COMPLETED"
    assert usio_transaction(sandbox, confirmation)["refunded"] == "40.00"


def test_unknown_confirmation_is_422_and_no_refund_is_sent(sandbox, support):
    before = snapshot()
    key = new_key()
    response = post_refund(support, refund_body(confirmation_id="U0123456789ABCDEF"), key=key)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "usio_transaction_not_found"
    assert error["details"]["usio_accounts"] == ["subscription", "float_debit", "loan"]
    assert snapshot() == before
    assert len(lookups(sandbox)) == 3 and refund_calls(sandbox) == []
    # Refused before the key was claimed: nothing stored, the key is free for a corrected request.
    from core.models import IdempotencyKey

    assert not IdempotencyKey.objects.filter(key=key).exists()


def test_a_confirmation_of_one_of_our_payments_must_go_by_payment_id(sandbox, support, card_payment):
    payment = card_payment()
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(confirmation_id=payment.confirmation_id))
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]["payment_id"]) == ("confirmation_has_payment", str(payment.pk))
    assert snapshot() == before and len(usio_calls(sandbox)) == calls  # not even a lookup


def test_a_usio_credit_is_not_refundable(sandbox, support, debit_card):
    from integrations.usio import usio_client

    credit = usio_client("subscription").pinless_credit(token="tok_x", amount=Decimal("5.00"), reference="ext-1")
    before, calls = snapshot(), len(refund_calls(sandbox))
    response = post_refund(support, refund_body(confirmation_id=credit.confirmation, amount="1.00"))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "refund_not_supported")
    assert response.json()["error"]["details"]["reason"] == "not_a_debit"
    assert snapshot() == before and len(refund_calls(sandbox)) == calls


def test_a_charged_back_transaction_is_not_refundable(sandbox, support, external_card_transaction):
    confirmation = external_card_transaction(account="float_debit")
    sandbox.control("POST", "usio/chargeback", {"confirmation": confirmation})
    before = snapshot()
    response = post_refund(support, refund_body(confirmation_id=confirmation))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "usio_transaction_not_refundable")
    assert response.json()["error"]["details"]["status"] == "chargeback"
    assert snapshot() == before and refund_calls(sandbox) == []


def test_an_ach_debit_without_payment_is_declined_by_usio(sandbox, support):
    """GetTransactionDetails does not say card or ACH (the adapter exposes no AccountType): SubmitCCVoid is tried
    and Usio refuses an ACH debit (5031): a FAILED refund, nothing held."""
    from integrations.usio import usio_client
    from tests.refunds.conftest import ACCOUNT, ROUTING

    ach = usio_client("float_debit").submit_ach_payment(
        routing_number=ROUTING, account_number=ACCOUNT, trans_code="27", amount=Decimal("25.00"),
        reference="ext-ach-1", first_name="A", last_name="B")
    data = post_refund(support, refund_body(confirmation_id=ach.confirmation)).json()
    assert (data["status"], data["failure_code"]) == ("FAILED", "5031")
    assert Refund.objects.get().status == "FAILED"


def test_usio_unreachable_during_the_lookup_is_503_and_nothing_written(sandbox, support, external_card_transaction):
    confirmation = external_card_transaction(account="float_debit")
    sandbox.fault("usio.GetTransactionDetails", "500")
    before = snapshot()
    key = new_key()
    response = post_refund(support, refund_body(confirmation_id=confirmation), key=key)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "usio_unavailable")
    assert snapshot() == before and refund_calls(sandbox) == []
    # A retry with the same key once Usio answers goes through.
    retry = post_refund(support, refund_body(confirmation_id=confirmation), key=key)
    assert retry.json()["status"] == "COMPLETED"


@pytest.mark.parametrize("confirmation", ["U 123", "x" * 65, "U123;drop"])
def test_malformed_confirmation_ids(sandbox, support, confirmation):
    response = post_refund(support, refund_body(confirmation_id=confirmation))
    assert response.status_code in (400, 422)
    code = response.json()["error"]["code"]
    assert code == ("validation_error" if len(confirmation) > 64 else "invalid_confirmation_id")
    assert Refund.objects.count() == 0 and usio_calls(sandbox) == []
