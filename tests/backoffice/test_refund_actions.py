"""Refunding a payment from the back office (issue 8, ``admin:payments_payment_refund`` +
``refunds/backoffice.py``), as staff users of the real groups, against the sandbox's Usio.

The form shows the refundable balance; POST refunds through the refunds services (the API's rules and error codes);
a double submit of one form refunds once; refusals are shown on the form and change nothing (no refund, no Usio
call, no idempotency record, no audit entry).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from core.models import AuditEntry, IdempotencyKey, OutboxEvent
from payments.models import Payment, PaymentStatusChange
from refunds.models import Refund
from tests.payments.conftest import (  # noqa: F401  (fixtures)
    USER,
    bank_account,
    caller,
    debit_card,
    payment_body,
    post_payment,
    service,
)
from tests.refunds.conftest import ach_payment, card_payment, refund_calls  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

REASON = "customer charged twice, ticket #981"
DESCRIPTION = "duplicate subscription charge"


def refund_url(payment: Payment) -> str:
    return reverse("admin:payments_payment_refund", args=[payment.pk])


def form_key(response) -> str:
    """The idempotency key the rendered form carries (hidden field)."""
    match = re.search(r'name="idempotency_key" value="([^"]+)"', response.content.decode())
    assert match, "the form has no idempotency key"
    return match.group(1)


def refund_form(page, **fields) -> dict:
    data = {"amount": "20.00", "description": DESCRIPTION, "reason": REASON, "idempotency_key": form_key(page),
            "_confirm": "Refund"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def snapshot() -> dict:
    """What a refused refund must leave unchanged."""
    return {"refunds": list(Refund.objects.order_by("pk").values()),
            "payments": list(Payment.objects.order_by("pk").values()),
            "changes": PaymentStatusChange.objects.count(), "events": OutboxEvent.objects.count(),
            "audit": AuditEntry.objects.count(), "keys": IdempotencyKey.objects.count()}


# --- allowed --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["support", "admin"])
def test_staff_refunds_part_of_a_card_payment(sandbox, staff, card_payment, group):  # noqa: F811
    payment = card_payment("50.00")
    client, user = staff(group)

    page = client.get(refund_url(payment))
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'id="refundable-balance"><strong>50.00</strong>', html)
    for field in ("id_amount", "id_description", "id_reason"):
        assert f'id="{field}"' in html
    assert 'name="_confirm"' in html and 'type="submit"' in html
    response = client.post(refund_url(payment), refund_form(page), REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:payments_payment_change", args=[payment.pk])
    [text] = message_texts(response)
    refund = Refund.objects.get()
    assert "COMPLETED" in text and refund.refund_confirmation_id in text
    assert (refund.status, refund.amount, refund.payment_id, refund.description) == \
        ("COMPLETED", Decimal("20.00"), payment.pk, DESCRIPTION)
    assert (refund.support_name, refund.support_email, refund.support_last_ip) == \
        (user.get_full_name(), user.email, "10.1.2.3")
    [call] = refund_calls(sandbox)
    assert call["operation"] == "usio.SubmitCCVoid"
    assert (call["body"]["ConfirmationID"], call["body"]["Amount"]) == (payment.confirmation_id, "20.00")
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor, entry.reason, entry.target_id, entry.user_id) == \
        ("refund.create", user.username, REASON, str(refund.pk), USER)
    assert entry.changes["description"] == DESCRIPTION and entry.changes["amount"] == "20.00"
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"
    # The balance shown next time counts the refund.
    assert re.search(r'id="refundable-balance"><strong>30.00</strong>',
                     client.get(refund_url(payment)).content.decode())


def test_refunding_the_whole_balance_makes_the_payment_refunded(sandbox, staff, card_payment):  # noqa: F811
    payment = card_payment("50.00", purpose="subscription")
    client, user = staff("support")
    page = client.get(refund_url(payment))

    response = client.post(refund_url(payment), refund_form(page, amount="50.00"))

    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    change = PaymentStatusChange.objects.filter(payment=payment).latest("at")
    assert (change.to_status, change.actor, change.source) == ("REFUNDED", user.username, "admin")
    assert "SUBSCRIPTION_REFUNDED" in OutboxEvent.objects.values_list("type", flat=True)
    assert AuditEntry.objects.count() == 1


def test_refund_of_an_ach_payment_is_an_ach_credit(sandbox, staff, ach_payment):  # noqa: F811
    payment = ach_payment("80.00")
    client, _ = staff("support")
    page = client.get(refund_url(payment))
    before = len(sandbox.requests("usio", "usio.SubmitACHPayment"))

    response = client.post(refund_url(payment), refund_form(page, amount="15.00"))

    assert response.status_code == 302
    [credit] = sandbox.requests("usio", "usio.SubmitACHPayment")[before:]
    assert credit["body"]["TransCode"] in ("22", "32") and credit["body"]["Amount"] == "15.00"
    assert Refund.objects.get().status == "COMPLETED"


def test_double_submit_of_one_form_refunds_once(sandbox, staff, card_payment):  # noqa: F811
    payment = card_payment("50.00")
    client, _ = staff("support")
    data = refund_form(client.get(refund_url(payment)))

    first = client.post(refund_url(payment), data)
    second = client.post(refund_url(payment), data)

    assert first.status_code == second.status_code == 302
    assert "submitted already" in message_texts(second)[-1]
    assert Refund.objects.count() == 1
    assert len(refund_calls(sandbox)) == 1
    assert AuditEntry.objects.count() == 1


# --- refused: the form again, with the error, and nothing changed ---------------------------------------------------
def test_refund_above_the_balance_is_shown_on_the_form(sandbox, staff, card_payment):  # noqa: F811
    payment = card_payment("50.00")
    client, _ = staff("support")
    page = client.get(refund_url(payment))
    before, calls = snapshot(), len(sandbox.requests("usio"))

    response = client.post(refund_url(payment), refund_form(page, amount="50.01"))

    assert response.status_code == 200
    errors = response.context["form"].errors["amount"]
    assert any("refund_exceeds_balance" in e and "50.00" in e for e in errors)
    assert snapshot() == before  # no refund, no audit entry, no idempotency record
    assert len(sandbox.requests("usio")) == calls
    assert form_key(response) != page.context["form"].initial["idempotency_key"]  # a corrected form is a new request


@pytest.mark.parametrize(("amount", "code"), [("abc", "invalid_amount"), ("12.345", "invalid_amount"),
                                              ("0", "invalid_amount"), ("99999999", "amount_over_limit")])
def test_a_bad_amount_is_refused_with_the_apis_code(sandbox, staff, card_payment, amount, code):  # noqa: F811
    payment = card_payment("50.00")
    client, _ = staff("support")
    page = client.get(refund_url(payment))
    before = snapshot()

    response = client.post(refund_url(payment), refund_form(page, amount=amount))

    assert response.status_code == 200
    assert any(code in e for e in response.context["form"].errors["amount"])
    assert snapshot() == before
    assert refund_calls(sandbox) == []


@pytest.mark.parametrize("field", ["reason", "description"])
def test_missing_reason_or_description_is_refused(sandbox, staff, card_payment, field):  # noqa: F811
    payment = card_payment("50.00")
    client, _ = staff("support")
    page = client.get(refund_url(payment))
    before = snapshot()

    response = client.post(refund_url(payment), refund_form(page, **{field: "   "}))

    assert response.status_code == 200 and response.context["form"].errors[field]
    assert snapshot() == before
    assert refund_calls(sandbox) == []


def test_a_jpm_payment_cannot_be_refunded(sandbox, staff, service, bank_account):  # noqa: F811
    bank_account()
    made = post_payment(service, payment_body(purpose="subscription"))
    payment = Payment.objects.get(pk=made.json()["id"])
    assert payment.payment_provider == "jpm"
    Payment.objects.filter(pk=payment.pk).update(payment_status="COMPLETED")  # even a completed one
    client, _ = staff("admin")
    page = client.get(refund_url(payment))
    before = snapshot()

    response = client.post(refund_url(payment), refund_form(page, amount="5.00"))

    assert response.status_code == 200
    assert "refund_not_supported" in response.content.decode()
    assert snapshot() == before
    assert refund_calls(sandbox) == []


def test_refund_is_forbidden_to_a_staff_user_in_no_group(sandbox, staff, card_payment):  # noqa: F811
    payment = card_payment("50.00")
    client, _ = staff(None)
    before = snapshot()

    assert client.get(refund_url(payment)).status_code == 403
    response = client.post(refund_url(payment), {"amount": "10.00", "description": DESCRIPTION, "reason": REASON,
                                                  "idempotency_key": "admin-refund-tampered-0001"})
    assert response.status_code == 403
    assert snapshot() == before
    assert refund_calls(sandbox) == []
