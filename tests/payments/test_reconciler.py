"""The stuck-payment reconciler (SPEC §7.7), against the sandbox processors over real HTTP.

The crash between the submission's steps is simulated for real: ``payment_claim`` (step 1) and
``payment_call_processor`` (step 2) run, ``payment_apply_outcome`` (step 3) does not — the payment is PROCESSING
while the processor has it. Time is moved with ``now=`` (our clock) and ``sandbox.advance`` (the processors'), never
by sleeping.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from bank_accounts.services import bank_account_save
from cards.services import card_save
from core.auth.principal import Principal
from core.idempotency import fingerprint
from core.models import OutboxEvent
from payments.models import Payment, PaymentStatusChange
from payments.reconciler import reconcile_processing
from payments.routing import usio_merchant_id
from payments.services import payment_apply_outcome, payment_call_processor, payment_claim, payment_submit

pytestmark = pytest.mark.django_db

USER = "recon-user"
PRINCIPAL = Principal(role="service", name="recon-tests", client_id="key:recon-tests")
ROUTING = "021000021"  # RTP-eligible in the sandbox
NOT_RTP_ROUTING = "111000025"  # passes the ABA checksum, not RTP-eligible
ACCOUNTS = {
    "acc-ok": "123456789",
    "acc-returned": "5555009902",  # 99NN: settles, then returned R02 (JPM: AC04)
    "acc-rejected": "5555009803",  # 98NN: rejected at once R03 (JPM: AC01)
    "acc-no-rtp": "123456780",
}
STUCK = timedelta(minutes=6)  # past PROCESSING_STUCK_MINUTES (5)
GIVE_UP = timedelta(minutes=61)  # past PROCESSING_GIVE_UP_MINUTES (60)


@pytest.fixture
def customer(db):
    for account_id, number in ACCOUNTS.items():
        bank_account_save(user_id=USER, account_id=account_id, account_number=number,
                          routing_number=NOT_RTP_ROUTING if account_id == "acc-no-rtp" else ROUTING, actor="test")
    card_save(user_id=USER, masked_card_number="4242", card_exp=f"12{timezone.now().year + 3}",
              transaction_reference_id="tok_credit_recon", debit_transaction_reference_id="tok_debit_recon",
              actor="test")
    return USER


_keys = iter(range(1_000_000))


def body(purpose="float", payment_type="debit", payment_method="ach", amount="25.00", **extra) -> dict:
    data = {"user_id": USER, "purpose": purpose, "payment_type": payment_type, "payment_method": payment_method,
            "amount": amount}
    if payment_method in ("ach", "rtp"):
        data["account_id"] = extra.pop("account_id", "acc-ok")
    data.update(extra)
    return data


@dataclass
class Crashed:
    payment: Payment
    outcome: object  # the processor outcome step 3 never applied


def claim(data: dict):
    key = f"recon-{next(_keys)}"
    return payment_claim(principal=PRINCIPAL, idempotency_key=key,
                         fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=data), data=data)


def crash_after_processor_call(data: dict, expected_kind: str = "sent") -> Crashed:
    """Steps 1 and 2 of the submission; the worker dies before step 3."""
    the_claim = claim(data)
    assert the_claim.response is None, the_claim.response
    outcome = payment_call_processor(claim=the_claim)
    assert outcome.kind == expected_kind, outcome
    payment = Payment.objects.get(pk=the_claim.payment.pk)
    assert payment.payment_status == "PROCESSING"
    return Crashed(payment, outcome)


def crash_before_processor_call(data: dict) -> Payment:
    """Step 1 only: the payment exists, the processor never heard of it."""
    the_claim = claim(data)
    assert the_claim.response is None, the_claim.response
    return the_claim.payment


def later(delta: timedelta):
    return timezone.now() + delta


def changes(payment: Payment) -> list[tuple]:
    return [(c.from_status, c.to_status, c.source) for c in
            PaymentStatusChange.objects.filter(payment=payment).order_by("at", "id")]


def event_types(payment: Payment) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                .values_list("type", flat=True))


def state(payment: Payment) -> dict:
    return {"row": Payment.objects.filter(pk=payment.pk).values().get(), "changes": changes(payment),
            "events": event_types(payment)}


def masked(merchant_id: str) -> str:
    """How the sandbox's request log shows a merchant id (redacted to its last 4)."""
    return "****" + merchant_id[-4:]


def lookups(sandbox, service: str) -> list[dict]:
    operation = {"usio": "usio.GetTransactionDetails", "jpm": "jpm.payment_status"}[service]
    return sandbox.requests(service, operation)


# --- found at the processor: the outcome step 3 would have applied -----------------------------------------------


def test_usio_ach_processed_but_left_processing_becomes_achsent(sandbox, customer):
    crashed = crash_after_processor_call(body())

    stats = reconcile_processing(now=later(STUCK))

    assert (stats.examined, stats.resolved, stats.outcomes) == (1, 1, {"ACHSENT": 1})
    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert payment.payment_status == "ACHSENT"
    assert payment.confirmation_id == crashed.outcome.confirmation_id
    assert changes(payment) == [(None, "PROCESSING", "api"), ("PROCESSING", "ACHSENT", "reconciler")]
    last = PaymentStatusChange.objects.filter(payment=payment).latest("at", "id")
    assert last.actor == "reconciler"
    assert last.raw_payload_ref == f"usio:float_debit:GetTransactionDetails:{payment.confirmation_id}"
    assert event_types(payment) == []  # entering ACHSENT writes no event (SPEC §4)
    assert len(sandbox.requests("usio", "usio.SubmitACHPayment")) == 1  # looked up, never submitted again
    [lookup] = lookups(sandbox, "usio")
    assert lookup["body"]["AdditionalSearch"] == payment.reference


@pytest.mark.parametrize(
    ("data", "account", "event"),
    [
        (body("subscription", "debit", "pinless"), "subscription", "SUBSCRIPTION_COMPLETED"),
        (body("loan", "debit", "pinless"), "loan", "LOAN_DEBIT_COMPLETED"),
        (body("float", "credit", "pinless"), "float_credit", "FLOAT_CREDIT_COMPLETED"),
        (body("float", "credit", "rtp", rtp_mode="only"), "float_credit", "FLOAT_CREDIT_COMPLETED"),
    ],
    ids=["pinless-debit", "pinless-loan-debit", "pinless-credit", "rtp-credit"],
)
def test_usio_card_and_rtp_approved_become_completed(sandbox, customer, data, account, event):
    crashed = crash_after_processor_call(data, expected_kind="approved")

    stats = reconcile_processing(now=later(STUCK))

    assert (stats.resolved, stats.outcomes) == (1, {"COMPLETED": 1})
    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert payment.payment_status == "COMPLETED" and payment.completion_date is not None
    assert payment.confirmation_id == crashed.outcome.confirmation_id
    assert payment.merchant_account == usio_merchant_id(account)
    assert event_types(payment) == [event]
    [lookup] = lookups(sandbox, "usio")
    assert lookup["body"]["MerchantID"] == masked(usio_merchant_id(account))  # asked the payment's own account


def test_rtp_that_fell_back_to_ach_becomes_achsent(sandbox, customer):
    crashed = crash_after_processor_call(body("loan", "credit", "rtp", account_id="acc-no-rtp", rtp_mode="fallback"))
    assert crashed.payment.payment_method == "ach"  # switched before the ACH request was sent

    reconcile_processing(now=later(STUCK))

    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert (payment.payment_status, payment.confirmation_id) == ("ACHSENT", crashed.outcome.confirmation_id)
    assert event_types(payment) == []


def test_jpm_accepted_becomes_achsent(sandbox, customer):
    crashed = crash_after_processor_call(body("subscription", "debit", "ach"))
    assert crashed.payment.payment_provider == "jpm"

    stats = reconcile_processing(now=later(STUCK))

    assert (stats.resolved, stats.outcomes) == (1, {"ACHSENT": 1})
    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert (payment.payment_status, payment.confirmation_id) == ("ACHSENT", payment.reference)
    assert changes(payment)[-1] == ("PROCESSING", "ACHSENT", "reconciler")
    assert event_types(payment) == []
    assert len(sandbox.requests("jpm", "jpm.payments")) == 1
    assert len(lookups(sandbox, "jpm")) == 1


def test_jpm_rejected_98nn_becomes_failed_rejected(sandbox, customer):
    crashed = crash_after_processor_call(body("subscription", "debit", "ach", account_id="acc-rejected"))

    stats = reconcile_processing(now=later(STUCK))

    assert stats.outcomes == {"FAILED": 1}
    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert payment.payment_status == "FAILED"
    assert payment.return_code == "AC01"  # R03 as JPM reports it (ISO)
    assert payment.return_info.startswith("AC01")
    assert payment.return_date is None  # a rejection is not a return
    assert changes(payment)[-1] == ("PROCESSING", "FAILED", "reconciler")
    assert event_types(payment) == ["SUBSCRIPTION_FAILED"]


def test_jpm_cleared_is_applied_too(sandbox, customer):
    crashed = crash_after_processor_call(body("subscription", "debit", "ach"))
    sandbox.advance(seconds=3700)  # JPM: ACCEPTED +1 min, CLEARED +1 h

    reconcile_processing(now=later(STUCK))

    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert payment.payment_status == "CLEARED" and payment.cleared_date is not None
    assert changes(payment)[1:] == [("PROCESSING", "ACHSENT", "reconciler"), ("ACHSENT", "CLEARED", "reconciler")]
    assert event_types(payment) == ["SUBSCRIPTION_CLEARED"]


def test_jpm_completed_is_cleared_and_sent_not_completed(sandbox, customer):
    """JPM COMPLETED is not final for us (SPEC §7.1): CLEARED + SUBSCRIPTION_SENT; check-ach completes it later."""
    crashed = crash_after_processor_call(body("subscription", "debit", "ach"))
    sandbox.advance(days=1, seconds=60)

    reconcile_processing(now=later(STUCK))

    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert payment.payment_status == "CLEARED" and payment.completion_date is None
    assert event_types(payment) == ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT"]


def test_jpm_returned_is_sent_then_failed_returned(sandbox, customer):
    crashed = crash_after_processor_call(body("subscription", "debit", "ach", account_id="acc-returned"))
    sandbox.advance(days=3)

    stats = reconcile_processing(now=later(STUCK))

    assert stats.outcomes == {"FAILED": 1}
    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert (payment.payment_status, payment.return_code) == ("FAILED", "AC04")
    assert payment.return_date is not None
    assert changes(payment)[1:] == [("PROCESSING", "ACHSENT", "reconciler"), ("ACHSENT", "FAILED", "reconciler")]
    assert event_types(payment) == ["SUBSCRIPTION_RETURNED"]  # the blocklist consumer's event


def test_usio_ach_already_returned_is_sent_then_failed_returned(sandbox, customer):
    crashed = crash_after_processor_call(body(account_id="acc-returned"))
    sandbox.advance(days=2)  # returned at 10:00 CT the day after submission

    reconcile_processing(now=later(STUCK))

    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert (payment.payment_status, payment.return_code, payment.return_info) == ("FAILED", "R02", "RETURNED")
    assert payment.return_date is not None
    assert event_types(payment) == ["FLOAT_DEBIT_RETURNED"]


def test_usio_card_already_charged_back_is_completed_then_charged_back(sandbox, customer):
    crashed = crash_after_processor_call(body("float", "debit", "pinless"), expected_kind="approved")
    sandbox.control("POST", "usio/chargeback", {"confirmation": crashed.outcome.confirmation_id, "code": "4837"})

    reconcile_processing(now=later(STUCK))

    payment = Payment.objects.get(pk=crashed.payment.pk)
    assert (payment.payment_status, payment.return_code) == ("CHARGED_BACK", "4837")
    assert event_types(payment) == ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_CHARGED_BACK"]


def test_a_prenote_without_merchant_account_is_found_on_either_prenote_account(sandbox, customer):
    """Prenotes are not submitted by this API; the PROCESSING prenote and its Usio entry are made here."""
    from integrations.usio import usio_client

    prenote = Payment.objects.create(user_id=USER, purpose="prenote", payment_type="debit", payment_method="ach",
                                     payment_provider="usio", amount=Decimal("0.00"), account_id="acc-ok",
                                     masked_account_number="6789", submit_date=timezone.now())
    usio_client("float_debit").submit_ach_payment(routing_number=ROUTING, account_number=ACCOUNTS["acc-ok"],
                                                  trans_code="28", amount=Decimal("0"), reference=prenote.reference,
                                                  first_name="Pre", last_name="Note")

    reconcile_processing(now=later(STUCK))

    prenote.refresh_from_db()
    assert prenote.payment_status == "ACHSENT" and prenote.confirmation_id
    assert event_types(prenote) == ["PRENOTE_SUBMITTED"]
    merchants = [r["body"]["MerchantID"] for r in lookups(sandbox, "usio")]
    assert merchants == [masked(usio_merchant_id("subscription")), masked(usio_merchant_id("float_debit"))]


# --- a processor timeout at submission, resolved both ways -------------------------------------------------------


def submit(data: dict):
    key = f"recon-{next(_keys)}"
    return payment_submit(principal=PRINCIPAL, idempotency_key=key,
                          fingerprint=fingerprint(method="POST", path="/api/v1/payments", body=data), data=data)


def test_submission_timeout_processed_at_usio_is_completed_by_the_reconciler(sandbox, customer):
    sandbox.fault("usio.SubmitTokenPayment", "timeout")  # processed, answer never arrives in time
    result = submit(body("float", "debit", "pinless"))
    assert result.status_code == 202 and result.body["payment_status"] == "PROCESSING"

    stats = reconcile_processing(now=later(STUCK))

    assert stats.outcomes == {"COMPLETED": 1}
    payment = Payment.objects.get(pk=result.payment_id)
    assert payment.payment_status == "COMPLETED"
    assert len(sandbox.requests("usio", "usio.SubmitTokenPayment")) == 1


def test_submission_5xx_never_processed_is_failed_after_the_give_up_age(sandbox, customer):
    sandbox.fault("usio.SubmitACHPayment", "500")  # not processed; to us the outcome is unknown
    result = submit(body())
    assert result.status_code == 202
    payment = Payment.objects.get(pk=result.payment_id)

    young = reconcile_processing(now=later(STUCK))
    assert (young.waiting, young.given_up) == (1, 0)
    assert Payment.objects.get(pk=payment.pk).payment_status == "PROCESSING"

    old = reconcile_processing(now=later(GIVE_UP))
    assert (old.given_up, old.outcomes) == (1, {"FAILED": 1})
    payment.refresh_from_db()
    assert (payment.payment_status, payment.return_info) == ("FAILED", "not_submitted")
    assert payment.return_date is None and payment.confirmation_id is None
    assert event_types(payment) == ["FLOAT_DEBIT_FAILED"]


# --- not found ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [body(), body("subscription", "debit", "ach"), body("float", "debit", "pinless")],
                         ids=["usio-ach", "jpm", "usio-card"])
def test_not_submitted_and_past_the_give_up_age_is_failed_not_submitted(sandbox, customer, data):
    payment = crash_before_processor_call(data)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.examined, stats.given_up, stats.resolved, stats.outcomes) == (1, 1, 0, {"FAILED": 1})
    payment.refresh_from_db()
    assert payment.payment_status == "FAILED"
    assert payment.return_info == "not_submitted"
    assert payment.return_date is None and payment.completion_date is None
    last = PaymentStatusChange.objects.filter(payment=payment).latest("at", "id")
    assert (last.from_status, last.to_status, last.source, last.actor) == (
        "PROCESSING", "FAILED", "reconciler", "reconciler")
    assert last.raw_payload_ref.endswith(":not_found")
    assert len(event_types(payment)) == 1 and event_types(payment)[0].endswith("_FAILED")
    submissions = [r for r in sandbox.requests() if r["operation"] in (
        "usio.SubmitACHPayment", "usio.SubmitTokenPayment", "jpm.payments")]
    assert submissions == []  # the reconciler only looks; it never submits


def test_not_submitted_but_young_is_left_alone(sandbox, customer):
    payment = crash_before_processor_call(body())
    before = state(payment)

    stats = reconcile_processing(now=later(timedelta(minutes=30)))

    assert (stats.examined, stats.waiting, stats.given_up) == (1, 1, 0)
    assert state(payment) == before
    assert len(lookups(sandbox, "usio")) == 1


def test_not_yet_stuck_is_not_even_looked_up(sandbox, customer):
    payment = crash_before_processor_call(body())
    before = state(payment)

    stats = reconcile_processing(now=later(timedelta(minutes=4)))

    assert stats.examined == 0
    assert state(payment) == before
    assert lookups(sandbox, "usio") == []


def test_final_and_other_statuses_are_never_touched(sandbox, customer):
    crashed = crash_after_processor_call(body())
    payment_apply_outcome(claim=claim_for(crashed), outcome=crashed.outcome)  # step 3 did run after all
    before = state(crashed.payment)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert stats.examined == 0 and state(crashed.payment) == before
    assert lookups(sandbox, "usio") == []


def claim_for(crashed: Crashed):
    """A step-1 claim object for an existing payment (to run step 3 late, as a slow worker would)."""
    from payments.services import Claim, payment_validate

    data = body()
    return Claim(request=payment_validate(principal=PRINCIPAL, data=data), record=None, payment=crashed.payment)


# --- the processor cannot be asked: never fail, count --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "operation", "service"),
    [(body(), "usio.GetTransactionDetails", "usio"), (body("subscription", "debit", "ach"), "jpm.payment_status",
                                                      "jpm")],
    ids=["usio", "jpm"],
)
@pytest.mark.parametrize("mode", ["500", "malformed"])
def test_processor_errors_leave_the_payment_and_are_counted(sandbox, customer, data, operation, service, mode):
    payment = crash_before_processor_call(data)  # not at the processor: "not found" would fail it
    before = state(payment)
    sandbox.fault(operation, mode)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.examined, stats.errors, stats.given_up, stats.outcomes) == (1, 1, 0, {})
    assert state(payment) == before
    assert len(lookups(sandbox, service)) == 1


def test_a_lookup_timeout_leaves_the_payment(sandbox, customer):
    payment = crash_before_processor_call(body())
    before = state(payment)
    sandbox.fault("usio.GetTransactionDetails", "timeout")

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.errors, stats.given_up) == (1, 0)
    assert state(payment) == before


def test_a_refused_connection_leaves_the_payment(sandbox, customer, settings):
    payment = crash_before_processor_call(body())
    jpm_payment = crash_before_processor_call(body("subscription", "debit", "ach"))
    before = [state(payment), state(jpm_payment)]
    settings.USIO_BASE_URL = "http://127.0.0.1:9/usio"  # discard port: nothing listens
    settings.JPM_BASE_URL = "http://127.0.0.1:9/jpm"

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.examined, stats.errors, stats.given_up) == (2, 2, 0)
    assert [state(payment), state(jpm_payment)] == before


def test_unknown_merchant_account_is_an_error_not_a_not_found(sandbox, customer):
    payment = crash_before_processor_call(body())
    Payment.objects.filter(pk=payment.pk).update(merchant_account="00000000")  # e.g. an account since removed
    before = state(payment)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.errors, stats.given_up) == (1, 0)
    assert state(payment) == before
    assert lookups(sandbox, "usio") == []


def test_a_processor_record_that_does_not_fit_the_payment_is_left_for_support(sandbox, customer):
    from integrations.usio import usio_client

    payment = crash_before_processor_call(body(amount="25.00"))
    usio_client("float_debit").submit_ach_payment(
        routing_number=ROUTING, account_number=ACCOUNTS["acc-ok"], trans_code="27", amount=Decimal("99.00"),
        reference=payment.reference, first_name="Some", last_name="One")
    before = state(payment)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.errors, stats.resolved, stats.given_up) == (1, 0, 0)
    assert state(payment) == before


def test_after_consecutive_errors_the_rest_of_that_account_is_skipped(sandbox, customer):
    usio = [crash_before_processor_call(body()) for _ in range(5)]
    jpm = crash_before_processor_call(body("subscription", "debit", "ach"))
    sandbox.fault("usio.GetTransactionDetails", "500", count=10)

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.examined, stats.errors, stats.skipped, stats.given_up) == (6, 3, 2, 1)
    assert len(lookups(sandbox, "usio")) == 3
    assert all(Payment.objects.get(pk=p.pk).payment_status == "PROCESSING" for p in usio)
    assert Payment.objects.get(pk=jpm.pk).payment_status == "FAILED"  # another processor: not affected


def test_the_time_budget_skips_the_rest(sandbox, customer, settings):
    payment = crash_before_processor_call(body())
    settings.RECONCILER_TIME_BUDGET_SECONDS = 0

    stats = reconcile_processing(now=later(GIVE_UP))

    assert (stats.examined, stats.skipped) == (1, 1)
    assert Payment.objects.get(pk=payment.pk).payment_status == "PROCESSING"
    assert lookups(sandbox, "usio") == []


# --- idempotent, chunked --------------------------------------------------------------------------------------------


def test_rerunning_changes_nothing(sandbox, customer):
    found = crash_after_processor_call(body())
    lost = crash_before_processor_call(body("subscription", "debit", "ach"))
    first = reconcile_processing(now=later(GIVE_UP))
    assert (first.resolved, first.given_up) == (1, 1)
    waiting = crash_before_processor_call(body("float", "debit", "pinless"))
    after_first = [state(p) for p in (found.payment, lost, waiting)]
    events_before = OutboxEvent.objects.count()

    for _ in range(2):  # the resolved ones are no longer PROCESSING; `waiting` is not found and not old enough
        again = reconcile_processing(now=later(timedelta(minutes=30)))
        assert (again.examined, again.waiting, again.resolved, again.given_up) == (1, 1, 0, 0)

    assert [state(p) for p in (found.payment, lost, waiting)] == after_first
    assert OutboxEvent.objects.count() == events_before


def test_many_stuck_payments_are_read_in_chunks(sandbox, customer, monkeypatch, django_assert_num_queries):
    import payments.reconciler as reconciler

    monkeypatch.setattr(reconciler, "CHUNK_SIZE", 3)
    payments = [crash_before_processor_call(body()) for _ in range(7)]

    with django_assert_num_queries(3):  # 3 + 3 + 1 rows; no query per payment (they are all still waiting)
        stats = reconcile_processing(now=later(timedelta(minutes=30)))

    assert (stats.examined, stats.waiting) == (7, 7)  # every one exactly once across three chunks
    assert len(lookups(sandbox, "usio")) == 7
    assert sorted(r["body"]["AdditionalSearch"] for r in lookups(sandbox, "usio")) == sorted(
        p.reference for p in payments)


@pytest.mark.django_db(transaction=True)
def test_a_payment_resolved_by_step_3_during_the_lookup_is_left_as_step_3_made_it(sandbox, customer):
    """The reconciler races the submission's own step 3 (a slow worker): step 3 wins, nothing is applied twice."""
    the_claim = claim(body())
    outcome = payment_call_processor(claim=the_claim)
    sandbox.fault("usio.GetTransactionDetails", "slow", delay=1.0)
    result: dict = {}

    def run():
        from django.db import connection

        try:
            result["stats"] = reconcile_processing(now=later(STUCK))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    threading.Event().wait(0.3)  # the reconciler is waiting for the processor's answer
    payment_apply_outcome(claim=the_claim, outcome=outcome)
    thread.join(timeout=30)

    stats = result["stats"]
    assert (stats.examined, stats.unchanged, stats.resolved) == (1, 1, 0)
    payment = Payment.objects.get(pk=the_claim.payment.pk)
    assert payment.payment_status == "ACHSENT" and payment.version == 1
    assert changes(payment) == [(None, "PROCESSING", "api"), ("PROCESSING", "ACHSENT", "api")]


# --- the job, the task and the schedule ------------------------------------------------------------------------------


def _age(payment: Payment, delta: timedelta) -> None:
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - delta)  # test setup: an older payment


def test_run_job_reconcile_processing(sandbox, customer, capsys):
    crashed = crash_after_processor_call(body())
    _age(crashed.payment, STUCK)

    call_command("run_job", "reconcile_processing")

    out = json.loads(capsys.readouterr().out)
    assert out["job"] == "reconcile_processing"
    assert out["result"]["resolved"] == 1 and out["result"]["outcomes"] == {"ACHSENT": 1}
    assert Payment.objects.get(pk=crashed.payment.pk).payment_status == "ACHSENT"


def test_run_job_as_of_a_past_day_sees_only_payments_stuck_by_then(sandbox, customer, capsys):
    payment = crash_before_processor_call(body())
    _age(payment, GIVE_UP)
    call_command("run_job", "reconcile_processing", "--as-of", (date.today() - timedelta(days=3)).isoformat())
    assert json.loads(capsys.readouterr().out)["result"]["examined"] == 0
    assert Payment.objects.get(pk=payment.pk).payment_status == "PROCESSING"


def test_run_job_as_of_a_future_day_cannot_age_payments(sandbox, customer, capsys):
    payment = crash_before_processor_call(body())
    _age(payment, timedelta(minutes=10))
    call_command("run_job", "reconcile_processing", "--as-of", (date.today() + timedelta(days=30)).isoformat())
    result = json.loads(capsys.readouterr().out)["result"]
    assert (result["examined"], result["waiting"], result["given_up"]) == (1, 1, 0)
    assert Payment.objects.get(pk=payment.pk).payment_status == "PROCESSING"


def test_the_task_runs_the_reconciler_on_the_default_queue(sandbox, customer):
    from config.celery import app
    from payments.tasks import reconcile_processing_task

    payment = crash_before_processor_call(body())
    _age(payment, GIVE_UP)
    task = app.tasks["payments.reconcile_processing"]
    assert task.job_queue == "default"
    assert reconcile_processing_task()["given_up"] == 1
    assert Payment.objects.get(pk=payment.pk).payment_status == "FAILED"


def test_the_schedule_is_registered_every_15_minutes():
    from django_celery_beat.models import PeriodicTask

    from core.schedules import all_schedules

    [spec] = [s for s in all_schedules() if s.task == "payments.reconcile_processing"]
    assert (spec.name, spec.every_seconds, spec.prod_only) == ("stuck-payment reconciler", 900, False)
    call_command("setup_schedules")
    task = PeriodicTask.objects.get(name="stuck-payment reconciler")
    assert (task.task, task.interval.every, task.interval.period, task.enabled) == (
        "payments.reconcile_processing", 900, "seconds", True)


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        reconcile_processing(now=timezone.now().replace(tzinfo=None))

