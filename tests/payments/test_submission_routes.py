"""Every route of the SPEC §5 table, end to end through the API and the sandbox over HTTP: the provider, the
merchant account, the status, and exactly one processor call to the right operation carrying our reference."""

import pytest
from django.conf import settings

from core.models import OutboxEvent
from payments.models import Payment, PaymentStatusChange
from payments.routing import ROUTES, Route, route
from tests.payments.conftest import (
    ACCOUNT,
    CARD_LAST4,
    ROUTING,
    ROUTING_NOT_RTP,
    payment_body,
    post_payment,
    processor_calls,
    reference_of,
)

pytestmark = pytest.mark.django_db


def merchant(name: str) -> str:
    return settings.USIO_ACCOUNTS[name]["merchant_id"]


def usio_ledger(sandbox) -> list[dict]:
    return sandbox.control("GET", "usio/ledger")["transactions"]


# (purpose, type, method) → (provider, Usio account, processor operation, status, outbox event or None)
TABLE = [
    ("subscription", "debit", "ach", "jpm", None, "jpm.payments", "ACHSENT", None),
    ("float", "debit", "ach", "usio", "float_debit", "usio.SubmitACHPayment", "ACHSENT", None),
    ("float", "credit", "ach", "usio", "float_credit", "usio.SubmitACHPayment", "ACHSENT", None),
    ("loan", "debit", "ach", "usio", "loan", "usio.SubmitACHPayment", "ACHSENT", None),
    ("loan", "credit", "ach", "usio", "loan", "usio.SubmitACHPayment", "ACHSENT", None),
    ("subscription", "debit", "pinless", "usio", "subscription", "usio.SubmitTokenPayment", "COMPLETED",
     "SUBSCRIPTION_COMPLETED"),
    ("float", "debit", "pinless", "usio", "float_debit", "usio.SubmitTokenPayment", "COMPLETED",
     "FLOAT_DEBIT_COMPLETED"),
    ("loan", "debit", "pinless", "usio", "loan", "usio.SubmitTokenPayment", "COMPLETED", "LOAN_DEBIT_COMPLETED"),
    ("float", "credit", "pinless", "usio", "float_credit", "usio.PinlessCredit", "COMPLETED",
     "FLOAT_CREDIT_COMPLETED"),
    ("loan", "credit", "pinless", "usio", "float_credit", "usio.PinlessCredit", "COMPLETED",
     "LOAN_CREDIT_COMPLETED"),
    ("float", "credit", "rtp", "usio", "float_credit", "usio.RTPCredit", "COMPLETED", "FLOAT_CREDIT_COMPLETED"),
    ("loan", "credit", "rtp", "usio", "float_credit", "usio.RTPCredit", "COMPLETED", "LOAN_CREDIT_COMPLETED"),
]

TRANS_CODES = {("debit", "checking"): "27", ("debit", "savings"): "37", ("credit", "checking"): "22",
               ("credit", "savings"): "32"}


def test_the_table_covers_every_route_of_the_routing_module():
    assert {(p, t, m) for p, t, m, *_ in TABLE} == set(ROUTES)


@pytest.mark.parametrize(("purpose", "ptype", "method", "provider", "account", "operation", "status", "event"),
                         TABLE, ids=["-".join(row[:3]) for row in TABLE])
def test_route(sandbox, service, bank_account, debit_card, purpose, ptype, method, provider, account, operation,
               status, event):
    bank_account()
    debit_card()
    body = payment_body(purpose=purpose, payment_type=ptype, payment_method=method, amount="12.34",
                        account_id=None if method == "pinless" else "acc-1")

    response = post_payment(service, body)

    assert response.status_code == 201, response.json()
    payment = Payment.objects.get()
    data = response.json()
    assert data["id"] == str(payment.pk)
    assert (payment.payment_provider, payment.payment_status) == (provider, status)
    assert payment.merchant_account == (merchant(account) if account else None)
    assert data["payment_status"] == status and data["amount"] == "12.34"
    assert payment.submit_date is not None
    if method == "pinless":
        assert (payment.masked_card_number, payment.masked_account_number, payment.account_id) == \
            (CARD_LAST4, None, None)
    elif method == "rtp":
        assert (payment.masked_card_number, payment.masked_account_number) == (CARD_LAST4, ACCOUNT[-4:])
    else:
        assert (payment.masked_card_number, payment.masked_account_number, payment.account_id) == \
            (None, ACCOUNT[-4:], "acc-1")
    # Exactly one money-moving call, to the right operation, with our reference (and the right merchant account).
    money_ops = [c for c in processor_calls(sandbox) if c["operation"] != "usio.RTPAccountCheck"]
    assert [c["operation"] for c in money_ops] == [operation]
    [call] = money_ops
    assert reference_of(call) == payment.reference
    if provider == "usio":
        assert call["body"]["AccountCode1"] == payment.reference
        [entry] = usio_ledger(sandbox)
        assert (entry["merchant_id"], entry["reference"]) == (merchant(account), payment.reference)
        assert payment.confirmation_id == entry["confirmation"]
    else:
        assert call["body"]["payments"]["transferType"] == "DEBIT"
        assert payment.confirmation_id == payment.reference
    if operation == "usio.SubmitACHPayment":
        assert call["body"]["TransCode"] == TRANS_CODES[(ptype, "checking")]
    if method == "rtp":
        assert [c["operation"] for c in processor_calls(sandbox)] == ["usio.RTPAccountCheck", "usio.RTPCredit"]
    # History: created PROCESSING by the API, then the outcome; an event only where SPEC §4 has one.
    history = list(payment.status_changes.values_list("from_status", "to_status", "source"))
    assert history == [(None, "PROCESSING", "api"), ("PROCESSING", status, "api")]
    assert list(OutboxEvent.objects.values_list("type", flat=True)) == ([event] if event else [])
    # The raw account number never appears in the answer.
    assert ACCOUNT not in response.content.decode()


@pytest.mark.parametrize(("ptype", "purpose"), [("debit", "float"), ("credit", "loan")])
def test_savings_accounts_use_the_savings_trans_codes(sandbox, service, bank_account, ptype, purpose):
    bank_account(account_type="savings")
    response = post_payment(service, payment_body(purpose=purpose, payment_type=ptype))
    assert response.status_code == 201
    [call] = processor_calls(sandbox)
    assert call["body"]["TransCode"] == TRANS_CODES[(ptype, "savings")]


def test_subscription_ach_goes_to_usio_when_configured(sandbox, service, bank_account, settings):
    settings.SUBSCRIPTION_ACH_PROVIDER = "usio"
    bank_account()
    response = post_payment(service, payment_body(purpose="subscription"))
    assert response.status_code == 201
    payment = Payment.objects.get()
    assert (payment.payment_provider, payment.merchant_account, payment.payment_status) == \
        ("usio", merchant("subscription"), "ACHSENT")
    [call] = processor_calls(sandbox)
    assert call["operation"] == "usio.SubmitACHPayment" and reference_of(call) == payment.reference


def test_a_request_may_pick_the_subscription_ach_provider(sandbox, service, bank_account, settings):
    bank_account()
    response = post_payment(service, payment_body(purpose="subscription", provider="usio"))
    assert response.status_code == 201 and response.json()["payment_provider"] == "usio"
    settings.SUBSCRIPTION_ACH_PROVIDER = "usio"
    response = post_payment(service, payment_body(purpose="subscription", provider="jpm"))
    assert response.status_code == 201 and response.json()["payment_provider"] == "jpm"
    assert [c["operation"] for c in processor_calls(sandbox)] == ["usio.SubmitACHPayment", "jpm.payments"]


def test_provider_usio_on_a_usio_route_is_accepted(sandbox, service, bank_account):
    bank_account()
    assert post_payment(service, payment_body(provider="usio")).status_code == 201


def test_rtp_not_eligible_with_mode_only_fails_without_a_credit(sandbox, service, bank_account, debit_card):
    bank_account(routing_number=ROUTING_NOT_RTP)
    debit_card()
    response = post_payment(service, payment_body(payment_type="credit", payment_method="rtp", rtp_mode="only"))
    assert response.status_code == 201
    data = response.json()
    assert (data["payment_status"], data["return_info"], data["payment_method"]) == \
        ("FAILED", "rtp_not_eligible", "rtp")
    assert [c["operation"] for c in processor_calls(sandbox)] == ["usio.RTPAccountCheck"]
    assert list(OutboxEvent.objects.values_list("type", flat=True)) == ["FLOAT_CREDIT_FAILED"]


def test_rtp_mode_defaults_to_only(sandbox, service, bank_account, debit_card):
    bank_account(routing_number=ROUTING_NOT_RTP)
    debit_card()
    response = post_payment(service, payment_body(payment_type="credit", payment_method="rtp"))
    assert response.json()["return_info"] == "rtp_not_eligible"


def test_rtp_not_eligible_with_fallback_becomes_an_ach_credit(sandbox, service, bank_account, debit_card):
    bank_account(routing_number=ROUTING_NOT_RTP)
    debit_card()
    response = post_payment(service, payment_body(purpose="loan", payment_type="credit", payment_method="rtp",
                                                  rtp_mode="fallback"))
    assert response.status_code == 201
    payment = Payment.objects.get()
    assert (payment.payment_method, payment.payment_status, payment.merchant_account) == \
        ("ach", "ACHSENT", merchant("float_credit"))
    assert payment.masked_account_number == ACCOUNT[-4:]
    calls = processor_calls(sandbox)
    assert [c["operation"] for c in calls] == ["usio.RTPAccountCheck", "usio.SubmitACHPayment"]
    assert calls[1]["body"]["TransCode"] == "22" and reference_of(calls[1]) == payment.reference
    [entry] = usio_ledger(sandbox)
    assert (entry["merchant_id"], entry["kind"]) == (merchant("float_credit"), "ach")
    assert PaymentStatusChange.objects.filter(payment=payment).count() == 2
    assert OutboxEvent.objects.count() == 0  # entering ACHSENT writes no event


def test_rtp_eligible_with_fallback_stays_rtp(sandbox, service, bank_account, debit_card):
    bank_account(routing_number=ROUTING)
    debit_card()
    response = post_payment(service, payment_body(payment_type="credit", payment_method="rtp",
                                                  rtp_mode="fallback"))
    assert (response.json()["payment_method"], response.json()["payment_status"]) == ("rtp", "COMPLETED")


def test_jpm_request_carries_the_account_and_our_reference(sandbox, service, bank_account):
    bank_account()
    response = post_payment(service, payment_body(purpose="subscription", first_name="Jane", last_name="Doe"))
    assert response.status_code == 201
    payment = Payment.objects.get()
    [entry] = sandbox.control("GET", "jpm/ledger")["ledger"]
    assert entry["endToEndId"] == payment.reference == payment.confirmation_id
    assert entry["transferType"] == "DEBIT" and entry["accountLast4"] == ACCOUNT[-4:]
    assert entry["counterpartyName"] == "Jane Doe"


def test_usio_ach_sends_the_names_or_the_defaults(sandbox, service, bank_account):
    bank_account()
    post_payment(service, payment_body(first_name="Jane", last_name="Doe"))
    post_payment(service, payment_body())
    first, second = processor_calls(sandbox)
    assert (first["body"]["FirstName"], first["body"]["LastName"]) == ("Jane", "Doe")
    assert (second["body"]["FirstName"], second["body"]["LastName"]) == ("FloatMe", "Customer")


@pytest.mark.parametrize(("purpose", "ptype", "method", "provider"), [
    ("float", "debit", "rtp", None), ("loan", "debit", "rtp", None), ("subscription", "credit", "ach", None),
    ("subscription", "credit", "pinless", None), ("subscription", "credit", "rtp", None),
    ("prenote", "debit", "ach", None), ("float", "debit", "ach", "jpm"), ("float", "debit", "pinless", "jpm"),
    ("loan", "credit", "rtp", "jpm"),
])
def test_unsupported_routes(purpose, ptype, method, provider):
    from core.errors import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        route(purpose=purpose, payment_type=ptype, payment_method=method, provider_override=provider)
    assert excinfo.value.code == "unsupported_route"


def test_route_reads_the_setting_at_call_time(settings):
    assert route(purpose="subscription", payment_type="debit", payment_method="ach") == Route("jpm", None)
    settings.SUBSCRIPTION_ACH_PROVIDER = "usio"
    assert route(purpose="subscription", payment_type="debit", payment_method="ach") == \
        Route("usio", "subscription")
    settings.SUBSCRIPTION_ACH_PROVIDER = "stripe"
    with pytest.raises(ValueError):
        route(purpose="subscription", payment_type="debit", payment_method="ach")


@pytest.mark.parametrize("body", [payment_body(), payment_body(purpose="subscription"),
                                  payment_body(payment_type="credit", payment_method="rtp", rtp_mode="fallback")],
                         ids=["usio-ach", "jpm-ach", "rtp-fallback"])
def test_account_and_routing_numbers_never_reach_the_logs_or_the_answer(sandbox, service, bank_account, debit_card,
                                                                         body):
    """Checked on the raw log records (before the redaction filter), every logger, at DEBUG."""
    import logging

    class Raw(logging.Handler):
        texts: list[str] = []

        def emit(self, record):
            self.texts.append(repr(vars(record)) + record.getMessage())

    handler, root = Raw(logging.DEBUG), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        bank_account(routing_number=ROUTING_NOT_RTP)
        debit_card()
        response = post_payment(service, body)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert response.status_code == 201
    assert any("payment submitted" in t for t in handler.texts)
    text = response.content.decode() + "\n".join(handler.texts)
    assert ACCOUNT not in text and ROUTING_NOT_RTP not in text and ROUTING not in text
    assert "tok_debit" not in text and "tok_credit" not in text
