"""Processor faults during a burst of submissions (issue 9): every payment ends in the state the processor's ledger
says, and no payment is ever sent to a processor twice.

The whole system runs as separate processes: gunicorn serving the API, a Celery worker on ``default`` (the
stuck-payment reconciler and the outbox relay) and ``jpm-webhooks`` (JPM callbacks), the sandbox, PostgreSQL and
a private Redis. A burst of concurrent clients submits pinless debits (pulls) and credits (pushes), Usio ACH, JPM
ACH and Usio RTP credits over HTTP while the sandbox's control API makes the money-moving operations answer 500,
hang past the client's read timeout after processing, answer truncated JSON after processing, or process only
after the client gave up ("slow" past the read timeout); one RTP account check and one JPM token fetch fail too
(those payments certainly never reached the money operation). The reconciler is then published to the worker the way
beat publishes it, with ``PROCESSING_STUCK_MINUTES=0`` and ``PROCESSING_GIVE_UP_MINUTES=0`` in the worker's
environment (ages are our clock; the processor has answered everything by then), until a run finds nothing to do.

The truth is the sandbox: its ledgers (what each processor recorded) and its request log (what each processor
received, per our reference: Usio ``AdditionalSearch``, JPM ``endToEndId``).
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests
from django.db import connection

from core.models import DeadLetter, IdempotencyKey, JobRun, OutboxEvent
from payments.models import Payment, PaymentStatusChange
from payments.tasks import reconcile_processing_task
from syncing.models import JpmWebhookMessage
from tests.integration.stack import broker_connection, wait_for
from tests.payments.conftest import reference_of
from tests.sandbox_fixtures import READ_TIMEOUT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 24  # concurrent HTTP clients
PAYMENTS_URL = "/api/v1/payments"
SCHEDULE = "stuck-payment reconciler"  # the beat schedule's name (payments/jobs.py): its runs are recorded
SLOW = READ_TIMEOUT + 1.0  # "slow" faults answer after the client gave up: processed late, outcome unknown

USER = "burst-user-1"
DECLINING_USER = "burst-user-2"  # debit token decline_51: a soft decline (the card stays valid)
ROUTING_RTP = "026009593"  # RTP-eligible in the sandbox
ROUTING_NOT_RTP = "111000025"
ACCOUNTS = {  # account_id -> (account number, routing number)
    "acc-ok": ("739146285017", ROUTING_RTP),
    "acc-rejected": ("7391462898" + "03", ROUTING_RTP),  # 98NN: refused at once with R03 (JPM: REJECTED)
    "acc-not-rtp": ("739146285025", ROUTING_NOT_RTP),
}

# The operations that move money (one request each per payment, ever) and the read-only ones.
MONEY_OPERATIONS = ("usio.SubmitTokenPayment", "usio.PinlessCredit", "usio.SubmitACHPayment", "usio.RTPCredit",
                    "jpm.payments")
UNKNOWN_OUTCOME_FAULTS = ("500", "timeout", "malformed", "slow")  # the client cannot know what happened

# The faults of the burst: (operation, mode, count). Each operation's faults hit its first calls, whichever
# payments those are; the request log says which payment got which.
BURST_FAULTS = [
    ("usio.SubmitTokenPayment", "500", 2), ("usio.SubmitTokenPayment", "timeout", 2),
    ("usio.SubmitTokenPayment", "malformed", 2), ("usio.SubmitTokenPayment", "slow", 1),
    ("usio.PinlessCredit", "500", 1), ("usio.PinlessCredit", "timeout", 1), ("usio.PinlessCredit", "malformed", 1),
    ("usio.SubmitACHPayment", "500", 2), ("usio.SubmitACHPayment", "timeout", 2),
    ("usio.SubmitACHPayment", "malformed", 1), ("usio.SubmitACHPayment", "slow", 1),
    ("jpm.payments", "500", 2), ("jpm.payments", "timeout", 2), ("jpm.payments", "malformed", 1),
    ("jpm.payments", "slow", 1),
    ("usio.RTPCredit", "500", 1), ("usio.RTPCredit", "timeout", 1), ("usio.RTPCredit", "malformed", 1),
    ("usio.RTPAccountCheck", "500", 1),  # only a lookup: the payment fails at once, no money request
    ("jpm.token", "500", 1),  # no token, so JPM never got the payment: it fails at once
]
NEVER_SENT = ("rtp_check_failed", "rtp_not_eligible", "processor_unavailable")  # FAILED at once, no money request
# The reconciler's own lookups fail too: first every one of them (an outage: nothing may change), then a few.
LOOKUP_OUTAGE = [("usio.GetTransactionDetails", "500", 1000), ("jpm.payment_status", "malformed", 1000)]
LOOKUP_FAULTS = [("usio.GetTransactionDetails", "500", 2), ("jpm.payment_status", "malformed", 1)]

_amounts = itertools.count(101)


def _body(purpose: str, payment_type: str, method: str, *, user: str = USER, **extra) -> dict:
    body = {"user_id": user, "purpose": purpose, "payment_type": payment_type, "payment_method": method,
            "amount": f"{next(_amounts)}.{next(_amounts) % 100:02d}"}
    body.update(extra)
    return body


def burst_bodies() -> list[dict]:
    """52 payments over every route that moves money (SPEC §5 routing)."""
    bodies = []
    for purpose, count in (("float", 6), ("subscription", 3), ("loan", 3)):
        bodies += [_body(purpose, "debit", "pinless") for _ in range(count)]  # pulls: SubmitTokenPayment
    bodies += [_body("float", "debit", "pinless", user=DECLINING_USER) for _ in range(2)]
    bodies += [_body(purpose, "credit", "pinless") for purpose in ("float",) * 4 + ("loan",) * 2]  # pushes
    for purpose, payment_type, account, count in (("float", "debit", "acc-ok", 3), ("float", "credit", "acc-ok", 2),
                                                  ("loan", "debit", "acc-ok", 2), ("loan", "credit", "acc-ok", 1),
                                                  ("float", "debit", "acc-rejected", 2)):
        bodies += [_body(purpose, payment_type, "ach", account_id=account) for _ in range(count)]  # Usio ACH
    bodies.append(_body("subscription", "debit", "ach", account_id="acc-ok", provider="usio"))
    # JPM ACH. Where the rejected ones sit makes them likely to meet a fault that JPM processed (the reconciler
    # then finds REJECTED) or no fault (JPM accepts, then its callback says REJECTED): faults hit the first calls.
    ok, rejected = "acc-ok", "acc-rejected"
    bodies += [_body("subscription", "debit", "ach", account_id=account)
               for account in (ok, ok, ok, rejected, rejected, ok, ok, ok, ok, ok, rejected, ok)]
    bodies += [_body(purpose, "credit", "rtp", account_id="acc-ok") for purpose in ("float",) * 4 + ("loan",) * 2]
    bodies += [_body("float", "credit", "rtp", account_id="acc-not-rtp", rtp_mode="fallback") for _ in range(2)]
    bodies.append(_body("float", "credit", "rtp", account_id="acc-not-rtp", rtp_mode="only"))
    return bodies


@dataclass
class Submission:
    key: str
    body: dict
    answers: list[tuple[int, dict, str | None]] = field(default_factory=list)  # (status, json, replayed header)

    @property
    def first(self) -> tuple[int, dict, str | None]:
        return self.answers[0]


def _post(api_url: str, api_key: str, submission: Submission) -> tuple[int, dict, str | None]:
    response = requests.post(f"{api_url}{PAYMENTS_URL}", json=submission.body, timeout=60,
                             headers={"X-API-Key": api_key, "Idempotency-Key": submission.key})
    return response.status_code, response.json(), response.headers.get("Idempotent-Replayed")


def _post_all(api_url: str, api_key: str, submissions: list[Submission]) -> list[tuple[int, dict, str | None]]:
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(lambda s: _post(api_url, api_key, s), submissions))
    for submission, answer in zip(submissions, answers, strict=True):
        submission.answers.append(answer)
    return answers


def _money_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["operation"] in MONEY_OPERATIONS]


def _expire_leases() -> int:
    """The clients come back after the keys' 60 s lease (what a retry a minute later sees)."""
    return IdempotencyKey.objects.filter(status="in_progress").update(lease_expires_at="2000-01-01T00:00:00Z")


def _reconcile_once(broker_url: str, run: int) -> dict:
    """Publish the reconciler as beat does (its schedule's header, so the run is recorded) and wait for it."""
    with broker_connection(broker_url) as conn:
        reconcile_processing_task.apply_async(connection=conn, headers={"periodic_task_name": SCHEDULE})

    def finished():
        job_run = JobRun.objects.filter(name=SCHEDULE, runs=run, last_finished_at__isnull=False).first()
        return job_run

    job_run = wait_for(finished, timeout=120, what=f"reconciler run {run} to finish")
    assert job_run.last_outcome == "succeeded", (job_run.last_outcome, job_run.last_error)
    return job_run.last_result


def _usio_ledger(sandbox) -> dict[str, list[dict]]:
    by_reference: dict[str, list[dict]] = {}
    for tx in sandbox.control("GET", "usio/ledger")["transactions"]:
        by_reference.setdefault(tx["reference"], []).append(tx)
    return by_reference


def _jpm_ledger(sandbox) -> dict[str, list[dict]]:
    by_reference: dict[str, list[dict]] = {}
    for entry in sandbox.control("GET", "jpm/ledger")["ledger"]:
        by_reference.setdefault(entry["endToEndId"], []).append(entry)
    return by_reference


def _event_prefix(payment: Payment) -> str:
    return "SUBSCRIPTION" if payment.purpose == "subscription" else f"{payment.purpose}_{payment.payment_type}".upper()


def test_burst_of_submissions_under_processor_faults_ends_true_to_the_processors_without_duplicates(
        sandbox, start_api, start_worker, redis_server, make_api_key, bank_account, debit_card):
    for account_id, (number, routing) in ACCOUNTS.items():
        bank_account(user_id=USER, account_id=account_id, account_number=number, routing_number=routing)
    debit_card(user_id=USER, debit_token="tok_debit_burst0000000001", credit_token="tok_credit_burst000000001")
    debit_card(user_id=DECLINING_USER, debit_token="decline_51", credit_token="tok_credit_burst000000002",
               last4="5151")
    api_key = make_api_key("service")
    start_worker(["default", "jpm-webhooks"], purge_first=True,
                 PROCESSING_STUCK_MINUTES="0", PROCESSING_GIVE_UP_MINUTES="0")
    api = start_api(workers=2, threads=8)
    for operation, mode, count in BURST_FAULTS:
        sandbox.fault(operation, mode, count, delay=SLOW if mode == "slow" else 0.0)

    # --- the burst ---------------------------------------------------------------------------------------------
    submissions = [Submission(f"burst-{uuid.uuid4()}", body) for body in burst_bodies()]
    first = _post_all(api.url, api_key, submissions)

    statuses = Counter(status for status, _, _ in first)
    assert set(statuses) <= {201, 202}, [a for a in first if a[0] not in (201, 202)][:3]
    assert sandbox.control("GET", "faults")["faults"] == {}, "every scripted fault was used"
    payments = {str(p.pk): p for p in Payment.objects.all()}
    assert len(payments) == len(submissions)
    assert {body["id"] for _, body, _ in first} == set(payments)
    by_key = {s.key: s for s in submissions}
    for payment in payments.values():
        assert by_key[payment.idempotency_key].first[1]["id"] == str(payment.pk)

    # Payments that certainly never reached the money operation (RTP: the account check failed, or not eligible
    # with rtp_mode=only; JPM: the token fetch failed) fail at once; every other payment reached its processor
    # exactly once — wait until the processor has logged all of them (a "slow" request is processed, then logged,
    # after its client gave up).
    no_money_request = Payment.objects.filter(payment_status="FAILED", return_info__in=NEVER_SENT)
    expected_money_requests = len(payments) - no_money_request.count()
    wait_for(lambda: len(_money_requests(sandbox)) >= expected_money_requests, timeout=60,
             what="the processors to log every money request")
    money_requests = _money_requests(sandbox)
    per_reference = Counter(reference_of(r) for r in money_requests)
    assert len(money_requests) == expected_money_requests
    assert set(per_reference) == {p.reference for p in payments.values()} - {p.reference for p in no_money_request}
    assert set(per_reference.values()) == {1}, "a payment was sent to its processor twice"
    request_of = {reference_of(r): r for r in money_requests}
    faulted = Counter(r["fault"] for r in money_requests)
    assert faulted == Counter({None: expected_money_requests - 25, "500": 8, "timeout": 8, "malformed": 6,
                               "slow": 3})
    assert Counter(r["fault"] for r in sandbox.requests(operation="usio.RTPAccountCheck")) == Counter(
        {None: 8, "500": 1})
    assert Payment.objects.filter(return_info="rtp_check_failed", payment_method="rtp").count() == 1
    assert Payment.objects.filter(return_info="processor_unavailable", payment_provider="jpm").count() == 1
    assert Counter(r["fault"] for r in sandbox.requests(operation="jpm.token"))["500"] == 1

    # Answers: 201 with the final status when the processor's answer was read, 202 PROCESSING when it could not be.
    for submission in submissions:
        status, body, replayed = submission.first
        assert replayed is None
        request = request_of.get(payments[body["id"]].reference)
        unknown = request is not None and request["fault"] in UNKNOWN_OUTCOME_FAULTS
        assert (status, body["payment_status"] == "PROCESSING") == ((202, True) if unknown else (201, False)), (
            status, body, request)
    assert statuses == Counter({201: len(payments) - 25, 202: 25})

    # --- clients retry at once (the first request's lease is live) and after the lease -------------------------
    retry = _post_all(api.url, api_key, submissions)
    for submission, (status, body, replayed) in zip(submissions, retry, strict=True):
        if submission.first[0] == 201:
            assert (status, body, replayed) == (201, submission.first[1], "true")
        else:
            assert (status, body["error"]["code"]) == (409, "idempotency_in_progress"), body
    assert _expire_leases() == 25
    stale = [s for s in submissions if s.first[0] == 202]
    for submission, (status, body, replayed) in zip(stale, _post_all(api.url, api_key, stale), strict=True):
        assert (status, body["id"], body["payment_status"], replayed) == (202, submission.first[1]["id"],
                                                                          "PROCESSING", "true")
    assert len(_money_requests(sandbox)) == expected_money_requests, "a retry reached a processor"

    # --- the reconciler, published as beat does, until a run finds nothing ------------------------------------
    # Run 1: no lookup gets an answer (500 at Usio, truncated JSON at JPM): nothing changes, whatever the age.
    changes_before = PaymentStatusChange.objects.count()
    for operation, mode, count in LOOKUP_OUTAGE:
        sandbox.fault(operation, mode, count)
    outage = _reconcile_once(redis_server.url, 1)
    sandbox.control("DELETE", "faults")
    assert (outage["examined"], outage["errors"] + outage["skipped"], outage["resolved"], outage["given_up"]) == (
        25, 25, 0, 0), outage
    assert outage["errors"] >= 3  # per processor account, three failed lookups in a row open its breaker
    assert PaymentStatusChange.objects.count() == changes_before
    assert Payment.objects.filter(payment_status="PROCESSING").count() == 25
    # Run 2 on: three lookups fail, the others are answered; until a run finds nothing to do.
    for operation, mode, count in LOOKUP_FAULTS:
        sandbox.fault(operation, mode, count)
    results = []
    while not results or results[-1]["examined"]:
        assert len(results) < 6, f"the reconciler does not settle: {results}"
        results.append(_reconcile_once(redis_server.url, len(results) + 2))
    first_run = results[0]
    assert first_run["examined"] == 25 and first_run["errors"] == 3, first_run
    assert first_run["resolved"] + first_run["given_up"] == 22, first_run
    assert sum(r["resolved"] + r["given_up"] for r in results) == 25, results
    assert sum(r["unchanged"] + r["waiting"] + r["skipped"] for r in results) == 0, results
    assert sandbox.control("GET", "faults")["faults"] == {}
    assert not Payment.objects.filter(payment_status="PROCESSING").exists()

    # --- JPM's callbacks (its status changes, e.g. REJECTED after the submission was accepted) ----------------
    delivery = sandbox.control("POST", "jpm/deliver-callbacks", {"url": f"{api.url}/webhooks/jpm"})
    # one callback per JPM payment (its first status; ACCEPTED too if a minute of sandbox time has passed)
    assert delivery["pending"] == 0 and delivery["delivered"] >= len(_jpm_ledger(sandbox)), delivery
    wait_for(lambda: not JpmWebhookMessage.objects.exclude(status="processed").exists(), timeout=60,
             what="the worker to process JPM's callbacks")
    assert JpmWebhookMessage.objects.count() == 1

    # --- every payment is what the processor recorded ----------------------------------------------------------
    usio, jpm = _usio_ledger(sandbox), _jpm_ledger(sandbox)
    finals = Counter()
    for payment in Payment.objects.all():
        submission = by_key[payment.idempotency_key]
        ref = payment.reference
        answered = submission.first[0] == 201
        changes = list(PaymentStatusChange.objects.filter(payment=payment).order_by("id"))
        events = list(OutboxEvent.objects.filter(aggregate_id=str(payment.pk)).order_by("sequence"))
        history = [(c.from_status, c.to_status, c.source) for c in changes]
        resolved_by = "api" if answered else "reconciler"
        if payment.payment_provider == "jpm":
            recorded = jpm.get(ref, [])
            assert len(recorded) <= 1
            if recorded and recorded[0]["status"] == "REJECTED":
                # Accepted at submission (JPM answers 202 either way), then rejected: the callback fails it; or
                # the reconciler saw REJECTED at once. Either way FAILED with JPM's code, one event.
                assert recorded[0]["amount"] == f"{payment.amount}"
                expected = ("FAILED", ref, "AC01")
                late = [("PROCESSING", "ACHSENT", "api"), ("ACHSENT", "FAILED", "webhook")]
                expected_history = late if answered else [("PROCESSING", "FAILED", "reconciler")]
            elif recorded:
                assert recorded[0]["status"] in ("PENDING", "ACCEPTED") and recorded[0]["amount"] == f"{payment.amount}"
                expected = ("ACHSENT", ref, None)
                expected_history = [("PROCESSING", "ACHSENT", resolved_by)]
            elif ref in request_of:  # sent, outcome unknown, never recorded: given up
                expected = ("FAILED", ref, "not_submitted")
                expected_history = [("PROCESSING", "FAILED", "reconciler")]
            else:  # the token fetch failed: never sent
                expected = ("FAILED", ref, "processor_unavailable")
                expected_history = [("PROCESSING", "FAILED", "api")]
            assert history == [(None, "PROCESSING", "api"), *expected_history], (payment.pk, history)
            actual = (payment.payment_status, payment.confirmation_id,
                      (payment.return_code or payment.return_info) if payment.payment_status == "FAILED" else None)
        else:
            recorded = [tx for tx in usio.get(ref, []) if tx["kind"] != "refund"]
            assert len(recorded) <= 1
            if recorded:
                tx = recorded[0]
                assert (tx["amount"], tx["status"]) == (f"{payment.amount}", "settled")
                assert tx["merchant_id"] == payment.merchant_account
                expected = ("ACHSENT" if payment.payment_method == "ach" else "COMPLETED", tx["confirmation"], None)
            elif ref in request_of and not answered:  # sent, outcome unknown, never recorded: given up
                expected = ("FAILED", None, "not_submitted")
            elif ref in request_of:  # refused by the processor, and we read the refusal
                code = "R03" if payment.payment_method == "ach" else "51"
                expected = ("FAILED", None, code)
            else:  # RTP: no money request at all
                expected = ("FAILED", None, payment.return_info)
                assert payment.return_info in ("rtp_check_failed", "rtp_not_eligible")
                assert payment.payment_method == "rtp" or payment.return_info != "rtp_not_eligible"
            actual = (payment.payment_status, payment.confirmation_id,
                      (payment.return_code or payment.return_info) if payment.payment_status == "FAILED" else None)
            assert history == [(None, "PROCESSING", "api"), ("PROCESSING", payment.payment_status, resolved_by)], (
                payment.pk, history)
        assert actual == expected, (payment.pk, payment.payment_method, request_of.get(ref), recorded)
        # Events: a completed or failed payment writes one, entering ACHSENT none (SPEC §4).
        expected_events = {"COMPLETED": [f"{_event_prefix(payment)}_COMPLETED"], "ACHSENT": [],
                           "FAILED": [f"{_event_prefix(payment)}_FAILED"]}[payment.payment_status]
        assert [e.type for e in events] == expected_events, (payment.pk, [e.type for e in events])
        finals[(payment.payment_provider, payment.payment_method, payment.payment_status, history[-1][2])] += 1
    # Every money request that the processor recorded is one of our payments, once.
    recorded_refs = [tx["reference"] for txs in usio.values() for tx in txs] + list(jpm)
    assert len(recorded_refs) == len(set(recorded_refs))
    assert set(recorded_refs) <= {p.reference for p in payments.values()}

    # The outbox relay (on the worker) published every event; nothing was dead-lettered.
    wait_for(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), timeout=60,
             what="the relay to publish every event")
    assert DeadLetter.objects.count() == 0

    # --- replays: the same answer, and no processor request ----------------------------------------------------
    _expire_leases()
    recovered = _post_all(api.url, api_key, submissions)
    again = _post_all(api.url, api_key, submissions)
    for submission, (status, body, replayed), repeat in zip(submissions, recovered, again, strict=True):
        payment = Payment.objects.get(pk=submission.first[1]["id"])
        if submission.first[0] == 201:
            assert (status, body, replayed) == (201, submission.first[1], "true")
        else:  # the stale key recovers the payment as it is now, and keeps that answer
            assert (status, body["id"], body["payment_status"], replayed) == (
                201, str(payment.pk), payment.payment_status, "true")
        assert repeat == (status, body, "true")
    assert IdempotencyKey.objects.filter(status="completed").count() == len(submissions)
    assert IdempotencyKey.objects.exclude(status="completed").count() == 0
    assert {k.resource_id for k in IdempotencyKey.objects.all()} == set(payments)
    assert len(_money_requests(sandbox)) == expected_money_requests
    # The runs' own counts agree with what happened to each payment.
    given_up = Payment.objects.filter(status_changes__source="reconciler", return_info="not_submitted").count()
    assert sum(r["given_up"] for r in results) == given_up >= 8  # at least the eight 500s: never received
    assert sum(r["resolved"] for r in results) == 25 - given_up >= 1
    late_rejections = finals[("jpm", "ach", "FAILED", "webhook")]
    assert PaymentStatusChange.objects.count() == 2 * len(payments) + late_rejections
    failures = Counter(p.return_code or p.return_info for p in Payment.objects.filter(payment_status="FAILED"))
    print("processor-faults figures:", dict(statuses), outage, results, dict(finals), dict(failures),
          len(money_requests), PaymentStatusChange.objects.count(), OutboxEvent.objects.count(), connection.vendor)
