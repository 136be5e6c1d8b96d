"""Arbitrary-amount refunds (SPEC §8): a Usio PinlessCredit to the user's card (``debit``) or an ACH credit to a
bank account (``ach``), paid from REFUND_USIO_ACCOUNT; declines and missing instruments."""

import pytest
from django.conf import settings

from refunds.models import Refund
from tests.refunds.conftest import (
    ACCOUNT_ID,
    USER,
    merchant_id,
    post_refund,
    refund_body,
    refund_calls,
    snapshot,
    usio_calls,
    usio_transaction,
)

pytestmark = pytest.mark.django_db


def test_debit_is_a_pinless_credit_to_the_cards_credit_token(sandbox, support, debit_card):
    debit_card(credit_token="tok_credit_for_refund")
    response = post_refund(support, refund_body(account_type="debit", amount="7.50", loan_id="loan-9"))

    assert response.status_code == 201, response.content
    data = response.json()
    refund = Refund.objects.get()
    assert (data["status"], data["target"], data["method"], data["account_type"]) == \
        ("COMPLETED", "arbitrary", "card_credit", "debit")
    assert (data["payment_id"], data["confirmation_id"], data["loan_id"]) == (None, None, "loan-9")
    assert data["masked_card_number"] == "4242"
    [call] = refund_calls(sandbox)
    assert call["operation"] == "usio.PinlessCredit"
    assert (call["body"]["Amount"], call["body"]["AdditionalSearch"], call["body"]["AccountCode1"]) == \
        ("7.50", refund.reference, refund.reference)
    assert call["body"]["Token"] != "tok_credit_for_refund"  # the sandbox log redacts tokens
    entry = usio_transaction(sandbox, data["refund_confirmation_id"])
    assert (entry["transaction_type"], entry["merchant_id"], entry["amount"]) == \
        ("credit", merchant_id("float_credit"), "7.50")


def test_ach_is_an_ach_credit_to_the_named_bank_account(sandbox, support, bank_account):
    bank_account(account_type="savings")
    response = post_refund(support, refund_body(account_type="ach", account_id=ACCOUNT_ID, amount="9.99",
                                                subscription_id="sub-1"))
    assert response.status_code == 201, response.content
    data = response.json()
    refund = Refund.objects.get()
    assert (data["status"], data["method"], data["account_type"], data["subscription_id"]) == \
        ("COMPLETED", "ach_credit", "ach", "sub-1")
    assert data["masked_account_number"] == "5017"
    [call] = refund_calls(sandbox)
    assert (call["operation"], call["body"]["TransCode"], call["body"]["AdditionalSearch"]) == \
        ("usio.SubmitACHPayment", "32", refund.reference)
    assert refund.account_id == ACCOUNT_ID


def test_insufficient_prefunding_balance_fails_the_refund(sandbox, support, debit_card):
    debit_card()
    sandbox.control("PUT", f"usio/balances/{settings.USIO_ACCOUNTS['float_credit']['merchant_id']}",
                    {"balance": "5.00"})
    response = post_refund(support, refund_body(account_type="debit", amount="5.01"))
    data = response.json()
    assert (response.status_code, data["status"], data["failure_code"], data["failure_message"]) == \
        (201, "FAILED", "5040", "Insufficient prefunding balance")
    # A soft failure of ours, not the card's: the card stays valid.
    from cards.selectors import card_get

    assert card_get(user_id=USER).is_valid


def test_a_card_decline_fails_the_refund_and_leaves_the_card_alone(sandbox, support, debit_card):
    from cards.selectors import card_get

    debit_card(credit_token="decline_05")
    data = post_refund(support, refund_body(account_type="debit")).json()
    assert (data["status"], data["failure_code"], data["failure_message"]) == ("FAILED", "05", "Do not honor")
    assert card_get(user_id=USER).is_valid  # SPEC §2.2's rule is about payments; a refund invalidates nothing


@pytest.mark.parametrize(("setup", "body", "code"), [
    ("none", {"account_type": "debit"}, "debit_card_missing"),
    ("invalid_card", {"account_type": "debit"}, "debit_card_invalid"),
    ("none", {"account_type": "ach", "account_id": ACCOUNT_ID}, "bank_account_not_found"),
    ("account", {"account_type": "ach", "account_id": "another-account"}, "bank_account_not_found"),
])
def test_no_instrument_for_the_account_type(sandbox, support, debit_card, bank_account, setup, body, code):
    from cards.services import card_invalidate

    if setup == "invalid_card":
        debit_card()
        card_invalidate(user_id=USER, reason="test", actor="service:test")
    elif setup == "account":
        bank_account()
    before = snapshot()
    response = post_refund(support, refund_body(**body))
    assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    assert snapshot() == before
    assert usio_calls(sandbox) == []


@pytest.mark.parametrize(("body", "code"), [
    ({"account_type": "ach"}, "account_id_required"),
    ({"account_type": "debit", "account_id": ACCOUNT_ID}, "account_id_not_allowed"),
    ({"account_type": "ach", "account_id": "bad id!"}, "invalid_account_id"),
])
def test_account_id_rules(sandbox, support, bank_account, debit_card, body, code):
    bank_account()
    debit_card()
    response = post_refund(support, refund_body(**body))
    assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    assert Refund.objects.count() == 0 and usio_calls(sandbox) == []


def test_an_amount_above_the_limit_is_refused(sandbox, support, debit_card, settings):
    settings.MAX_PAYMENT_AMOUNT = "100.00"
    debit_card()
    response = post_refund(support, refund_body(account_type="debit", amount="100.01"))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "amount_over_limit")
    assert Refund.objects.count() == 0 and usio_calls(sandbox) == []


def test_no_account_number_or_token_in_logs_or_answers(sandbox, support, bank_account, debit_card, json_lines):
    from tests.refunds.conftest import ACCOUNT, ROUTING

    bank_account()
    debit_card(credit_token="tok_secret_credit_0001")
    answers = [post_refund(support, refund_body(account_type="ach", account_id=ACCOUNT_ID)).content.decode(),
               post_refund(support, refund_body(account_type="debit")).content.decode()]
    logged = "\n".join(str(line) for line in json_lines())
    assert "refund created" in logged
    for text in (*answers, logged):
        assert ACCOUNT not in text and ROUTING not in text and "tok_secret_credit_0001" not in text
