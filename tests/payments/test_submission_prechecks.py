"""Pre-checks and bad input (SPEC §5, issue "Bad input"): each a precise 4xx with its code, no payment row, no
history, no event, and not a single request to a processor."""

import pytest

from blocklist.services import blocklist_block
from cards.services import card_invalidate, card_toggle_failure
from core.models import IdempotencyKey
from payments.models import Payment
from tests.payments.conftest import (
    ACCOUNT,
    OTHER_USER,
    PAYMENTS_URL,
    ROUTING_NOT_RTP,
    USER,
    card_body,
    new_key,
    payment_body,
    post_payment,
    processor_calls,
    snapshot,
)

pytestmark = pytest.mark.django_db


def assert_refused(response, status: int, code: str, sandbox, before: dict):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code, response.json()
    assert snapshot() == before
    assert Payment.objects.count() == 0
    assert processor_calls(sandbox) == [] and sandbox.requests() == []


# --- state pre-checks: the refusal is stored on the key -----------------------------------------------------
def test_blocked_user_cannot_pay_by_ach(sandbox, service, bank_account):
    bank_account()
    blocklist_block(user_id=USER, reason="R02 return", actor="support:test")
    before = snapshot()
    key = new_key()
    response = post_payment(service, payment_body(), key=key)
    assert_refused(response, 422, "user_blocklisted", sandbox, before)
    # Stored: the same key and body get the same answer (marked replayed), still without a payment or a call.
    again = post_payment(service, payment_body(), key=key)
    assert (again.status_code, again.json()) == (422, response.json())
    assert again["Idempotent-Replayed"] == "true"
    assert_refused(again, 422, "user_blocklisted", sandbox, before)
    assert IdempotencyKey.objects.get(key=key).response_status_code == 422
    assert IdempotencyKey.objects.get(key=key).resource_id is None  # no payment: the key points at none


def test_blocked_user_may_still_pay_by_card(sandbox, service, debit_card):
    debit_card()
    blocklist_block(user_id=USER, reason="R02 return", actor="support:test")
    assert post_payment(service, card_body()).status_code == 201


def test_blocked_user_cannot_send_rtp_that_may_fall_back_to_ach(sandbox, service, bank_account, debit_card):
    bank_account(routing_number=ROUTING_NOT_RTP)
    debit_card()
    blocklist_block(user_id=USER, reason="R03 return", actor="support:test")
    before = snapshot()
    body = payment_body(payment_type="credit", payment_method="rtp", rtp_mode="fallback")
    assert_refused(post_payment(service, body), 422, "user_blocklisted", sandbox, before)
    # rtp_mode=only can never become ACH: the blocklist does not apply.
    only = post_payment(service, payment_body(payment_type="credit", payment_method="rtp", rtp_mode="only"))
    assert only.status_code == 201


@pytest.mark.parametrize("method", ["ach", "rtp"])
def test_unknown_bank_account(sandbox, service, bank_account, debit_card, method):
    bank_account(account_id="acc-other")
    bank_account(user_id=OTHER_USER)  # acc-1 exists, for someone else
    debit_card()
    before = snapshot()
    body = payment_body(payment_method=method, payment_type="credit" if method == "rtp" else "debit")
    assert_refused(post_payment(service, body), 422, "bank_account_not_found", sandbox, before)


@pytest.mark.parametrize("body", [card_body(), card_body(payment_type="credit"),
                                  payment_body(payment_method="rtp", payment_type="credit")],
                         ids=["pinless-debit", "pinless-credit", "rtp"])
def test_missing_debit_card(sandbox, service, bank_account, debit_card, body):
    bank_account()
    debit_card(user_id=OTHER_USER)
    before = snapshot()
    assert_refused(post_payment(service, body), 422, "debit_card_missing", sandbox, before)


@pytest.mark.parametrize("body", [card_body(), card_body(payment_type="credit"),
                                  payment_body(payment_method="rtp", payment_type="credit")],
                         ids=["pinless-debit", "pinless-credit", "rtp"])
def test_invalid_debit_card(sandbox, service, bank_account, debit_card, body):
    bank_account()
    debit_card()
    card_invalidate(user_id=USER, reason="hard decline", actor="test")
    before = snapshot()
    assert_refused(post_payment(service, body), 422, "debit_card_invalid", sandbox, before)


def test_a_refused_precheck_needs_a_new_key_once_fixed(sandbox, service, bank_account):
    key = new_key()
    assert post_payment(service, payment_body(), key=key).json()["error"]["code"] == "bank_account_not_found"
    bank_account()
    # Same key, same body: the stored refusal (Stripe's rule). Same key, other body: reuse. New key: accepted.
    assert post_payment(service, payment_body(), key=key).json()["error"]["code"] == "bank_account_not_found"
    assert post_payment(service, payment_body(amount="26.00"), key=key).json()["error"]["code"] == \
        "idempotency_key_reused"
    assert Payment.objects.count() == 0 and processor_calls(sandbox) == []
    assert post_payment(service, payment_body()).status_code == 201


# --- force_failure (test environments only) ------------------------------------------------------------------------
def test_force_failure_fails_the_payment_without_calling_the_processor(sandbox, service, debit_card):
    debit_card()
    card_toggle_failure(user_id=USER)
    response = post_payment(service, card_body())
    assert response.status_code == 201
    data = response.json()
    assert (data["payment_status"], data["return_info"]) == ("FAILED", "force_failure")
    assert processor_calls(sandbox) == []
    payment = Payment.objects.get()
    assert list(payment.status_changes.values_list("to_status", flat=True)) == ["PROCESSING", "FAILED"]
    from cards.selectors import card_get

    assert card_get(user_id=USER).is_valid  # not a processor decline: the card stays valid


def test_force_failure_is_ignored_in_prod(sandbox, service, debit_card, settings):
    debit_card()
    card_toggle_failure(user_id=USER)
    settings.ENVIRONMENT = "prod"
    response = post_payment(service, card_body())
    assert response.json()["payment_status"] == "COMPLETED"
    assert len(processor_calls(sandbox, "usio.SubmitTokenPayment")) == 1


# --- body validation: nothing stored, not even the key ---------------------------------------------------------------
AMOUNTS = [
    ("0", "invalid_amount", "not_positive"), ("0.00", "invalid_amount", "not_positive"),
    (0, "invalid_amount", "not_positive"), ("-5.00", "invalid_amount", "not_positive"),
    (-5, "invalid_amount", "not_positive"), ("1.234", "invalid_amount", "too_many_decimals"),
    (1.005, "invalid_amount", "too_many_decimals"), ("abc", "invalid_amount", "not_a_number"),
    ("", "invalid_amount", "not_a_number"), ("1e3", "invalid_amount", "not_a_number"),
    (" 5.00", "invalid_amount", "not_a_number"), ("NaN", "invalid_amount", "not_a_number"),
    (True, "invalid_amount", "not_a_number"), ([5], "invalid_amount", "not_a_number"),
    ({"value": 5}, "invalid_amount", "not_a_number"), ("5000.01", "amount_over_limit", None),
    (5000.01, "amount_over_limit", None), ("99999999999999999999", "amount_over_limit", None),
]


@pytest.mark.parametrize(("amount", "code", "reason"), AMOUNTS, ids=[repr(a[0]) for a in AMOUNTS])
def test_bad_amounts(sandbox, service, bank_account, amount, code, reason):
    bank_account()
    before = snapshot()
    response = post_payment(service, payment_body(amount=amount))
    assert_refused(response, 422, code, sandbox, before)
    if reason:
        assert response.json()["error"]["details"] == {"field": "amount", "reason": reason}
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("amount", ["5000.00", 5000, "0.01", "1.10", "1.100", 12.5, "7"])
def test_good_amounts(sandbox, service, bank_account, amount):
    bank_account()
    response = post_payment(service, payment_body(amount=amount))
    assert response.status_code == 201, response.json()


def test_the_limit_is_the_setting(sandbox, service, bank_account, settings):
    bank_account()
    settings.MAX_PAYMENT_AMOUNT = "100.00"
    response = post_payment(service, payment_body(amount="100.01"))
    assert response.json()["error"] == {"code": "amount_over_limit", "message": "amount is above the limit of 100.00.",
                                        "details": {"field": "amount", "max": "100.00"}}
    assert post_payment(service, payment_body(amount="100.00")).status_code == 201


BAD_BODIES = [
    ("unknown-purpose", payment_body(purpose="rent"), 400, "validation_error", "purpose"),
    ("unknown-method", payment_body(payment_method="wire"), 400, "validation_error", "payment_method"),
    ("unknown-type", payment_body(payment_type="refund"), 400, "validation_error", "payment_type"),
    ("unknown-provider", payment_body(provider="stripe"), 400, "validation_error", "provider"),
    ("unknown-rtp-mode", payment_body(payment_method="rtp", payment_type="credit", rtp_mode="maybe"), 400,
     "validation_error", "rtp_mode"),
    ("unknown-field", payment_body(amout="5.00"), 400, "validation_error", "amout"),
    ("missing-amount", payment_body(amount=None), 400, "validation_error", "amount"),
    ("missing-user", payment_body(user_id=None), 400, "validation_error", "user_id"),
    ("missing-purpose", payment_body(purpose=None), 400, "validation_error", "purpose"),
    ("null-amount", {**payment_body(), "amount": None}, 400, "validation_error", "amount"),
    ("rtp-debit", payment_body(payment_method="rtp"), 422, "unsupported_route", None),
    ("subscription-credit", payment_body(purpose="subscription", payment_type="credit"), 422,
     "unsupported_route", None),
    ("prenote", payment_body(purpose="prenote"), 422, "unsupported_route", None),
    ("jpm-for-float", payment_body(provider="jpm"), 422, "unsupported_route", None),
    ("jpm-pinless", card_body(purpose="subscription", provider="jpm"), 422, "unsupported_route", None),
    ("ach-without-account", payment_body(account_id=None), 422, "account_id_required", None),
    ("ach-empty-account", payment_body(account_id=""), 400, "validation_error", "account_id"),
    ("rtp-without-account", payment_body(payment_method="rtp", payment_type="credit", account_id=None), 422,
     "account_id_required", None),
    ("pinless-with-account", payment_body(payment_method="pinless"), 422, "account_id_not_allowed", None),
    ("rtp-mode-on-ach", payment_body(rtp_mode="only"), 422, "rtp_mode_not_allowed", None),
    ("bad-user-id", payment_body(user_id="user 1"), 422, "invalid_user_id", None),
    ("bad-account-id", payment_body(account_id="acc/1"), 422, "invalid_account_id", None),
    ("long-name", payment_body(first_name="x" * 51), 400, "validation_error", "first_name"),
    ("blank-name", payment_body(last_name="   "), 400, "validation_error", "last_name"),
    ("pan-in-a-field", payment_body(cbc_card_id="4111111111111111"), 422, "card_data_not_allowed", None),
    ("cvv-field", payment_body(cvv="123"), 422, "card_data_not_allowed", None),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), [b[1:] for b in BAD_BODIES],
                         ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies(sandbox, service, bank_account, debit_card, body, status, code, field):
    bank_account()
    debit_card()
    before = snapshot()
    response = post_payment(service, body)
    assert_refused(response, status, code, sandbox, before)
    if field:
        assert field in response.json()["error"]["details"]
    assert IdempotencyKey.objects.count() == 0


def test_body_that_is_not_json_or_not_an_object(sandbox, service):
    response = service.post(PAYMENTS_URL, "{not json", content_type="application/json",
                            HTTP_IDEMPOTENCY_KEY=new_key())
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_request")
    response = service.post(PAYMENTS_URL, [payment_body()], format="json", HTTP_IDEMPOTENCY_KEY=new_key())
    assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error")
    assert Payment.objects.count() == 0 and sandbox.requests() == []


def test_a_user_paying_for_someone_else_is_refused(sandbox, caller, bank_account):
    bank_account(user_id=OTHER_USER)
    before = snapshot()
    response = post_payment(caller("user"), payment_body(user_id=OTHER_USER))
    assert_refused(response, 403, "not_your_user", sandbox, before)
    assert IdempotencyKey.objects.count() == 0


def test_idempotency_key_missing_or_too_long(sandbox, service, bank_account):
    bank_account()
    before = snapshot()
    assert_refused(post_payment(service, payment_body(), key=None), 400, "idempotency_key_missing", sandbox, before)
    assert_refused(post_payment(service, payment_body(), key="k" * 256), 400, "idempotency_key_invalid", sandbox,
                   before)
    assert_refused(post_payment(service, payment_body(), key=""), 400, "idempotency_key_invalid", sandbox, before)
    assert post_payment(service, payment_body(), key="k" * 255).status_code == 201


def test_refusals_never_echo_the_account_number(sandbox, service, bank_account, json_lines):
    bank_account()
    blocklist_block(user_id=USER, reason="R02", actor="support:test")
    response = post_payment(service, payment_body())
    assert response.status_code == 422
    assert ACCOUNT not in response.content.decode()
    assert ACCOUNT not in str(json_lines())
