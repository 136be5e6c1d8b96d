"""A refund whose Usio answer is lost (timeout, malformed answer, 5xx, a crash between the steps): PROCESSING, its
amount held, never a second refund; and the refund reconciler that resolves it by asking Usio."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import IdempotencyKey, OutboxEvent
from refunds.data import SupportIdentity
from refunds.models import Refund
from refunds.reconciler import refund_reconcile_processing
from tests.refunds.conftest import (
    USER,
    held,
    new_key,
    post_refund,
    refund_body,
    refund_calls,
    usio_calls,
    usio_transaction,
)

pytestmark = pytest.mark.django_db

LATER = timedelta(minutes=10)  # past PROCESSING_STUCK_MINUTES (5)
MUCH_LATER = timedelta(minutes=61)  # past PROCESSING_GIVE_UP_MINUTES (60)


def reconcile(delta: timedelta):
    return refund_reconcile_processing(now=timezone.now() + delta)


def expire_lease(key: str) -> None:
    IdempotencyKey.objects.filter(key=key).update(lease_expires_at="2000-01-01T00:00:00Z")


# --- timeout on SubmitCCVoid ---------------------------------------------------------------------------------------
def test_timeout_leaves_the_refund_processing_holds_the_balance_and_never_refunds_twice(sandbox, support,
                                                                                        card_payment):
    payment = card_payment("50.00")
    sandbox.fault("usio.SubmitCCVoid", "timeout")
    key = new_key()
    body = refund_body(payment_id=str(payment.pk), amount="30.00")

    first = post_refund(support, body, key=key)

    assert first.status_code == 202, first.content
    data = first.json()
    refund = Refund.objects.get()
    assert (data["status"], data["id"], data["refund_confirmation_id"]) == ("PROCESSING", str(refund.pk), None)
    assert held(payment) == Decimal("30.00")
    record = IdempotencyKey.objects.get(key=key)
    assert (record.status, record.resource_id) == ("in_progress", str(refund.pk))
    assert len(sandbox.wait_for_requests("usio.SubmitCCVoid")) == 1
    assert usio_transaction(sandbox, payment.confirmation_id)["refunded"] == "30.00"  # Usio did it

    # The same key while the lease runs: 409, nothing sent.
    again = post_refund(support, body, key=key)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "idempotency_in_progress")
    # After the lease: the refund as it is (202), still nothing sent.
    expire_lease(key)
    stale = post_refund(support, body, key=key)
    assert (stale.status_code, stale.json(), stale["Idempotent-Replayed"]) == (202, data, "true")
    # A new key over what is left is refused while the 30.00 is held; within it, fine.
    over = post_refund(support, refund_body(payment_id=str(payment.pk), amount="20.01"))
    assert (over.status_code, over.json()["error"]["code"]) == (422, "refund_exceeds_balance")
    assert over.json()["error"]["details"]["processing"] == "30.00"
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 1

    # The reconciler finds Usio's refund transaction and completes ours with its confirmation.
    stats = reconcile(LATER)
    assert (stats.examined, stats.completed) == (1, 1), stats
    refund.refresh_from_db()
    usio_refund = next(tx for tx in sandbox.control("GET", "usio/ledger")["transactions"]
                       if tx["original_confirmation"] == payment.confirmation_id)
    assert (refund.status, refund.refund_confirmation_id) == ("COMPLETED", usio_refund["confirmation"])
    assert refund.date_refunded is not None
    # The client's retry now gets the final answer, stored for good.
    expire_lease(key)
    final = post_refund(support, body, key=key)
    assert (final.status_code, final.json()["status"]) == (201, "COMPLETED")
    assert IdempotencyKey.objects.get(key=key).status == "completed"
    # Exactly one refund went to Usio for this key.
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 1
    assert usio_transaction(sandbox, payment.confirmation_id)["refunded"] == "30.00"


def test_a_timed_out_full_refund_makes_the_payment_refunded_once_reconciled(sandbox, support, card_payment):
    payment = card_payment("25.00")
    sandbox.fault("usio.SubmitCCVoid", "timeout")
    assert post_refund(support, refund_body(payment_id=str(payment.pk), amount="25.00")).status_code == 202
    sandbox.wait_for_requests("usio.SubmitCCVoid")
    # Nothing left while it is held: even a cent is refused.
    cent = post_refund(support, refund_body(payment_id=str(payment.pk), amount="0.01"))
    assert cent.json()["error"]["code"] == "refund_exceeds_balance"

    stats = reconcile(LATER)
    assert stats.completed == 1
    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    change = payment.status_changes.last()
    assert (change.to_status, change.source, change.actor) == ("REFUNDED", "reconciler", "reconciler")
    assert list(OutboxEvent.objects.order_by("position").values_list("type", flat=True)) == \
        ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_REFUNDED"]
    assert reconcile(LATER).examined == 0  # idempotent


@pytest.mark.parametrize("mode", ["malformed", "500"])
def test_other_unknown_outcomes_also_leave_it_processing(sandbox, support, card_payment, mode):
    payment = card_payment()
    sandbox.fault("usio.SubmitCCVoid", mode)
    response = post_refund(support, refund_body(payment_id=str(payment.pk)))
    assert (response.status_code, response.json()["status"]) == (202, "PROCESSING")
    stats = reconcile(LATER)
    refund = Refund.objects.get()
    if mode == "malformed":  # processed: found and completed
        assert (stats.completed, refund.status) == (1, "COMPLETED")
    else:  # a 500 fault is not processed: Usio refunded nothing; failed only past the give-up age
        assert (stats.waiting, refund.status) == (1, "PROCESSING")
        assert reconcile(MUCH_LATER).failed == 1
        refund.refresh_from_db()
        assert (refund.status, refund.failure_code) == ("FAILED", "not_submitted")
        assert held(payment) == 0


def test_credit_timeout_is_resolved_by_our_reference(sandbox, support, debit_card):
    debit_card(credit_token="timeout")  # PinlessCredit processed, answer hangs
    response = post_refund(support, refund_body(account_type="debit", amount="8.00"))
    assert response.status_code == 202
    refund = Refund.objects.get()
    [call] = sandbox.wait_for_requests("usio.PinlessCredit")
    assert call["body"]["AdditionalSearch"] == refund.reference

    assert reconcile(timedelta(minutes=1)).examined == 0  # not stuck yet
    stats = reconcile(LATER)
    assert stats.completed == 1
    refund.refresh_from_db()
    entry = next(tx for tx in sandbox.control("GET", "usio/ledger")["transactions"]
                 if tx["reference"] == refund.reference)
    assert (refund.status, refund.refund_confirmation_id) == ("COMPLETED", entry["confirmation"])
    assert [c["body"]["AdditionalSearch"] for c in usio_calls(sandbox, "usio.GetTransactionDetails")] == \
        [refund.reference]


# --- a crash between the steps: the Usio call never happened ------------------------------------------------------
def _claim_only(principal_role: str = "support", **body):
    """Step 1 alone (the process died before calling Usio)."""
    from core.auth.principal import Principal
    from refunds.services import refund_claim, refund_validate

    principal = Principal(role=principal_role, name="crashy", client_id="key:crashy")
    request = refund_validate(principal=principal, support=SupportIdentity(name="crashy"), data=refund_body(**body))
    claim = refund_claim(request=request, idempotency_key=new_key(), fingerprint="0" * 64)
    assert claim.refund is not None
    return claim.refund


def test_never_sent_credit_waits_then_fails_not_submitted(sandbox, debit_card):
    debit_card()
    refund = _claim_only(account_type="debit", amount="4.00")
    assert reconcile(LATER).waiting == 1
    stats = reconcile(MUCH_LATER)
    assert stats.failed == 1
    refund.refresh_from_db()
    assert (refund.status, refund.failure_code) == ("FAILED", "not_submitted")
    assert refund_calls(sandbox) == []  # the reconciler never sends anything


def test_never_sent_card_refund_fails_only_when_usio_refunded_nothing_we_do_not_know(sandbox, card_payment):
    payment = card_payment("50.00")
    refund = _claim_only(payment_id=str(payment.pk), amount="20.00")
    assert held(payment) == Decimal("20.00")
    stats = reconcile(MUCH_LATER)
    assert stats.failed == 1, stats
    refund.refresh_from_db()
    assert refund.status == "FAILED"
    assert held(payment) == 0
    assert usio_calls(sandbox, "usio.SubmitCCVoid") == []


def test_usio_refunded_more_than_we_can_attribute_is_left_for_support(sandbox, card_payment):
    """A refund made at Usio outside this service (another amount) while ours never went out: the reconciler
    cannot tell, so ours stays PROCESSING (never failed automatically: it might have moved money)."""
    from integrations.usio import usio_client

    payment = card_payment("50.00")
    refund = _claim_only(payment_id=str(payment.pk), amount="20.00")
    usio_client("float_debit").void_or_refund(confirmation_id=payment.confirmation_id, amount=Decimal("5.00"))
    stats = reconcile(MUCH_LATER)
    assert (stats.unresolved, stats.failed, stats.completed) == (1, 0, 0)
    refund.refresh_from_db()
    assert refund.status == "PROCESSING"


def test_two_stuck_card_refunds_of_one_payment_each_take_their_own_usio_refund(sandbox, support, card_payment):
    payment = card_payment("50.00")
    sandbox.fault("usio.SubmitCCVoid", "timeout", count=2)
    for amount in ("10.00", "15.00"):
        assert post_refund(support, refund_body(payment_id=str(payment.pk), amount=amount)).status_code == 202
    sandbox.wait_for_requests("usio.SubmitCCVoid", count=2)
    stats = reconcile(LATER)
    assert stats.completed == 2
    usio_refunds = {tx["confirmation"]: tx["amount"] for tx in sandbox.control("GET", "usio/ledger")["transactions"]
                    if tx["original_confirmation"] == payment.confirmation_id}
    assert {r.refund_confirmation_id: f"{r.amount:.2f}" for r in Refund.objects.all()} == usio_refunds


def test_usio_unreachable_leaves_it_processing(sandbox, debit_card):
    debit_card()
    refund = _claim_only(account_type="debit")
    sandbox.fault("usio.GetTransactionDetails", "500")
    stats = reconcile(MUCH_LATER)
    assert (stats.errors, stats.failed) == (1, 0)
    refund.refresh_from_db()
    assert refund.status == "PROCESSING"


def test_the_job_is_registered_and_runs(sandbox, capsys):
    call_command("run_job", "reconcile_refunds")
    from core.jobs import get_job
    from core.schedules import all_schedules

    assert get_job("reconcile_refunds").func.__module__ == "refunds.jobs"
    spec = next(s for s in all_schedules() if s.task == "refunds.reconcile_processing")
    assert spec.every_seconds == 900


def test_a_refund_finished_twice_changes_once(sandbox, card_payment):
    from refunds.data import RefundOutcome
    from refunds.services import refund_finish

    payment = card_payment("10.00")
    refund = _claim_only(payment_id=str(payment.pk), amount="10.00")
    first = refund_finish(refund_id=refund.pk, outcome=RefundOutcome("approved", confirmation_id="UAAAA"),
                          source="api", actor="support:x")
    second = refund_finish(refund_id=refund.pk, outcome=RefundOutcome("declined", code="05"),
                           source="reconciler", actor="reconciler")
    assert (first.applied, first.payment_refunded, second.applied) == (True, True, False)
    refund.refresh_from_db()
    assert (refund.status, refund.refund_confirmation_id) == ("COMPLETED", "UAAAA")
    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    assert payment.status_changes.filter(to_status="REFUNDED").count() == 1


def test_step_two_refuses_to_run_inside_a_transaction(sandbox, debit_card):
    from django.db import transaction

    from refunds.data import RefundClaim
    from refunds.processor_call import refund_call_processor

    debit_card()
    refund = _claim_only(account_type="debit")
    with transaction.atomic(), pytest.raises(RuntimeError):
        refund_call_processor(claim=RefundClaim(request=None, refund=refund))
    assert refund_calls(sandbox) == []


def test_only_support_and_admin_principals_may_refund():
    from core.auth.principal import Principal
    from core.errors import PermissionDeniedError
    from refunds.services import refund_validate

    for role in ("service", "user"):
        with pytest.raises(PermissionDeniedError):
            refund_validate(principal=Principal(role=role, name="x", client_id="key:x", user_id=USER),
                            support=SupportIdentity(name="x"), data=refund_body(account_type="debit"))


def test_timeout_on_a_usio_transaction_refund_is_reconciled(sandbox, support, external_card_transaction):
    confirmation = external_card_transaction("40.00", account="loan")
    sandbox.fault("usio.SubmitCCVoid", "timeout")
    response = post_refund(support, refund_body(confirmation_id=confirmation, amount="40.00"))
    assert (response.status_code, response.json()["status"]) == (202, "PROCESSING")
    sandbox.wait_for_requests("usio.SubmitCCVoid")
    # Held: Usio's RefundedAmount (40) and ours in flight are not added twice into a negative answer.
    over = post_refund(support, refund_body(confirmation_id=confirmation, amount="0.01"))
    assert (over.status_code, over.json()["error"]["details"]["refundable"]) == (422, "0.00")
    assert reconcile(LATER).completed == 1
    refund = Refund.objects.get()
    assert (refund.status, refund.merchant_account) == ("COMPLETED", usio_transaction(sandbox, confirmation)[
        "merchant_id"])
    assert usio_transaction(sandbox, refund.refund_confirmation_id)["original_confirmation"] == confirmation
