"""A prenote worker SIGKILLed while a submission is in flight at the processor (issue 9).

Real processes: gunicorn takes the prenote requests (its after-commit kicks go to the private Redis), Celery workers
run the prenote job (queue ``prenotes``) and then the relay and the stuck-payment reconciler (queue ``default``),
the sandbox is Usio and JPM. The sandbox takes the third Usio prenote, logs it and holds the answer, so the request
is provably in flight when the worker is killed. The job's message comes back to a new worker (``acks_late``); it
must not send that prenote again (its request became ``submitted`` in the transaction that created its payment):
the payment stays PROCESSING until the reconciler finds it at Usio. The sandbox's request log is the witness: one
submission per account.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import requests

from bank_accounts.models import BankAccountHistory
from bank_accounts.selectors import bank_account_get
from core.models import DeadLetter, OutboxConsumption, OutboxEvent
from payments.models import Payment, PaymentStatusChange, PrenoteRequest
from payments.tasks import reconcile_processing_task
from tests.integration.stack import publish, wait_for
from tests.payments.conftest import ROUTING, reference_of

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WAIT = 90.0
URL = "/api/v1/prenotes"
ACCOUNT_ID = "acc-1"
HANG_SECONDS = 20  # the sandbox's answer to the prenote in flight; the worker waits 25 s (killed long before)
# The prenotes in the order they are requested (and submitted): user -> (provider, usio_account, account number).
PRENOTES = {
    "pn-user-1": ("usio", "subscription", "739146285101"),
    "pn-user-2": ("usio", "float_debit", "739146285102"),
    "pn-user-3": ("usio", "subscription", "739146285103"),  # the third Usio submission: in flight when killed
    "pn-user-4": ("jpm", None, "739146285104"),
    "pn-user-5": ("usio", "float_debit", "7391462898" + "03"),  # 98nn: rejected at once, R03
    "pn-user-6": ("usio", "subscription", "739146285106"),
}
IN_FLIGHT = "pn-user-3"
REJECTED = "pn-user-5"
SUBMISSIONS = ("usio.SubmitACHPayment", "jpm.payments")


def submissions(sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["operation"] in SUBMISSIONS]


def payment_of(user_id: str) -> Payment:
    return Payment.objects.get(user_id=user_id)


def test_a_prenote_worker_killed_mid_submission_sends_every_prenote_once(
        sandbox, redis_server, start_api, start_worker, make_api_key, bank_account):
    for user_id, (_, _, number) in PRENOTES.items():
        bank_account(user_id=user_id, account_id=ACCOUNT_ID, account_number=number, routing_number=ROUTING)
    api = start_api(workers=1, threads=2)
    key = make_api_key("service")
    for user_id, (provider, usio_account, _) in PRENOTES.items():
        body = {"user_id": user_id, "account_id": ACCOUNT_ID, "provider": provider}
        if usio_account:
            body["usio_account"] = usio_account
        response = requests.post(f"{api.url}{URL}", json=body, timeout=60,
                                 headers={"X-API-Key": key, "Idempotency-Key": f"k-{uuid.uuid4()}"})
        assert response.status_code == 202, response.text
    assert PrenoteRequest.objects.filter(status="requested").count() == 6 and Payment.objects.count() == 0

    # Usio answers the first two prenotes at once; it takes the third and holds its answer for 20 s.
    sandbox.configure(hang_seconds=HANG_SECONDS)
    sandbox.fault("usio.SubmitACHPayment", "slow", count=2, delay=0)
    sandbox.fault("usio.SubmitACHPayment", "timeout")
    doomed = start_worker(["prenotes"], USIO_READ_TIMEOUT=str(HANG_SECONDS + 5))  # the API's kicks are queued
    wait_for(lambda: any(r["fault"] == "timeout" for r in submissions(sandbox)), timeout=WAIT,
             what="the third Usio prenote to be in flight")
    doomed.kill()

    in_flight = payment_of(IN_FLIGHT)
    assert in_flight.payment_status == "PROCESSING"  # created (step 1), sent (step 2), outcome never applied
    assert Payment.objects.filter(payment_status="ACHSENT").count() == 2
    assert PrenoteRequest.objects.filter(status="requested").count() == 3

    # A new worker: the job's message comes back; the relay and the reconciler (as the beat sends it) run there too.
    start_worker(["prenotes", "default"], PROCESSING_STUCK_MINUTES="0")
    wait_for(lambda: (not PrenoteRequest.objects.filter(status="requested").exists()
                      and not Payment.objects.filter(payment_status="PROCESSING").exclude(pk=in_flight.pk).exists()
                      and Payment.objects.count() >= 6), timeout=WAIT,
             what="the redelivered prenote job to submit the other three")
    # Not sent again: one submission per account so far, and the one in flight left PROCESSING for the reconciler.
    account_of = {p.reference: p.user_id for p in Payment.objects.all()}
    assert Counter(account_of[reference_of(r)] for r in submissions(sandbox)) == Counter(dict.fromkeys(PRENOTES, 1))
    assert Payment.objects.count() == 6
    assert Payment.objects.get(pk=in_flight.pk).payment_status == "PROCESSING"
    publish(redis_server.url, reconcile_processing_task, [])
    wait_for(lambda: (not Payment.objects.filter(payment_status="PROCESSING").exists()
                      and not OutboxEvent.objects.filter(published_at__isnull=True).exists()
                      and bank_account_get(user_id=REJECTED, account_id=ACCOUNT_ID).prenote_status == "failed"),
             timeout=WAIT, what="the reconciler and the relay to finish")

    # The witness: one submission per account, each with its payment's reference.
    sent = submissions(sandbox)
    references = Counter(reference_of(r) for r in sent)
    payments = {user_id: payment_of(user_id) for user_id in PRENOTES}
    assert references == Counter({p.reference: 1 for p in payments.values()})
    assert Counter(r["operation"] for r in sent) == {"usio.SubmitACHPayment": 5, "jpm.payments": 1}
    lookups = [r for r in sandbox.requests() if r["operation"] == "usio.GetTransactionDetails"]
    assert [reference_of(r) for r in lookups] == [in_flight.reference]  # the reconciler asked about it, once

    # Requests, payments, histories, events, accounts: exact.
    assert set(PrenoteRequest.objects.values_list("user_id", "status", "attempts")) == {
        (user_id, "submitted", 1) for user_id in PRENOTES}
    assert all(PrenoteRequest.objects.get(user_id=u).payment_id == p.pk for u, p in payments.items())
    expected_status = {u: ("FAILED" if u == REJECTED else "ACHSENT") for u in PRENOTES}
    assert {u: p.payment_status for u, p in payments.items()} == expected_status
    assert payments[REJECTED].return_code == "R03"
    for user_id, payment in payments.items():
        history = list(PaymentStatusChange.objects.filter(payment=payment).order_by("id")
                       .values_list("from_status", "to_status", "source"))
        last = ("PROCESSING", expected_status[user_id], "reconciler" if user_id == IN_FLIGHT else "api")
        assert history == [(None, "PROCESSING", "api"), last], user_id
        events = list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence")
                      .values_list("type", flat=True))
        assert events == ["PRENOTE_RETURNED" if user_id == REJECTED else "PRENOTE_SUBMITTED"], user_id
    returned_event = OutboxEvent.objects.get(type="PRENOTE_RETURNED")
    assert list(OutboxConsumption.objects.values_list("event_id", "consumer", "status")) == [
        (returned_event.event_id, "payments.prenote_account_status", "done")]
    assert {u: bank_account_get(user_id=u, account_id=ACCOUNT_ID).prenote_status for u in PRENOTES} == {
        u: ("failed" if u == REJECTED else "pending") for u in PRENOTES}
    assert Counter(BankAccountHistory.objects.filter(action="prenote_status")
                   .values_list("user_id", "prenote_status")) == Counter(
        [(u, "pending") for u in PRENOTES] + [(REJECTED, "failed")])
    assert DeadLetter.objects.count() == 0
    print(f"\nprenotes: {dict(Counter(r['operation'] for r in sent))} for {len(PRENOTES)} accounts, "
          f"{len(lookups)} reconciler lookup, statuses {dict(Counter(expected_status.values()))}")
