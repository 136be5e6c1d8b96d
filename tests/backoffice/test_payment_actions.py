"""Back-office actions on a payment (issue 8, ``payments/admin.py`` + ``payments/backoffice.py``): "sync now" and
"mark a stuck payment failed", through the admin as staff users of the real groups, against the sandbox.

support may sync, not mark failed; admin may do both; a staff user in no group may do neither (403 on GET and
POST, nothing changed). Each action that acts writes exactly one AuditEntry; a refused one writes none.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from core.auth.principal import Principal
from core.idempotency import fingerprint
from core.models import AuditEntry, OutboxEvent
from payments.models import Payment, PaymentStatusChange
from payments.services import payment_call_processor, payment_claim
from tests.payments.conftest import (  # noqa: F401  (fixtures)
    USER,
    bank_account,
    caller,
    debit_card,
    payment_body,
    post_payment,
    service,
)

pytestmark = pytest.mark.django_db

PRINCIPAL = Principal(role="service", name="backoffice-tests", client_id="key:backoffice-tests")
REASON = "customer called: says the money left their account"


# --- helpers ----------------------------------------------------------------------------------------------------------
def url(name: str, payment: Payment) -> str:
    return reverse(f"admin:payments_payment_{name}", args=[payment.pk])


def change_url(payment: Payment) -> str:
    return reverse("admin:payments_payment_change", args=[payment.pk])


def state(payment: Payment) -> dict:
    """Everything an action on ``payment`` could change."""
    return {"row": Payment.objects.filter(pk=payment.pk).values().get(),
            "changes": list(PaymentStatusChange.objects.filter(payment=payment).values_list(
                "from_status", "to_status", "source", "actor")),
            "events": OutboxEvent.objects.count(), "audit": AuditEntry.objects.count()}


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def claimed(data: dict):
    return payment_claim(principal=PRINCIPAL, idempotency_key=f"bo-{data['amount']}-{timezone.now().timestamp()}",
                         fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=data), data=data)


def processing_at_usio(amount: str = "25.00") -> Payment:
    """A Usio ACH debit the processor has, left PROCESSING (the worker died before step 3)."""
    the_claim = claimed(payment_body(amount=amount))
    assert the_claim.response is None, the_claim.response
    outcome = payment_call_processor(claim=the_claim)
    assert outcome.kind == "sent", outcome
    return Payment.objects.get(pk=the_claim.payment.pk)


def processing_unsent(amount: str = "26.00", *, age: timedelta = timedelta(minutes=10)) -> Payment:
    """A payment step 1 created and nobody sent (PROCESSING), created ``age`` ago."""
    the_claim = claimed(payment_body(amount=amount))
    assert the_claim.response is None, the_claim.response
    Payment.objects.filter(pk=the_claim.payment.pk).update(created_at=timezone.now() - age)
    return Payment.objects.get(pk=the_claim.payment.pk)


def test_sync_service_refuses_a_blank_reason_before_asking_the_processor(sandbox, jpm_payment):
    from core.errors import ValidationError
    from payments.backoffice import payment_sync_now

    before = state(jpm_payment)
    with pytest.raises(ValidationError) as refused:
        payment_sync_now(payment_id=jpm_payment.pk, actor="someone", reason=" ")
    assert refused.value.code == "reason_required"
    assert state(jpm_payment) == before
    assert sandbox.requests("jpm", "jpm.payment_status") == []


@pytest.fixture
def jpm_payment(sandbox, service, bank_account):  # noqa: F811
    """A subscription ACH debit at JPM (ACHSENT after submission)."""
    bank_account()
    response = post_payment(service, payment_body(purpose="subscription", amount="19.99"))
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    assert (payment.payment_provider, payment.payment_status) == ("jpm", "ACHSENT")
    return payment


# --- sync now ---------------------------------------------------------------------------------------------------------
def test_support_syncs_a_jpm_payment_that_cleared(sandbox, staff, jpm_payment):
    client, user = staff("support")
    sandbox.advance(days=2)  # JPM: ACCEPTED → CLEARED → COMPLETED (JPM's COMPLETED is not final: CLEARED here)

    page = client.get(url("sync", jpm_payment))
    assert page.status_code == 200
    assert b'id="id_reason"' in page.content and b'name="_confirm"' in page.content
    response = client.post(url("sync", jpm_payment), {"reason": REASON, "_confirm": "1"})

    assert response.status_code == 302 and response["Location"] == change_url(jpm_payment)
    [text] = message_texts(response)
    assert "JPM: COMPLETED" in text and "ACHSENT → CLEARED" in text
    jpm_payment.refresh_from_db()
    assert jpm_payment.payment_status == "CLEARED"
    change = PaymentStatusChange.objects.filter(payment=jpm_payment).latest("at")
    assert (change.from_status, change.to_status, change.source, change.actor) == \
        ("ACHSENT", "CLEARED", "admin", user.username)
    [entry] = AuditEntry.objects.filter(action="payment.sync_now")
    assert (entry.actor, entry.reason, entry.target_id, entry.user_id) == \
        (user.username, REASON, str(jpm_payment.pk), USER)
    assert entry.changes["from_status"] == "ACHSENT" and entry.changes["to_status"] == "CLEARED"
    assert AuditEntry.objects.count() == 1
    assert len(sandbox.requests("jpm", "jpm.payment_status")) == 1


def test_sync_with_nothing_new_changes_nothing_but_is_recorded(sandbox, staff, jpm_payment):
    client, user = staff("admin")
    before = state(jpm_payment)

    response = client.post(url("sync", jpm_payment), {"reason": REASON})

    assert response.status_code == 302
    [text] = message_texts(response)
    assert "no change" in text and "ACHSENT" in text
    after = state(jpm_payment)
    assert (after["row"], after["changes"], after["events"]) == (before["row"], before["changes"], before["events"])
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor, entry.changes["applied"]) == ("payment.sync_now", user.username, [])


def test_sync_resolves_a_processing_payment_found_at_usio(sandbox, staff, bank_account):  # noqa: F811
    bank_account()
    payment = processing_at_usio()
    client, user = staff("support")

    response = client.post(url("sync", payment), {"reason": REASON})

    assert response.status_code == 302
    [text] = message_texts(response)
    assert "Usio" in text and "PROCESSING → ACHSENT" in text
    payment.refresh_from_db()
    assert payment.payment_status == "ACHSENT" and payment.confirmation_id
    assert list(PaymentStatusChange.objects.filter(payment=payment, from_status__isnull=False)
                .values_list("to_status", "source", "actor")) == [("ACHSENT", "admin", user.username)]
    assert AuditEntry.objects.filter(action="payment.sync_now", target_id=str(payment.pk)).count() == 1


def test_sync_when_the_processor_fails_says_so_and_changes_nothing(sandbox, staff, jpm_payment):
    client, _ = staff("support")
    sandbox.advance(days=2)
    sandbox.fault("jpm.payment_status", "500", count=5)
    before = state(jpm_payment)

    response = client.post(url("sync", jpm_payment), {"reason": REASON})

    assert response.status_code == 200  # the form again, with the error
    assert "Could not reach JPM" in response.content.decode()
    assert state(jpm_payment) == before  # no status change, no audit entry


def test_sync_without_a_reason_is_refused_before_asking_the_processor(sandbox, staff, jpm_payment):
    client, _ = staff("support")
    sandbox.advance(days=2)
    before = state(jpm_payment)

    response = client.post(url("sync", jpm_payment), {"reason": "  "})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert state(jpm_payment) == before
    assert sandbox.requests("jpm", "jpm.payment_status") == []


def test_sync_is_forbidden_to_a_staff_user_in_no_group(sandbox, staff, jpm_payment):
    client, _ = staff(None)
    sandbox.advance(days=2)
    before = state(jpm_payment)

    assert client.get(url("sync", jpm_payment)).status_code == 403
    assert client.post(url("sync", jpm_payment), {"reason": REASON}).status_code == 403
    assert state(jpm_payment) == before
    assert sandbox.requests("jpm", "jpm.payment_status") == []


# --- mark failed ------------------------------------------------------------------------------------------------------
def test_admin_marks_a_stuck_payment_failed(staff, bank_account):  # noqa: F811
    bank_account()
    payment = processing_unsent()
    client, user = staff("admin")

    page = client.get(url("mark_failed", payment))
    assert page.status_code == 200
    assert b'id="sync-first-warning"' in page.content and b'id="not-eligible"' not in page.content
    response = client.post(url("mark_failed", payment), {"reason": "Usio support: never received it", "_confirm": "1"})

    assert response.status_code == 302 and response["Location"] == change_url(payment)
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"
    assert payment.return_info == "marked failed by support: Usio support: never received it"
    assert list(PaymentStatusChange.objects.filter(payment=payment, from_status__isnull=False).values_list(
        "from_status", "to_status", "source", "actor")) == [("PROCESSING", "FAILED", "admin", user.username)]
    assert list(OutboxEvent.objects.values_list("type", flat=True)) == ["FLOAT_DEBIT_FAILED"]
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor, entry.reason, entry.target_id) == \
        ("payment.mark_failed", user.username, "Usio support: never received it", str(payment.pk))


def test_marking_a_payment_that_is_not_stuck_is_refused(staff, bank_account):  # noqa: F811
    bank_account()
    young = processing_unsent("27.00", age=timedelta(minutes=1))
    client, _ = staff("admin")
    before = state(young)

    page = client.get(url("mark_failed", young))
    assert b'id="not-eligible"' in page.content
    response = client.post(url("mark_failed", young), {"reason": REASON})

    assert response.status_code == 200
    assert "payment_not_stuck" in response.content.decode()
    assert state(young) == before


def test_marking_a_payment_that_left_processing_is_refused(sandbox, staff, jpm_payment):
    client, _ = staff("admin")
    Payment.objects.filter(pk=jpm_payment.pk).update(created_at=timezone.now() - timedelta(hours=2))
    before = state(jpm_payment)

    response = client.post(url("mark_failed", jpm_payment), {"reason": REASON})

    assert response.status_code == 200
    assert "payment_not_processing" in response.content.decode()
    assert state(jpm_payment) == before


def test_marking_failed_without_a_reason_is_refused(staff, bank_account):  # noqa: F811
    bank_account()
    payment = processing_unsent()
    client, _ = staff("admin")
    before = state(payment)

    response = client.post(url("mark_failed", payment), {"reason": ""})

    assert response.status_code == 200 and response.context["form"].errors["reason"]
    assert state(payment) == before


@pytest.mark.parametrize("group", ["support", None])
def test_mark_failed_is_admin_only(staff, bank_account, group):  # noqa: F811
    bank_account()
    payment = processing_unsent()
    client, _ = staff(group)
    before = state(payment)

    assert client.get(url("mark_failed", payment)).status_code == 403
    assert client.post(url("mark_failed", payment), {"reason": REASON}).status_code == 403  # a tampered POST
    assert state(payment) == before


# --- the payment page and the changelist ------------------------------------------------------------------------------
@pytest.mark.parametrize(("group", "links"), [
    ("admin", {"refund", "sync", "mark-failed"}),
    ("support", {"refund", "sync"}),
])
def test_payment_page_shows_the_buttons_the_user_may_use(staff, bank_account, group, links):  # noqa: F811
    bank_account()
    payment = processing_unsent()
    client, _ = staff(group)

    page = client.get(change_url(payment)).content.decode()

    shown = {name for name in ("refund", "sync", "mark-failed") if f'id="payment-{name}-link"' in page}
    assert shown == links
    for name in links:
        assert url(name.replace("-", "_"), payment) in page


def test_changelist_actions_lead_to_the_form_of_one_payment(staff, bank_account):  # noqa: F811
    bank_account()
    first, second = processing_unsent("21.00"), processing_unsent("22.00")
    client, _ = staff("support")
    changelist = reverse("admin:payments_payment_changelist")

    actions = dict(client.get(changelist).context["action_form"].fields["action"].choices)
    assert {"refund_selected", "sync_selected"} <= set(actions) and "mark_failed_selected" not in actions

    one = client.post(changelist, {"action": "sync_selected", "_selected_action": [str(first.pk)]})
    assert one.status_code == 302 and one["Location"] == url("sync", first)
    two = client.post(changelist, {"action": "sync_selected", "_selected_action": [str(first.pk), str(second.pk)]},
                      follow=True)
    assert "Select exactly one payment" in two.content.decode()
    forbidden = client.post(changelist, {"action": "mark_failed_selected", "_selected_action": [str(first.pk)]})
    assert forbidden.status_code in (200, 302) and forbidden.get("Location") != url("mark_failed", first)
