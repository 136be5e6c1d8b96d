"""Refunds tied to one of our payments (SPEC §8): card debits through SubmitCCVoid, Usio ACH debits through an ACH
credit, the refundable balance, REFUNDED with its event, and every refusal (nothing written, nothing sent)."""

from decimal import Decimal

import pytest

from core.models import AuditEntry, IdempotencyKey, OutboxEvent
from payments.models import Payment
from refunds.models import Refund
from tests.refunds.conftest import (
    OTHER_USER,
    USER,
    held,
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


def events() -> list[str]:
    return list(OutboxEvent.objects.order_by("position").values_list("type", flat=True))


def history(payment) -> list[tuple]:
    return list(payment.status_changes.values_list("from_status", "to_status", "source"))


# --- card payments: SubmitCCVoid -----------------------------------------------------------------------------------
def test_partial_card_refund_completes_and_leaves_the_payment_completed(sandbox, support, card_payment):
    payment = card_payment("50.00")
    key = new_key()
    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount="20.00"), key=key)

    assert response.status_code == 201, response.content
    data = response.json()
    refund = Refund.objects.get()
    assert data["id"] == str(refund.pk)
    assert (data["status"], data["amount"], data["target"], data["method"], data["account_type"]) == \
        ("COMPLETED", "20.00", "payment", "card_refund", "debit")
    assert data["payment_id"] == str(payment.pk)
    assert data["confirmation_id"] == payment.confirmation_id  # the Usio transaction refunded
    assert data["refund_confirmation_id"] and data["refund_confirmation_id"] != payment.confirmation_id
    assert data["date_refunded"] is not None
    assert data["merchant_account"] == merchant_id("float_debit")  # the payment's own account
    assert data["masked_card_number"] == payment.masked_card_number

    [call] = refund_calls(sandbox)
    assert call["operation"] == "usio.SubmitCCVoid"
    assert (call["body"]["ConfirmationID"], call["body"]["Amount"]) == (payment.confirmation_id, "20.00")
    original = usio_transaction(sandbox, payment.confirmation_id)
    assert original["refunded"] == "20.00"
    entry = usio_transaction(sandbox, data["refund_confirmation_id"])
    # (The sandbox's request log masks digit runs such as merchant ids; its ledger does not.)
    assert (entry["original_confirmation"], entry["merchant_id"]) == (payment.confirmation_id,
                                                                      merchant_id("float_debit"))

    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"
    assert events() == ["FLOAT_DEBIT_COMPLETED"]  # no REFUNDED event for a partial refund
    assert held(payment) == Decimal("20.00")
    assert key_is_completed(key, refund)


def key_is_completed(key: str, refund: Refund) -> bool:
    record = IdempotencyKey.objects.get(key=key)
    return (record.status, record.resource_id, record.response_status_code) == ("completed", str(refund.pk), 201)


def test_refunds_up_to_the_full_amount_make_the_payment_refunded_with_its_event(sandbox, support, card_payment):
    payment = card_payment("50.00", purpose="subscription")
    first = post_refund(support, refund_body(payment_id=str(payment.pk), amount="30.00"))
    assert first.json()["status"] == "COMPLETED"
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"

    # The rest, by the payment's confirmation id this time.
    second = post_refund(support, refund_body(payment_id=payment.confirmation_id, amount="20.00"))
    assert second.status_code == 201
    assert second.json()["status"] == "COMPLETED"

    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    assert payment.event_type == "SUBSCRIPTION_REFUNDED"
    assert history(payment)[-1] == ("COMPLETED", "REFUNDED", "api")
    assert events() == ["SUBSCRIPTION_COMPLETED", "SUBSCRIPTION_REFUNDED"]
    event = OutboxEvent.objects.get(type="SUBSCRIPTION_REFUNDED")
    assert (event.aggregate_id, event.data["payment_status"]) == (str(payment.pk), "REFUNDED")
    assert usio_transaction(sandbox, payment.confirmation_id)["refunded"] == "50.00"
    assert payment.status_changes.last().actor.startswith("support:")

    # Nothing is left: a further cent is refused (the payment is no longer COMPLETED), nothing sent.
    calls = len(usio_calls(sandbox))
    refused = post_refund(support, refund_body(payment_id=str(payment.pk), amount="0.01"))
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "payment_not_refundable"
    assert len(usio_calls(sandbox)) == calls
    assert Refund.objects.count() == 2


def test_one_refund_of_the_whole_amount(sandbox, support, card_payment):
    payment = card_payment("12.34")
    response = post_refund(support, refund_body(payment_id=payment.reference, amount="12.34"))
    assert response.json()["status"] == "COMPLETED"
    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    assert events() == ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_REFUNDED"]


def test_over_the_remaining_balance_is_refused_and_nothing_sent(sandbox, support, card_payment):
    payment = card_payment("50.00")
    post_refund(support, refund_body(payment_id=str(payment.pk), amount="45.00"))
    before, calls = snapshot(), len(usio_calls(sandbox))

    key = new_key()
    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount="5.01"), key=key)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "refund_exceeds_balance"
    assert error["details"]["refundable"] == "5.00"
    assert error["details"]["payment_amount"] == "50.00"
    assert snapshot() == before
    assert len(usio_calls(sandbox)) == calls
    # The refusal is the key's answer (a corrected request takes a new key) ...
    again = post_refund(support, refund_body(payment_id=str(payment.pk), amount="5.01"), key=key)
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (422, response.json(), "true")
    # ... and exactly the rest still fits.
    rest = post_refund(support, refund_body(payment_id=str(payment.pk), amount="5.00"))
    assert rest.json()["status"] == "COMPLETED"


def test_usio_over_refund_decline_fails_the_refund_and_releases_the_balance(sandbox, support, card_payment):
    """Someone refunded part of the payment at Usio outside this service: our balance allows more than Usio
    does; Usio declines (5032) and the refund is FAILED with its code — nothing held."""
    from integrations.usio import usio_client

    payment = card_payment("50.00")
    usio_client("float_debit").void_or_refund(confirmation_id=payment.confirmation_id, amount=Decimal("30.00"))

    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount="40.00"))

    assert response.status_code == 201
    data = response.json()
    assert (data["status"], data["failure_code"], data["failure_message"]) == \
        ("FAILED", "5032", "Amount exceeds the refundable amount")
    assert data["refund_confirmation_id"] is None and data["date_refunded"] is None
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"
    assert held(payment) == 0
    assert usio_transaction(sandbox, payment.confirmation_id)["refunded"] == "30.00"


def test_usio_unknown_confirmation_decline_fails_the_refund(sandbox, support, card_payment):
    payment = card_payment("50.00")
    sandbox.reset()  # Usio forgot the transaction: SubmitCCVoid answers 5030
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    data = response.json()
    assert (response.status_code, data["status"], data["failure_code"]) == (201, "FAILED", "5030")
    assert len(refund_calls(sandbox)) == 1


def test_a_charged_back_card_debit_is_refused_by_usio(sandbox, support, card_payment):
    """Usio knows of the chargeback before our sync does: 5031, FAILED."""
    payment = card_payment("50.00")
    sandbox.control("POST", "usio/chargeback", {"confirmation": payment.confirmation_id})
    data = post_refund(support, refund_body(payment_id=str(payment.pk))).json()
    assert (data["status"], data["failure_code"]) == ("FAILED", "5031")


# --- Usio ACH debits: an ACH credit back to the payment's bank account ---------------------------------------------
@pytest.mark.parametrize(("account_type", "trans_code"), [(None, "22"), ("savings", "32")])
def test_ach_payment_refund_is_an_ach_credit_to_its_bank_account(sandbox, support, ach_payment, account_type,
                                                                 trans_code):
    payment = ach_payment("80.00", account_type=account_type)
    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount="80.00"))

    assert response.status_code == 201, response.content
    data = response.json()
    refund = Refund.objects.get()
    assert (data["status"], data["method"], data["account_type"]) == ("COMPLETED", "ach_credit", "ach")
    assert data["confirmation_id"] is None  # a credit, not a refund of a Usio transaction
    assert data["masked_account_number"] == payment.masked_account_number
    assert data["merchant_account"] == merchant_id("float_credit")  # REFUND_USIO_ACCOUNT
    debit, call = usio_calls(sandbox, "usio.SubmitACHPayment")  # the payment's debit, then the refund's credit
    assert (debit["body"]["AdditionalSearch"], debit["body"]["TransCode"]) == (payment.reference, "27" if
                                                                              trans_code == "22" else "37")
    assert len(refund_calls(sandbox)) == 2
    body = call["body"]
    assert (body["TransCode"], body["Amount"], body["AdditionalSearch"]) == (trans_code, "80.00", refund.reference)
    entry = usio_transaction(sandbox, data["refund_confirmation_id"])
    assert (entry["transaction_type"], entry["reference"], entry["merchant_id"]) == \
        ("credit", refund.reference, merchant_id("float_credit"))

    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    assert events() == ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_REFUNDED"]


def test_an_ach_debit_not_yet_completed_is_not_refundable(sandbox, support, ach_payment):
    payment = ach_payment(complete=False)  # ACHSENT: it may still be returned
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "payment_not_refundable", "message": response.json()["error"][
        "message"], "details": {"payment_status": "ACHSENT"}}
    assert snapshot() == before and len(usio_calls(sandbox)) == calls


def test_ach_refund_when_the_bank_account_is_gone(sandbox, support, ach_payment):
    from bank_accounts.services import bank_account_delete

    payment = ach_payment()
    bank_account_delete(user_id=USER, account_id=payment.account_id, actor="service:test")
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "bank_account_not_found")
    assert snapshot() == before and len(usio_calls(sandbox)) == calls


def test_a_rejected_ach_credit_fails_the_refund(sandbox, support, service, bank_account):
    """The bank account ends 9802: Usio rejects the credit at once (R02) — as it would have the debit, so the
    debit here is made before the account changes."""
    from bank_accounts.services import bank_account_save
    from payments.status import payment_apply_status
    from tests.payments.conftest import ACCOUNT_ID, ROUTING, payment_body, post_payment

    bank_account()
    payment = Payment.objects.get(pk=post_payment(service, payment_body(amount="30.00")).json()["id"])
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach", actor="check_ach")
    bank_account_save(user_id=USER, account_id=ACCOUNT_ID, account_number="7391462898" + "02",
                      routing_number=ROUTING, actor="service:test")
    data = post_refund(support, refund_body(payment_id=str(payment.pk), amount="30.00")).json()
    assert (data["status"], data["failure_code"], data["failure_message"]) == ("FAILED", "R02", "Account closed")
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"


# --- refusals: precise 4xx, nothing written, nothing sent ----------------------------------------------------------
def _assert_refused(response, sandbox, before, calls, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert snapshot() == before
    assert len(usio_calls(sandbox)) == calls


def test_jpm_payments_are_not_refundable(sandbox, support, service, bank_account):
    from payments.status import payment_apply_status
    from tests.payments.conftest import payment_body, post_payment

    bank_account()
    payment = Payment.objects.get(pk=post_payment(service, payment_body(purpose="subscription")).json()["id"])
    assert payment.payment_provider == "jpm"
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach", actor="check_ach")
    before, calls, jpm_calls = snapshot(), len(usio_calls(sandbox)), len(sandbox.requests(service="jpm"))
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    _assert_refused(response, sandbox, before, calls, 422, "refund_not_supported")
    assert response.json()["error"]["details"]["reason"] == "jpm_payment"
    assert len(sandbox.requests(service="jpm")) == jpm_calls


def test_another_users_payment_is_refused(sandbox, support, card_payment):
    payment = card_payment(user_id=OTHER_USER)
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=str(payment.pk), user_id=USER))
    _assert_refused(response, sandbox, before, calls, 422, "payment_user_mismatch")


def test_unknown_payment_is_refused(sandbox, support):
    before = snapshot()
    response = post_refund(support, refund_body(payment_id="U0000000000000000"))
    _assert_refused(response, sandbox, before, 0, 422, "payment_not_found")


def test_a_credit_is_not_refundable(sandbox, support, service, debit_card):
    debit_card()
    payment_id = post_payment_credit(service)
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=payment_id))
    _assert_refused(response, sandbox, before, calls, 422, "refund_not_supported")
    assert response.json()["error"]["details"]["reason"] == "not_a_debit"


def post_payment_credit(service) -> str:
    from tests.payments.conftest import card_body, post_payment

    response = post_payment(service, card_body(payment_type="credit"))
    assert response.json()["payment_status"] == "COMPLETED"
    return response.json()["id"]


def test_a_failed_payment_is_not_refundable(sandbox, support, service, debit_card):
    from tests.payments.conftest import card_body, post_payment

    debit_card(debit_token="decline_51")
    payment_id = post_payment(service, card_body()).json()["id"]
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=payment_id))
    _assert_refused(response, sandbox, before, calls, 422, "payment_not_refundable")


@pytest.mark.parametrize(("amount", "code"), [("0", "invalid_amount"), ("0.00", "invalid_amount"),
                                              ("-5.00", "invalid_amount"), ("1.001", "invalid_amount"),
                                              ("abc", "invalid_amount"), ("50.01", "refund_exceeds_balance"),
                                              ("5000.01", "amount_over_limit")])
def test_bad_amounts(sandbox, support, card_payment, amount, code):
    payment = card_payment("50.00")
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=str(payment.pk), amount=amount))
    _assert_refused(response, sandbox, before, calls, 422, code)


def test_a_refund_is_audited_with_the_support_identity(sandbox, support, card_payment):
    payment = card_payment()
    response = post_refund(support, refund_body(payment_id=str(payment.pk)), REMOTE_ADDR="10.1.2.3")
    data = response.json()
    assert data["support_name"].startswith("test-support-")
    assert (data["support_email"], data["support_last_ip"]) == ("", "10.1.2.3")
    entry = AuditEntry.objects.get(action="refund.create")
    assert (entry.target_id, entry.user_id, entry.reason) == (data["id"], USER, "customer complaint #42")
    assert entry.actor == f"support:{data['support_name']}"
    assert entry.changes["amount"] == "10.00"


def test_settings_choose_the_payout_account(sandbox, support, ach_payment, settings):
    settings.REFUND_USIO_ACCOUNT = "loan"
    payment = ach_payment()
    data = post_refund(support, refund_body(payment_id=str(payment.pk))).json()
    assert data["merchant_account"] == settings.USIO_ACCOUNTS["loan"]["merchant_id"]
    assert usio_transaction(sandbox, data["refund_confirmation_id"])["merchant_id"] == \
        settings.USIO_ACCOUNTS["loan"]["merchant_id"]


def test_a_card_payment_on_an_unconfigured_merchant_account(sandbox, support, card_payment):
    payment = card_payment()
    Payment.objects.filter(pk=payment.pk).update(merchant_account="00000000")  # an account since removed
    before, calls = snapshot(), len(usio_calls(sandbox))
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    _assert_refused(response, sandbox, before, calls, 422, "refund_not_supported")
    assert response.json()["error"]["details"]["reason"] == "merchant_account_not_configured"


def test_an_unconfigured_payout_account(sandbox, support, debit_card, settings):
    settings.REFUND_USIO_ACCOUNT = "nonexistent"
    debit_card()
    before = snapshot()
    response = post_refund(support, refund_body(account_type="debit"))
    _assert_refused(response, sandbox, before, 0, 422, "refund_not_supported")
    assert response.json()["error"]["details"]["reason"] == "usio_account_not_configured"
