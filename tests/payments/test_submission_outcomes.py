"""What the processor's answer does to the payment (SPEC §5, §2.2): declines soft and hard, ACH rejections, unknown
outcomes (timeout, 5xx, malformed answer) left PROCESSING for the reconciler, requests that certainly never reached
the processor failed at once, RTP checks. Every processor is reached over HTTP (the sandbox)."""

import socket
import time

import pytest
from django.conf import settings

from cards.selectors import card_get
from core.models import IdempotencyKey, OutboxEvent
from payments.models import Payment
from tests.payments.conftest import (
    ACCOUNT_REJECTED,
    CREDIT_TOKEN,
    USER,
    card_body,
    new_key,
    payment_body,
    post_payment,
    processor_calls,
    reference_of,
)

pytestmark = pytest.mark.django_db


def history(payment) -> list[tuple]:
    return list(payment.status_changes.values_list("from_status", "to_status", "source", "return_code"))


def events() -> list[str]:
    return list(OutboxEvent.objects.values_list("type", flat=True))


# --- card declines ---------------------------------------------------------------------------------------------
def test_soft_decline_fails_the_payment_and_keeps_the_card(sandbox, service, debit_card):
    debit_card(debit_token="decline_51")
    response = post_payment(service, card_body())
    assert response.status_code == 201
    data = response.json()
    assert (data["payment_status"], data["return_code"], data["return_info"], data["confirmation_id"]) == \
        ("FAILED", "51", "Insufficient funds", None)
    assert card_get(user_id=USER).is_valid
    payment = Payment.objects.get()
    assert history(payment) == [(None, "PROCESSING", "api", None), ("PROCESSING", "FAILED", "api", "51")]
    assert payment.return_date is None  # a decline is not a return
    assert events() == ["FLOAT_DEBIT_FAILED"]
    assert len(processor_calls(sandbox, "usio.SubmitTokenPayment")) == 1


@pytest.mark.parametrize("code", ["57", "82"])
def test_other_soft_declines_keep_the_card(sandbox, service, debit_card, code):
    debit_card(debit_token=f"decline_{code}")
    assert post_payment(service, card_body()).json()["return_code"] == code
    assert card_get(user_id=USER).is_valid


@pytest.mark.parametrize(("token", "code"), [("decline_05", "05"), ("decline_14", "14"), ("unknown", "5030")])
def test_hard_decline_invalidates_the_card(sandbox, service, debit_card, token, code):
    debit_card(debit_token=token)
    data = post_payment(service, card_body()).json()
    assert (data["payment_status"], data["return_code"]) == ("FAILED", code)
    card = card_get(user_id=USER)
    assert not card.is_valid and card.invalid_date is not None
    assert code in card.invalid_reason
    # The next card payment is refused before any processor call.
    calls = len(processor_calls(sandbox))
    assert post_payment(service, card_body()).json()["error"]["code"] == "debit_card_invalid"
    assert len(processor_calls(sandbox)) == calls


def test_hard_decline_of_a_pinless_credit_uses_the_credit_token(sandbox, service, debit_card):
    debit_card(credit_token="decline_05")
    data = post_payment(service, card_body(payment_type="credit")).json()
    assert (data["payment_status"], data["return_code"]) == ("FAILED", "05")
    assert not card_get(user_id=USER).is_valid
    [call] = processor_calls(sandbox)
    assert call["operation"] == "usio.PinlessCredit"


def test_insufficient_prefunding_balance_is_not_the_cards_fault(sandbox, service, debit_card):
    debit_card()
    sandbox.control("PUT", f"usio/balances/{settings.USIO_ACCOUNTS['float_credit']['merchant_id']}",
                    {"balance": "1.00"})
    data = post_payment(service, card_body(payment_type="credit")).json()
    assert (data["payment_status"], data["return_code"]) == ("FAILED", "5040")
    assert card_get(user_id=USER).is_valid


# --- ACH rejections ---------------------------------------------------------------------------------------------
def test_usio_ach_rejected_at_once(sandbox, service, bank_account):
    bank_account(account_number=ACCOUNT_REJECTED)
    data = post_payment(service, payment_body()).json()
    assert (data["payment_status"], data["return_code"], data["return_info"]) == ("FAILED", "R02", "Account closed")
    assert data["return_date"] is None
    assert events() == ["FLOAT_DEBIT_FAILED"]


def test_jpm_accepts_first_and_rejects_later(sandbox, service, bank_account):
    """JPM answers 202 to a submission it will reject: the payment is ACHSENT; the rejection arrives by webhook."""
    bank_account(account_number=ACCOUNT_REJECTED)
    data = post_payment(service, payment_body(purpose="subscription")).json()
    assert data["payment_status"] == "ACHSENT"
    [entry] = sandbox.control("GET", "jpm/ledger")["ledger"]
    assert entry["status"] == "REJECTED" and entry["endToEndId"] == data["confirmation_id"]


# --- outcome unknown: PROCESSING, 202, key kept in progress -------------------------------------------------------
def assert_left_processing(response, sandbox, operation: str, key: str):
    assert response.status_code == 202, response.content
    data = response.json()
    payment = Payment.objects.get()
    assert data["payment_status"] == payment.payment_status == "PROCESSING"
    assert data["id"] == str(payment.pk)
    assert history(payment) == [(None, "PROCESSING", "api", None)]
    assert events() == []
    record = IdempotencyKey.objects.get(key=key)
    assert (record.status, record.resource_id) == ("in_progress", str(payment.pk))
    calls = sandbox.wait_for_requests(operation)
    assert len(calls) == 1 and reference_of(calls[0]) == payment.reference
    return payment


def test_card_timeout_leaves_the_payment_processing(sandbox, service, debit_card):
    debit_card(debit_token="timeout")
    key = new_key()
    started = time.monotonic()
    response = post_payment(service, card_body(), key=key)
    assert time.monotonic() - started < 3.0  # the client's read timeout (1.5 s), not the sandbox's hang (3 s)
    payment = assert_left_processing(response, sandbox, "usio.SubmitTokenPayment", key)
    # The sandbox processed it: the reconciler will find it by our reference.
    [entry] = sandbox.control("GET", "usio/ledger")["transactions"]
    assert entry["reference"] == payment.reference
    assert card_get(user_id=USER).is_valid


@pytest.mark.parametrize(("purpose", "operation"), [("float", "usio.SubmitACHPayment"),
                                                    ("subscription", "jpm.payments")])
@pytest.mark.parametrize("mode", ["timeout", "500", "malformed"])
def test_ach_unknown_outcomes_leave_the_payment_processing(sandbox, service, bank_account, purpose, operation,
                                                           mode):
    """Timeout and malformed answers may have been processed; so may a 5xx in real life (a gateway error after
    the processor acted), although processors.md calls it retryable: never FAILED, the reconciler verifies."""
    bank_account()
    sandbox.fault(operation, mode)
    key = new_key()
    assert_left_processing(post_payment(service, payment_body(purpose=purpose), key=key), sandbox, operation, key)


def test_retry_while_processing_then_after_the_lease_then_after_the_reconciler(sandbox, service, debit_card):
    from payments.status import payment_apply_status

    debit_card(debit_token="timeout")
    key = new_key()
    first = post_payment(service, card_body(), key=key)
    payment = assert_left_processing(first, sandbox, "usio.SubmitTokenPayment", key)

    # While the key's lease runs: 409, nothing sent.
    again = post_payment(service, card_body(), key=key)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "idempotency_in_progress")

    # After the lease (the first request's process is presumed dead): the payment as it is now, 202, no new call.
    IdempotencyKey.objects.filter(key=key).update(lease_expires_at="2000-01-01T00:00:00Z")
    stale = post_payment(service, card_body(), key=key)
    assert stale.status_code == 202 and stale.json() == first.json()
    assert stale["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get(key=key).status == "in_progress"

    # The reconciler resolves the payment; the next retry after the lease gets 201, stored for good.
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="reconciler", actor="reconciler",
                         confirmation_id="URECONCILED00000")
    IdempotencyKey.objects.filter(key=key).update(lease_expires_at="2000-01-01T00:00:00Z")
    resolved = post_payment(service, card_body(), key=key)
    assert resolved.status_code == 201
    assert (resolved.json()["payment_status"], resolved.json()["confirmation_id"]) == \
        ("COMPLETED", "URECONCILED00000")
    replay = post_payment(service, card_body(), key=key)
    assert (replay.status_code, replay.json()) == (201, resolved.json())
    assert len(sandbox.wait_for_requests("usio.SubmitTokenPayment")) == 1
    assert Payment.objects.count() == 1


# --- never sent: FAILED at once (safe: nothing can have been processed) -------------------------------------------
def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_processor_unreachable_fails_the_payment(sandbox, service, debit_card, settings):
    debit_card()
    settings.USIO_BASE_URL = f"{_closed_port_url()}/usio"
    response = post_payment(service, card_body())
    assert response.status_code == 201
    data = response.json()
    assert (data["payment_status"], data["return_info"], data["return_code"]) == \
        ("FAILED", "processor_unavailable", None)
    assert card_get(user_id=USER).is_valid
    assert IdempotencyKey.objects.get().status == "completed"


def test_jpm_token_endpoint_failure_fails_the_payment_without_submitting(sandbox, service, bank_account):
    bank_account()
    sandbox.fault("jpm.token", "500")
    data = post_payment(service, payment_body(purpose="subscription")).json()
    assert (data["payment_status"], data["return_info"]) == ("FAILED", "processor_unavailable")
    assert processor_calls(sandbox, "jpm.payments") == []


def test_refused_credentials_fail_the_payment(sandbox, service, debit_card, settings):
    debit_card()
    settings.USIO_ACCOUNTS = {**settings.USIO_ACCOUNTS,
                              "float_debit": {**settings.USIO_ACCOUNTS["float_debit"], "password": "wrong"}}
    data = post_payment(service, card_body()).json()
    assert (data["payment_status"], data["return_info"]) == ("FAILED", "processor_auth_error")
    assert card_get(user_id=USER).is_valid


def test_unconfigured_merchant_account_fails_the_payment(sandbox, service, debit_card, settings):
    debit_card()
    settings.USIO_ACCOUNTS = {**settings.USIO_ACCOUNTS,
                              "float_credit": {**settings.USIO_ACCOUNTS["float_credit"], "login": ""}}
    data = post_payment(service, card_body(payment_type="credit")).json()
    assert (data["payment_status"], data["return_info"]) == ("FAILED", "processor_not_configured")
    assert processor_calls(sandbox) == []


# --- RTP ----------------------------------------------------------------------------------------------------------
def rtp_body(**overrides) -> dict:
    return payment_body(payment_type="credit", payment_method="rtp", **overrides)


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_rtp_check_failure_fails_the_payment_without_a_credit(sandbox, service, bank_account, debit_card, mode):
    bank_account()
    debit_card()
    sandbox.fault("usio.RTPAccountCheck", mode)
    data = post_payment(service, rtp_body(rtp_mode="fallback")).json()
    assert (data["payment_status"], data["return_info"]) == ("FAILED", "rtp_check_failed")
    assert [c["operation"] for c in processor_calls(sandbox)] == ["usio.RTPAccountCheck"]


def test_rtp_credit_timeout_is_left_processing(sandbox, service, bank_account, debit_card):
    bank_account()
    debit_card()
    sandbox.fault("usio.RTPCredit", "timeout")
    key = new_key()
    payment = assert_left_processing(post_payment(service, rtp_body(), key=key), sandbox, "usio.RTPCredit", key)
    assert payment.payment_method == "rtp"


def test_rtp_fallback_timeout_is_left_processing_as_ach(sandbox, service, bank_account, debit_card):
    """The switch to ACH is recorded before the ACH request is sent, so the reconciler looks for an ACH entry."""
    from tests.payments.conftest import ROUTING_NOT_RTP

    bank_account(routing_number=ROUTING_NOT_RTP)
    debit_card()
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    key = new_key()
    response = post_payment(service, rtp_body(rtp_mode="fallback"), key=key)
    payment = assert_left_processing(response, sandbox, "usio.SubmitACHPayment", key)
    assert payment.payment_method == "ach" and response.json()["payment_method"] == "ach"


def test_rtp_credit_declined_does_not_touch_the_card(sandbox, service, bank_account, debit_card):
    bank_account()
    debit_card(credit_token=CREDIT_TOKEN)
    sandbox.control("PUT", f"usio/balances/{settings.USIO_ACCOUNTS['float_credit']['merchant_id']}",
                    {"balance": "0.00"})
    data = post_payment(service, rtp_body()).json()
    assert (data["payment_status"], data["return_code"]) == ("FAILED", "5040")
    assert card_get(user_id=USER).is_valid
