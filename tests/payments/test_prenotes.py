"""Prenotes (SPEC §6, issue 6): the API, the submission job and the outcomes, against the sandbox over real HTTP.

Time is moved with ``now=`` (our clock) and ``sandbox.advance`` (the processors'), never by sleeping. The returns
sync is a later issue: a return is applied here as it will apply it (``payment_apply_status`` to FAILED
``returned`` with the code the sandbox reports), then the outbox relay runs the consumers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from bank_accounts.models import BankAccountHistory
from bank_accounts.selectors import bank_account_get
from bank_accounts.services import bank_account_delete, bank_account_save
from core.models import IdempotencyKey, OutboxConsumption, OutboxEvent
from core.outbox_relay import outbox_relay_run
from payments.models import Payment, PaymentStatusChange, PrenoteRequest
from payments.prenote_consumers import PRENOTE_ACCOUNT_CONSUMER
from payments.prenotes import (
    prenote_account_outcome,
    prenote_apply_outcome,
    prenote_call_processor,
    prenote_claim_next,
    prenote_process_batch,
)
from payments.reconciler import reconcile_processing
from payments.routing import usio_merchant_id
from payments.status import payment_apply_status
from tests.payments.conftest import ACCOUNT, ACCOUNT_ID, OTHER_USER, ROUTING, USER, reference_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/prenotes"
RETURNED_R02 = "7391462899" + "02"  # 99NN: settles, then returned R02 (JPM: AC04)
RETURNED_R01 = "7391462899" + "01"  # 99NN: returned R01 (JPM: AM04)
REJECTED_R03 = "7391462898" + "03"  # 98NN: rejected at once R03
REJECTED_R01 = "7391462898" + "01"
STUCK = timedelta(minutes=6)  # past PROCESSING_STUCK_MINUTES
GIVE_UP = timedelta(minutes=61)  # past PROCESSING_GIVE_UP_MINUTES


def body(provider="usio", usio_account="subscription", **overrides) -> dict:
    data = {"user_id": USER, "account_id": ACCOUNT_ID, "provider": provider}
    if usio_account is not None:
        data["usio_account"] = usio_account
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def jpm_body(**overrides) -> dict:
    overrides.setdefault("usio_account", None)
    return body(provider="jpm", **overrides)


@pytest.fixture(autouse=True)
def no_kick(prenote_kicks):
    """The prenote job kicks sent to the broker, read back (``no_kick()``); none leaks into another test."""
    return prenote_kicks


def submissions(sandbox) -> list[dict]:
    """Every prenote submission the processors received (Usio SubmitACHPayment, JPM payments)."""
    return [r for r in sandbox.requests() if r["operation"] in ("usio.SubmitACHPayment", "jpm.payments")]


def prenote_status(user_id=USER, account_id=ACCOUNT_ID) -> str:
    return bank_account_get(user_id=user_id, account_id=account_id).prenote_status


def events(payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


def changes(payment) -> list[tuple]:
    return list(PaymentStatusChange.objects.filter(payment=payment).order_by("id")
                .values_list("from_status", "to_status", "source"))


def request_prenote(service, data=None, **headers):
    response = service.post(URL, data or body(), format="json", **headers)
    assert response.status_code in (200, 202), response.content
    return response


def submitted_prenote(service, data=None) -> Payment:
    """POST, run the job: the prenote's payment."""
    prenote_id = request_prenote(service, data).json()["id"]
    prenote_process_batch()
    return PrenoteRequest.objects.get(pk=prenote_id).payment


def state() -> dict:
    """Everything a refused request must leave unchanged."""
    return {
        "prenotes": list(PrenoteRequest.objects.order_by("pk").values()),
        "payments": Payment.objects.count(),
        "history": list(BankAccountHistory.objects.order_by("pk").values_list("pk", "prenote_status")),
        "statuses": sorted(bank_account_get(user_id=u, account_id=a).prenote_status
                           for u, a in [(USER, ACCOUNT_ID)]),
        "keys": IdempotencyKey.objects.count(),
        "events": OutboxEvent.objects.count(),
    }


# --- the request --------------------------------------------------------------------------------------------------


def test_request_is_accepted_and_marks_the_account_pending(sandbox, bank_account, service, no_kick,
                                                            django_capture_on_commit_callbacks):
    bank_account()

    with django_capture_on_commit_callbacks(execute=True):
        response = service.post(URL, body(), format="json")

    assert response.status_code == 202
    data = response.json()
    prenote = PrenoteRequest.objects.get()
    assert data["id"] == str(prenote.pk)
    assert {k: data[k] for k in ("user_id", "account_id", "masked_account_number", "provider", "usio_account",
                                 "status", "payment_id", "payment_status", "attempts")} == {
        "user_id": USER, "account_id": ACCOUNT_ID, "masked_account_number": ACCOUNT[-4:], "provider": "usio",
        "usio_account": "subscription", "status": "requested", "payment_id": None, "payment_status": None,
        "attempts": 0}
    assert prenote_status() == "pending"
    assert BankAccountHistory.objects.filter(action="prenote_status", prenote_status="pending").count() == 1
    assert no_kick() == ["payments.process_prenotes"]  # the job is kicked once the request committed
    assert submissions(sandbox) == [] and Payment.objects.count() == 0  # nothing is sent by the API itself


@pytest.mark.parametrize("usio_account, account_type, trans_code", [
    ("subscription", "checking", "28"),
    ("subscription", "savings", "38"),
    ("float_debit", "checking", "28"),
    ("float_debit", "savings", "38"),
])
def test_usio_prenote_is_submitted_with_amount_zero_and_the_trans_code_of_the_account_type(
        sandbox, bank_account, service, usio_account, account_type, trans_code):
    bank_account(account_type=account_type)

    payment = submitted_prenote(service, body(usio_account=usio_account))

    assert (payment.purpose, payment.payment_method, payment.payment_type, payment.payment_provider) == (
        "prenote", "ach", "debit", "usio")
    assert payment.amount == 0 and payment.payment_status == "ACHSENT"
    assert payment.merchant_account == usio_merchant_id(usio_account)
    assert (payment.account_id, payment.masked_account_number) == (ACCOUNT_ID, ACCOUNT[-4:])
    [call] = submissions(sandbox)
    assert call["body"]["TransCode"] == trans_code and call["body"]["Amount"] == "0.00"
    assert call["body"]["MerchantID"] == "****" + usio_merchant_id(usio_account)[-4:]
    assert reference_of(call) == payment.reference
    [entry] = sandbox.control("GET", "usio/ledger")["transactions"]
    assert (entry["trans_code"], entry["amount"], entry["merchant_id"]) == (trans_code, "0.00",
                                                                           usio_merchant_id(usio_account))
    assert payment.confirmation_id == entry["confirmation"]
    assert events(payment) == ["PRENOTE_SUBMITTED"]
    assert changes(payment) == [(None, "PROCESSING", "api"), ("PROCESSING", "ACHSENT", "api")]
    assert prenote_status() == "pending"
    prenote = PrenoteRequest.objects.get()
    assert (prenote.status, prenote.attempts, prenote.payment_id) == ("submitted", 1, payment.pk)


@pytest.mark.parametrize("account_type", ["checking", "savings"])
def test_jpm_prenote_is_a_zero_amount_debit_with_the_prenote_flag(sandbox, bank_account, service, account_type):
    bank_account(account_type=account_type)

    payment = submitted_prenote(service, jpm_body())

    assert (payment.payment_provider, payment.amount, payment.payment_status) == ("jpm", 0, "ACHSENT")
    assert payment.merchant_account is None and payment.confirmation_id == payment.reference
    [call] = submissions(sandbox)
    sent = call["body"]["payments"]
    assert sent["prenote"] is True and sent["paymentAmount"] == 0 and sent["transferType"] == "DEBIT"
    assert sent["debtor"]["debtorAccount"]["accountType"] == account_type.upper()
    assert reference_of(call) == payment.reference
    [entry] = sandbox.control("GET", "jpm/ledger")["ledger"]
    assert entry["prenote"] is True and entry["amount"] == "0.00"
    assert events(payment) == ["PRENOTE_SUBMITTED"]
    assert prenote_status() == "pending"


def test_the_event_carries_the_prenote_payment(sandbox, bank_account, service):
    bank_account()
    payment = submitted_prenote(service)

    event = OutboxEvent.objects.get(aggregate_id=str(payment.pk))

    assert event.type == "PRENOTE_SUBMITTED" and event.subject == payment.confirmation_id
    assert event.data["purpose"] == "prenote" and event.data["amount"] == "0.00"
    assert event.data["payment_status"] == "ACHSENT"


def test_a_repeated_request_is_answered_with_the_pending_prenote_and_sent_once(sandbox, bank_account, service):
    bank_account()
    first = request_prenote(service)
    assert first.status_code == 202

    again = request_prenote(service)
    other_provider = request_prenote(service, jpm_body())
    assert again.status_code == other_provider.status_code == 200
    assert again.json()["id"] == other_provider.json()["id"] == first.json()["id"]
    assert again.json()["provider"] == "usio"  # the pending one, not a new one

    prenote_process_batch()
    submitted = request_prenote(service)  # submitted, not verified or returned yet: still pending
    prenote_process_batch()

    assert submitted.status_code == 200 and submitted.json()["id"] == first.json()["id"]
    assert submitted.json()["status"] == "submitted" and submitted.json()["payment_status"] == "ACHSENT"
    assert PrenoteRequest.objects.count() == 1 and Payment.objects.count() == 1
    assert len(submissions(sandbox)) == 1
    assert BankAccountHistory.objects.filter(action="prenote_status").count() == 1  # none → pending, once


def test_after_the_outcome_a_new_request_is_a_new_prenote(sandbox, bank_account, service):
    bank_account()
    payment = submitted_prenote(service)
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach")
    outbox_relay_run()
    assert prenote_status() == "verified"

    response = request_prenote(service)

    assert response.status_code == 202 and response.json()["id"] != str(payment.prenote_request.pk)
    assert prenote_status() == "pending"  # a verified account can be prenoted again
    prenote_process_batch()
    assert len(submissions(sandbox)) == 2


def test_the_job_run_twice_submits_nothing_twice(sandbox, bank_account, service):
    bank_account()
    bank_account(account_id="acc-2")
    request_prenote(service)
    request_prenote(service, jpm_body(account_id="acc-2"))

    first = prenote_process_batch()
    second = prenote_process_batch()

    assert (first.claimed, first.outcomes) == (2, {"sent": 2})
    assert (second.claimed, second.refused, second.released) == (0, 0, 0)
    assert len(submissions(sandbox)) == 2 and Payment.objects.count() == 2


def test_a_batch_is_bounded_and_oldest_first(sandbox, bank_account, service):
    for index in range(3):
        bank_account(account_id=f"acc-{index}")
        request_prenote(service, body(account_id=f"acc-{index}"))

    stats = prenote_process_batch(limit=2)

    assert (stats.claimed, stats.more) == (2, True)
    assert list(PrenoteRequest.objects.order_by("created_at").values_list("status", flat=True)) == [
        "submitted", "submitted", "requested"]
    assert prenote_process_batch(limit=2).claimed == 1


def test_the_api_answer_and_the_logs_never_carry_account_numbers(sandbox, bank_account, service, json_lines):
    bank_account()
    response = request_prenote(service)
    prenote_process_batch()
    payment = Payment.objects.get()
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach")
    outbox_relay_run()

    text = response.content.decode() + "\n".join(str(line) for line in json_lines())
    assert ACCOUNT not in text and ROUTING not in text
    assert any(line.get("message") == "prenote submitted" for line in json_lines())


# --- outcomes -----------------------------------------------------------------------------------------------------


def usio_return(payment, sandbox) -> str:
    """The return the sandbox reports for the prenote (Usio publishes returns the next day), applied as the returns
    sync will apply it. Returns the code."""
    from integrations.usio import usio_client

    sandbox.advance(days=2)  # past 10:00 America/Chicago the day after submission, whatever the time now
    [found] = usio_client("subscription").get_transaction_details(confirmation=payment.confirmation_id).transactions
    assert found.status == "returned"
    payment_apply_status(payment_id=payment.pk, to_status="FAILED", source="usio_sync", failure="returned",
                         return_code=found.return_code, return_info="RETURNED")
    return found.return_code


def test_a_returned_prenote_fails_the_account(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = submitted_prenote(service)
    assert payment.payment_status == "ACHSENT" and prenote_status() == "pending"

    code = usio_return(payment, sandbox)
    assert prenote_status() == "pending"  # the account follows through the outbox, not inline
    outbox_relay_run()

    payment.refresh_from_db()
    assert (code, payment.payment_status, payment.return_code, payment.return_info) == (
        "R02", "FAILED", "R02", "RETURNED")
    assert payment.return_date is not None
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_RETURNED"]
    assert prenote_status() == "failed"
    history = BankAccountHistory.objects.filter(action="prenote_status").order_by("id")
    assert list(history.values_list("prenote_status", "actor")) == [
        ("pending", history[0].actor), ("failed", f"prenote {payment.pk}")]


def test_a_returned_prenote_does_not_block_the_user(sandbox, bank_account, service):
    from blocklist.selectors import blocklist_is_blocked

    bank_account(account_number=RETURNED_R02)  # R02 blocks after a subscription or float return, not a prenote
    usio_return(submitted_prenote(service), sandbox)
    outbox_relay_run()

    assert blocklist_is_blocked(user_id=USER) is False


def test_an_r01_return_is_recorded_and_leaves_the_account_usable(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R01)
    payment = submitted_prenote(service)

    code = usio_return(payment, sandbox)
    outbox_relay_run()

    payment.refresh_from_db()
    assert code == "R01" and (payment.payment_status, payment.return_code) == ("FAILED", "R01")
    assert events(payment) == ["PRENOTE_SUBMITTED", "PRENOTE_RETURNED"]
    assert prenote_status() == "verified"  # not failed: banks wrongly return R01 on prenotes


def test_a_jpm_r01_arrives_as_its_iso_code_and_is_treated_the_same(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R01)
    payment = submitted_prenote(service, jpm_body())
    # As the JPM webhook (a later issue) will apply a RETURNED callback: the ISO code as JPM sends it.
    payment_apply_status(payment_id=payment.pk, to_status="FAILED", source="webhook", failure="returned",
                         return_code="AM04", return_info="AM04: Insufficient funds")
    outbox_relay_run()

    assert prenote_status() == "verified"


def test_a_prenote_rejected_at_once_fails_and_fails_the_account(sandbox, bank_account, service):
    bank_account(account_number=REJECTED_R03)

    payment = submitted_prenote(service)
    outbox_relay_run()

    assert (payment.payment_status, payment.return_code, payment.return_date) == ("FAILED", "R03", None)
    assert events(payment) == ["PRENOTE_RETURNED"]
    assert prenote_status() == "failed"
    prenote = PrenoteRequest.objects.get()
    assert (prenote.status, prenote.last_error) == ("submitted", "rejected R03")
    assert len(submissions(sandbox)) == 1


def test_an_r01_rejection_leaves_the_account_usable_too(sandbox, bank_account, service):
    bank_account(account_number=REJECTED_R01)
    payment = submitted_prenote(service)
    outbox_relay_run()

    assert (payment.payment_status, payment.return_code) == ("FAILED", "R01")
    assert prenote_status() == "verified"


def test_a_late_return_after_verification_fails_the_account(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = submitted_prenote(service)
    payment_apply_status(payment_id=payment.pk, to_status="COMPLETED", source="check_ach")
    outbox_relay_run()
    assert prenote_status() == "verified"

    usio_return(payment, sandbox)  # COMPLETED → FAILED: a late ACH return
    outbox_relay_run()

    assert prenote_status() == "failed"


def test_the_consumer_is_idempotent_and_never_undoes_a_return(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = submitted_prenote(service)
    usio_return(payment, sandbox)
    outbox_relay_run()
    outbox_relay_run()
    assert prenote_status() == "failed"

    # Handled again (a replay) and a verification arriving for a failed account: refused by the account's status
    # table, logged, no error (so the relay neither retries nor dead-letters it).
    assert prenote_account_outcome(payment_id=payment.pk, event_type="PRENOTE_RETURNED", return_code="R02") == "failed"
    assert prenote_account_outcome(payment_id=payment.pk, event_type="PRENOTE_VERIFIED") == \
        "ignored:transition_refused"
    assert prenote_status() == "failed"
    assert BankAccountHistory.objects.filter(action="prenote_status", prenote_status="failed").count() == 1
    assert set(OutboxConsumption.objects.filter(consumer=PRENOTE_ACCOUNT_CONSUMER)
               .values_list("status", flat=True)) == {"done"}


def test_an_outcome_for_numbers_the_account_no_longer_has_is_ignored(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = submitted_prenote(service)
    bank_account(account_number=ACCOUNT)  # new numbers: prenote_status back to none

    usio_return(payment, sandbox)
    outbox_relay_run()

    assert prenote_status() == "none"
    assert prenote_account_outcome(payment_id=payment.pk, event_type="PRENOTE_RETURNED") == "ignored:account_changed"


def test_an_outcome_for_a_deleted_account_is_ignored(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    payment = submitted_prenote(service)
    bank_account_delete(user_id=USER, account_id=ACCOUNT_ID, actor="test")

    usio_return(payment, sandbox)
    stats = outbox_relay_run()

    assert stats.consumer_failures == 0
    assert prenote_account_outcome(payment_id=payment.pk, event_type="PRENOTE_RETURNED") == "ignored:account_deleted"


# --- failures of the submission --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider, operation", [("usio", "usio.SubmitACHPayment"), ("jpm", "jpm.payments")])
def test_a_timeout_leaves_the_prenote_processing_and_the_reconciler_resolves_it(
        sandbox, bank_account, service, provider, operation):
    bank_account()
    sandbox.fault(operation, "timeout")

    payment = submitted_prenote(service, body() if provider == "usio" else jpm_body())

    assert payment.payment_status == "PROCESSING" and events(payment) == []
    prenote = PrenoteRequest.objects.get()
    assert prenote.status == "submitted" and prenote.last_error.startswith("outcome_unknown")
    assert prenote_process_batch().claimed == 0  # never sent again

    stats = reconcile_processing(now=timezone.now() + STUCK)

    payment.refresh_from_db()
    assert stats.resolved == 1 and payment.payment_status == "ACHSENT"
    assert events(payment) == ["PRENOTE_SUBMITTED"]
    assert len(submissions(sandbox)) == 1
    assert changes(payment)[-1] == ("PROCESSING", "ACHSENT", "reconciler")


def test_a_crash_after_the_processor_call_is_resolved_by_the_reconciler_not_resent(sandbox, bank_account, service):
    bank_account()
    request_prenote(service)
    claim = prenote_claim_next()
    outcome = prenote_call_processor(claim=claim)  # sent; the worker dies before step 3
    assert outcome.kind == "sent"

    assert prenote_process_batch().claimed == 0
    reconcile_processing(now=timezone.now() + STUCK)

    payment = Payment.objects.get()
    assert payment.payment_status == "ACHSENT" and payment.confirmation_id == outcome.confirmation_id
    assert len(submissions(sandbox)) == 1
    prenote_apply_outcome(claim=claim, outcome=outcome)  # step 3 finishing late changes nothing
    assert events(payment) == ["PRENOTE_SUBMITTED"]


def test_a_crash_before_the_processor_call_is_given_up_by_the_reconciler_then_submitted_again(
        sandbox, bank_account, service):
    bank_account()
    request_prenote(service)
    claim = prenote_claim_next()  # step 1 only: the processor never hears of it
    first = claim.payment

    assert prenote_process_batch().claimed == 0  # submitted: the job does not send it again
    reconcile_processing(now=timezone.now() + GIVE_UP)
    first.refresh_from_db()
    assert (first.payment_status, first.return_info, events(first)) == ("FAILED", "not_submitted", [])
    assert prenote_status() == "pending"  # a prenote never sent says nothing about the account

    stats = prenote_process_batch(now=timezone.now() + timedelta(hours=2))

    assert (stats.released, stats.claimed) == (1, 1)
    prenote = PrenoteRequest.objects.get()
    second = prenote.payment
    assert second.pk != first.pk and second.payment_status == "ACHSENT" and prenote.attempts == 2
    [call] = submissions(sandbox)
    assert reference_of(call) == second.reference


def test_a_submission_that_never_reached_the_processor_is_tried_again_later(sandbox, bank_account, service):
    bank_account()
    request_prenote(service)

    with override_settings(USIO_BASE_URL="http://127.0.0.1:9/usio"):  # nothing listens: no connection
        stats = prenote_process_batch()

    assert stats.outcomes == {"not_submitted": 1}
    first = Payment.objects.get()
    assert (first.payment_status, first.return_info, events(first)) == ("FAILED", "processor_unavailable", [])
    prenote = PrenoteRequest.objects.get()
    assert (prenote.status, prenote.attempts, prenote.payment_id) == ("requested", 1, None)
    assert prenote.next_attempt_at > timezone.now() and prenote.last_error == "processor_unavailable"
    assert prenote_status() == "pending"

    assert prenote_process_batch().claimed == 0  # not before its back-off
    stats = prenote_process_batch(now=prenote.next_attempt_at)

    assert stats.outcomes == {"sent": 1}
    prenote.refresh_from_db()
    assert (prenote.status, prenote.attempts, prenote.payment.payment_status) == ("submitted", 2, "ACHSENT")
    assert len(submissions(sandbox)) == 1


@override_settings(PRENOTE_MAX_ATTEMPTS=2)
def test_a_request_fails_when_its_attempts_are_spent(sandbox, bank_account, service):
    bank_account()
    request_prenote(service)
    later = timezone.now()
    with override_settings(USIO_BASE_URL="http://127.0.0.1:9/usio"):
        for _ in range(3):
            later += timedelta(days=1)
            prenote_process_batch(now=later)

    prenote = PrenoteRequest.objects.get()
    assert (prenote.status, prenote.attempts) == ("failed", 2)
    assert prenote.last_error == "processor_unavailable (after 2 attempts)"
    assert Payment.objects.filter(payment_status="FAILED").count() == 2
    assert OutboxEvent.objects.count() == 0
    # A new request for the account is a new prenote (the failed one is not pending).
    assert request_prenote(service).status_code == 202


def test_a_request_the_processor_refuses_fails_at_once_without_touching_the_account(sandbox, bank_account,
                                                                                     service):
    bank_account()
    request_prenote(service, jpm_body())

    with override_settings(JPM_COMPANY_NAME="X" * 200):  # JPM refuses the request itself (GCA-010)
        prenote_process_batch()

    payment = Payment.objects.get()
    assert (payment.payment_status, payment.return_info, events(payment)) == ("FAILED", "processor_refused", [])
    prenote = PrenoteRequest.objects.get()
    assert prenote.status == "failed" and prenote.last_error.startswith("processor_refused GCA-")
    assert prenote_status() == "pending"


def test_an_account_deleted_before_the_job_fails_the_request_and_sends_nothing(sandbox, bank_account, service):
    bank_account()
    request_prenote(service)
    bank_account_delete(user_id=USER, account_id=ACCOUNT_ID, actor="test")

    stats = prenote_process_batch()

    assert (stats.claimed, stats.refused) == (0, 1)
    prenote = PrenoteRequest.objects.get()
    assert (prenote.status, prenote.last_error, prenote.payment_id) == ("failed", "bank_account_not_found", None)
    assert Payment.objects.count() == 0 and submissions(sandbox) == []


def test_new_numbers_supersede_a_waiting_request(sandbox, bank_account, service):
    bank_account(account_number=RETURNED_R02)
    old = request_prenote(service).json()
    bank_account(account_number=ACCOUNT)  # the account's numbers change: prenote_status back to none
    assert prenote_status() == "none"

    new = request_prenote(service)

    assert new.status_code == 202 and new.json()["id"] != old["id"]
    assert new.json()["masked_account_number"] == ACCOUNT[-4:]
    assert PrenoteRequest.objects.get(pk=old["id"]).last_error == "bank_account_changed"
    prenote_process_batch()
    assert len(submissions(sandbox)) == 1
    assert PrenoteRequest.objects.get(pk=new.json()["id"]).status == "submitted"


def test_numbers_changed_between_request_and_job_fail_the_request(sandbox, bank_account, service):
    bank_account()
    request_prenote(service)
    bank_account_save(user_id=USER, account_id=ACCOUNT_ID, account_number=RETURNED_R02, routing_number=ROUTING,
                      actor="test")

    assert prenote_process_batch().refused == 1
    assert PrenoteRequest.objects.get().last_error == "bank_account_changed" and submissions(sandbox) == []


# --- listing ------------------------------------------------------------------------------------------------------


def test_a_users_prenotes_are_listed_by_the_payments_listing(sandbox, bank_account, service, caller):
    bank_account()
    payment = submitted_prenote(service)
    Payment.objects.create(user_id=USER, purpose="float", payment_method="ach", payment_type="debit",
                           payment_provider="usio", amount="10.00", account_id=ACCOUNT_ID, submit_date=timezone.now())

    for role in ("service", "support", "user"):
        response = caller(role).get(f"/api/v1/users/{USER}/payments", {"purpose": "prenote"})
        assert response.status_code == 200, role
        [item] = response.json()["results"]
        assert (item["id"], item["purpose"], item["amount"], item["event_type"]) == (
            str(payment.pk), "prenote", "0.00", "PRENOTE_SUBMITTED")
    everything = caller("service").get(f"/api/v1/users/{USER}/payments").json()["results"]
    assert len(everything) == 2


# --- bad input and roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, status, code", [
    (body(account_id="acc-unknown"), 422, "bank_account_not_found"),
    (body(user_id=OTHER_USER), 422, "bank_account_not_found"),  # the account exists, but not for this user
    (body(usio_account=None), 422, "usio_account_required"),
    (jpm_body(usio_account="subscription"), 422, "usio_account_not_allowed"),
    (body(usio_account="float_credit"), 400, "validation_error"),
    (body(usio_account="loan"), 400, "validation_error"),
    (body(provider="stripe"), 400, "validation_error"),
    (body(user_id=None), 400, "validation_error"),
    (body(account_id=None), 400, "validation_error"),
    ({"user_id": USER, "account_id": ACCOUNT_ID}, 400, "validation_error"),
    (body(amount="0.00"), 400, "validation_error"),  # unknown field
    (body(user_id="bad id with spaces"), 422, "invalid_user_id"),
    (body(account_id="a" * 65), 400, "validation_error"),
    (body(account_id="bad/id"), 422, "invalid_account_id"),
    (body(account_id="4111111111111111"), 422, "card_data_not_allowed"),
])
def test_bad_input_is_refused_precisely_and_changes_nothing(sandbox, bank_account, service, no_kick, data, status,
                                                              code, django_capture_on_commit_callbacks):
    bank_account()
    bank_account(user_id=OTHER_USER, account_id="acc-other")
    before = state()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = service.post(URL, data, format="json", HTTP_IDEMPOTENCY_KEY="bad-input-key")

    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert state() == before
    assert callbacks == [] and no_kick() == []
    prenote_process_batch()
    assert submissions(sandbox) == []


def test_a_malformed_body_is_400(bank_account, service):
    bank_account()
    response = service.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400 and PrenoteRequest.objects.count() == 0


@pytest.mark.parametrize("role, status", [
    ("service", 202), ("support", 403), ("admin", 403), ("user", 403), ("other_user", 403), ("none", 401),
])
def test_roles(sandbox, bank_account, caller, role, status):
    bank_account()

    response = caller(role).post(URL, body(), format="json")

    assert response.status_code == status
    if status != 202:
        assert "error" in response.json()
        assert PrenoteRequest.objects.count() == 0 and prenote_status() == "none"


def test_get_is_not_allowed(service):
    assert service.get(URL).status_code == 405


# --- the optional Idempotency-Key ---------------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_answer(sandbox, bank_account, service):
    bank_account()
    first = service.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="prenote-key-1")
    prenote_process_batch()

    again = service.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="prenote-key-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert PrenoteRequest.objects.count() == 1 and len(submissions(sandbox)) == 1
    without_key = service.post(URL, body(), format="json")  # no key: the pending prenote, as it is now
    assert without_key.status_code == 200 and without_key.json()["status"] == "submitted"


def test_the_same_key_with_another_body_is_refused(sandbox, bank_account, service):
    bank_account()
    bank_account(account_id="acc-2")
    service.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="prenote-key-2")

    response = service.post(URL, body(account_id="acc-2"), format="json", HTTP_IDEMPOTENCY_KEY="prenote-key-2")

    assert response.status_code == 422 and response.json()["error"]["code"] == "idempotency_key_reused"
    assert PrenoteRequest.objects.count() == 1 and prenote_status(account_id="acc-2") == "none"


def test_an_invalid_key_is_400(bank_account, service):
    bank_account()
    response = service.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="\u00e9t\u00e9")
    assert response.status_code == 400 and response.json()["error"]["code"] == "idempotency_key_invalid"
    assert PrenoteRequest.objects.count() == 0


def test_a_blocked_user_may_prenote(sandbox, bank_account, service):
    """Decision: a prenote moves no money and is how a blocked user's new account gets proven."""
    from blocklist.selectors import blocklist_is_blocked
    from blocklist.services import blocklist_block

    bank_account()
    blocklist_block(user_id=USER, reason="test", actor="support:test")

    payment = submitted_prenote(service)

    assert blocklist_is_blocked(user_id=USER) is True
    assert payment.payment_status == "ACHSENT" and len(submissions(sandbox)) == 1
