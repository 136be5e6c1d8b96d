"""Concurrency at scale over real HTTP (issue 9): bursts of clients released together by a barrier against gunicorn
(2 workers x 8 threads, so PostgreSQL connections stay bounded while 200 client threads hit it at once), the
sandbox as the processors, real Celery workers for the JPM webhook jobs.

1. 200 submissions with ONE Idempotency-Key: one payment, one processor call, one key; every answer the original
   201 (replayed) or 409 ``idempotency_in_progress``.
2. 200 submissions with different keys for ONE user: exactly the payments the rules allow, one processor call each.
3. JPM callbacks, every distinct message 10x, shuffled (seeded), concurrently: each payment's history and events as
   one delivery, one stored message per distinct body.
4. 50 concurrent refunds of one card and one ACH payment: never more than the payment, one Usio call per refund.

The submission pre-checks (``payments.services._precheck``) are the amount limit (``MAX_PAYMENT_AMOUNT``, in
validation: nothing stored), the blocklist, the bank account and the debit card: there is no per-user velocity or
fraud limit on submission, so every valid request of the burst creates its payment.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
from django.db import connection

from core.models import AuditEntry, IdempotencyKey, OutboxEvent
from core.signatures import hmac_signature
from payments.models import Payment, PaymentStatusChange
from refunds.models import Refund
from syncing.models import JpmUnknownCallback, JpmWebhookMessage
from tests.concurrency import run_concurrently
from tests.integration.stack import queue_size, wait_for
from tests.payments.conftest import reference_of
from tests.sandbox_fixtures import WEBHOOK_SECRET

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

USER = "concur-user"
ROUTING = "026009593"
ACCOUNT_OK = "739146285017"  # settles (sandbox: no 98nn/99nn suffix)
ACCOUNT_REJECTED = "5555009803"  # 98nn: rejected at once with R03
ACCOUNT_RETURNED = "5555009901"  # 99nn: settles, then returned R01 (JPM AM04)
PAYMENTS = "/api/v1/payments"
REFUNDS = "/api/v1/refunds"
BURST = 200
WAIT = 90.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: object
    replayed: bool


def _post(url: str, body: dict, *, api_key: str, key: str) -> Answer:
    response = requests.post(url, json=body, timeout=120,
                             headers={"X-API-Key": api_key, "Idempotency-Key": key})
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    return Answer(response.status_code, payload, response.headers.get("Idempotent-Replayed") == "true")


def _burst(call, count: int) -> list[Answer]:
    """``call(index)`` in ``count`` threads released together; every one must have got an HTTP answer."""
    results = run_concurrently(call, count, barrier_timeout=60, join_timeout=240)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    return results


@contextmanager
def _peak_connections():
    """The most PostgreSQL connections to the test database seen while the block runs (``peak["connections"]``),
    polled from a thread with its own connection (counted: the test's two connections are part of the figure)."""
    peak = {"connections": 0}
    done = threading.Event()

    def sample() -> None:
        try:
            with connection.cursor() as cursor:
                while not done.is_set():
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                    peak["connections"] = max(peak["connections"], cursor.fetchone()[0])
                    done.wait(0.05)
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join(timeout=30)


def _code(answer: Answer) -> str | None:
    return answer.body.get("error", {}).get("code") if isinstance(answer.body, dict) else None


def _history(payment_id) -> list[tuple]:
    return list(PaymentStatusChange.objects.filter(payment_id=payment_id).order_by("id")
                .values_list("from_status", "to_status", "source"))


def _events(payment_id) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment_id)).order_by("sequence")
                .values_list("type", flat=True))


def _calls(sandbox, operation: str) -> list[dict]:
    service = operation.split(".", 1)[0]
    return [r for r in sandbox.requests(service=service) if r["operation"] == operation]


# --- 1. one Idempotency-Key ------------------------------------------------------------------------------------------
def test_200_concurrent_submissions_with_one_key_make_one_payment(sandbox, start_api, make_api_key, debit_card):
    debit_card(user_id=USER)
    api_key = make_api_key("service")
    api = start_api(workers=2, threads=8)
    # The processor answers late (within the client's 1.5 s read timeout): the burst meets the key while its first
    # request is still at the processor.
    sandbox.fault("usio.SubmitTokenPayment", "slow", count=1, delay=0.8)
    body = {"user_id": USER, "purpose": "float", "payment_method": "pinless", "payment_type": "debit",
            "amount": "25.00"}
    key = f"concur-{uuid.uuid4()}"

    answers = _burst(lambda _: _post(api.url + PAYMENTS, body, api_key=api_key, key=key), BURST)

    classes = Counter(
        "original" if a.status == 201 and not a.replayed else
        "replay" if a.status == 201 else
        "in_progress" if a.status == 409 and _code(a) == "idempotency_in_progress" else
        f"other {a.status} {_code(a)}"
        for a in answers)
    assert set(classes) <= {"original", "replay", "in_progress"}, classes
    assert classes["original"] == 1 and classes["in_progress"] >= 1, classes
    assert classes["original"] + classes["replay"] + classes["in_progress"] == BURST
    assert not [a for a in answers if a.status >= 500]
    original = next(a.body for a in answers if a.status == 201 and not a.replayed)
    assert original["payment_status"] == "COMPLETED" and original["amount"] == "25.00"
    assert all(a.body == original for a in answers if a.status == 201)

    payment = Payment.objects.get()
    assert str(payment.pk) == original["id"]
    submissions = _calls(sandbox, "usio.SubmitTokenPayment")
    assert [reference_of(c) for c in submissions] == [payment.reference]
    record = IdempotencyKey.objects.get()
    assert (record.key, record.status, record.resource_id, record.response_status_code) == (
        key, "completed", str(payment.pk), 201)
    assert record.response_body == original
    assert _history(payment.pk) == [(None, "PROCESSING", "api"), ("PROCESSING", "COMPLETED", "api")]
    assert _events(payment.pk) == ["FLOAT_DEBIT_COMPLETED"]

    again = _post(api.url + PAYMENTS, body, api_key=api_key, key=key)
    assert (again.status, again.replayed, again.body) == (201, True, original)
    assert Payment.objects.count() == 1 and IdempotencyKey.objects.count() == 1
    assert len(_calls(sandbox, "usio.SubmitTokenPayment")) == 1
    print(f"\nconcur-1 answers: {dict(classes)}")


# --- 2. one user, 200 keys -------------------------------------------------------------------------------------------
# The burst, by index % 10: what each request is and what the rules make of it.
_KINDS = {0: "card", 1: "card", 2: "card", 3: "card", 4: "card", 5: "ach", 6: "ach",
          7: "no_account", 8: "over_limit", 9: "rejected"}


def _submission(index: int) -> dict:
    kind = _KINDS[index % 10]
    amount = "5000.01" if kind == "over_limit" else f"{10 + index // 100}.{index % 100:02d}"
    body = {"user_id": USER, "purpose": "float", "payment_type": "debit", "amount": amount}
    if kind == "card":
        return {**body, "payment_method": "pinless"}
    account = {"ach": "acc-ok", "over_limit": "acc-ok", "no_account": "acc-missing", "rejected": "acc-rejected"}
    return {**body, "payment_method": "ach", "account_id": account[kind]}


def test_200_concurrent_submissions_of_one_user_create_what_the_rules_allow(
        sandbox, start_api, make_api_key, debit_card, bank_account):
    debit_card(user_id=USER)
    bank_account(user_id=USER, account_id="acc-ok", account_number=ACCOUNT_OK, routing_number=ROUTING)
    bank_account(user_id=USER, account_id="acc-rejected", account_number=ACCOUNT_REJECTED, routing_number=ROUTING)
    api_key = make_api_key("service")
    api = start_api(workers=2, threads=8)
    bodies = [_submission(i) for i in range(BURST)]
    keys = [f"concur-{i}-{uuid.uuid4()}" for i in range(BURST)]

    with _peak_connections() as peak:
        answers = _burst(lambda i: _post(api.url + PAYMENTS, bodies[i], api_key=api_key, key=keys[i]), BURST)

    # 200 clients at once, but gunicorn's 2 x 8 threads bound the database connections (+ the test's own two).
    assert 0 < peak["connections"] <= 2 * 8 + 2, peak

    expected = {"card": (201, "COMPLETED"), "ach": (201, "ACHSENT"), "rejected": (201, "FAILED"),
                "no_account": (422, "bank_account_not_found"), "over_limit": (422, "amount_over_limit")}
    for index, answer in enumerate(answers):
        kind = _KINDS[index % 10]
        got = (answer.status, answer.body["payment_status"] if answer.status == 201 else _code(answer))
        assert got == expected[kind], (index, kind, answer)
        assert not answer.replayed
        if answer.status == 201:  # each answer is its own request's payment
            assert (answer.body["amount"], answer.body["user_id"]) == (bodies[index]["amount"], USER)
    outcome = Counter((a.status, a.body["payment_status"] if a.status == 201 else _code(a)) for a in answers)
    assert outcome == {(201, "COMPLETED"): 100, (201, "ACHSENT"): 40, (201, "FAILED"): 20,
                       (422, "bank_account_not_found"): 20, (422, "amount_over_limit"): 20}

    created = {a.body["id"] for a in answers if a.status == 201}
    payments = {str(p.pk): p for p in Payment.objects.all()}
    assert set(payments) == created and len(created) == 160
    # One processor submission per created payment, and none for a refusal.
    card_calls = [reference_of(c) for c in _calls(sandbox, "usio.SubmitTokenPayment")]
    ach_calls = [reference_of(c) for c in _calls(sandbox, "usio.SubmitACHPayment")]
    assert len(card_calls) == 100 and len(ach_calls) == 60
    assert sorted(card_calls + ach_calls) == sorted(p.reference for p in payments.values())
    assert not [r for r in sandbox.requests() if r["service"] == "jpm" and r["operation"] != "jpm.token"]
    # History and events per payment, exact.
    rows = {status: ([(None, "PROCESSING", "api"), ("PROCESSING", status, "api")], events) for status, events in
            {"COMPLETED": ["FLOAT_DEBIT_COMPLETED"], "ACHSENT": [], "FAILED": ["FLOAT_DEBIT_FAILED"]}.items()}
    for payment in payments.values():
        history, events = rows[payment.payment_status]
        assert (_history(payment.pk), _events(payment.pk)) == (history, events), payment.pk
    assert PaymentStatusChange.objects.count() == 320 and OutboxEvent.objects.count() == 120
    # Keys: one per request that reached the pre-checks (a refused one keeps its 422); body errors store none.
    records = IdempotencyKey.objects.all()
    assert len(records) == 180 and all(r.status == "completed" for r in records)
    assert Counter(r.response_status_code for r in records) == {201: 160, 422: 20}
    assert {r.resource_id for r in records if r.resource_id} == created
    print(f"\nconcur-2 answers: {dict(outcome)}; peak PostgreSQL connections {peak['connections']}")


# --- 3. JPM callbacks, duplicated and shuffled -----------------------------------------------------------------------
JPM_USER = "concur-jpm"
JPM_ACCOUNTS = {"acc-ok": ACCOUNT_OK, "acc-returned": ACCOUNT_RETURNED, "acc-rejected": ACCOUNT_REJECTED}
JPM_PLAN = ["acc-ok"] * 6 + ["acc-returned"] * 4 + ["acc-rejected"] * 2
COPIES = 10
SEED = 9


def _subscription(api, api_key: str, account_id: str) -> str:
    body = {"user_id": JPM_USER, "purpose": "subscription", "payment_method": "ach", "payment_type": "debit",
            "amount": "9.99", "account_id": account_id}
    answer = _post(api.url + PAYMENTS, body, api_key=api_key, key=f"concur-jpm-{uuid.uuid4()}")
    assert answer.status == 201, answer
    assert answer.body["payment_provider"] == "jpm"
    return answer.body["id"]


def _messages(callbacks: list[dict], rng: random.Random, per_message: int) -> list[bytes]:
    """Every payment's callbacks together in one message (``per_message`` payments each), payments and callbacks
    shuffled: the processor sorts a message's callbacks, so the messages may be processed in any order."""
    by_payment: dict[str, list[dict]] = {}
    for item in callbacks:
        by_payment.setdefault(item["endToEndId"], []).append(item)
    ids = sorted(by_payment)
    rng.shuffle(ids)
    bodies = []
    for start in range(0, len(ids), per_message):
        items = [item for end_to_end_id in ids[start:start + per_message] for item in by_payment[end_to_end_id]]
        rng.shuffle(items)
        bodies.append(json.dumps({"callbacks": items}).encode())
    return bodies


def test_duplicated_shuffled_jpm_callbacks_apply_once(sandbox, start_api, start_worker, redis_server, make_api_key,
                                                      bank_account):
    for account_id, number in JPM_ACCOUNTS.items():
        bank_account(user_id=JPM_USER, account_id=account_id, account_number=number, routing_number=ROUTING)
    api_key = make_api_key("service")
    api = start_api(workers=2, threads=8)
    workers = [start_worker(["jpm-webhooks"], purge_first=True) for _ in range(2)]
    plan = {_subscription(api, api_key, account_id): account_id for account_id in JPM_PLAN}
    before = {pid: (_history(pid), _events(pid)) for pid in plan}
    # Three days on: every status JPM will ever report has its callback queued in the sandbox.
    sandbox.advance(days=3)
    callbacks = [item["callback"] for item in sandbox.control("GET", "jpm/callbacks")["pending"]]
    assert Counter(c["paymentStatus"] for c in callbacks) == {
        "PENDING": 10, "ACCEPTED": 10, "CLEARED": 10, "COMPLETED": 10, "RETURNED": 4, "REJECTED": 2}
    assert {uuid.UUID(hex=c["endToEndId"]) for c in callbacks} == {uuid.UUID(pid) for pid in plan}

    # Two different groupings of the same callbacks (7 distinct bodies), each body 10x, all 70 shuffled.
    rng = random.Random(SEED)
    distinct = _messages(callbacks, rng, per_message=3) + _messages(callbacks, rng, per_message=4)
    assert len(distinct) == 7 and len(set(distinct)) == 7
    deliveries = [body for body in distinct for _ in range(COPIES)]
    rng.shuffle(deliveries)

    def deliver(index: int) -> Answer:
        body = deliveries[index]
        response = requests.post(api.url + "/webhooks/jpm", data=body, timeout=120, headers={
            "Content-Type": "application/json",
            "X-JPM-Signature": hmac_signature(secret=WEBHOOK_SECRET, body=body, timestamp=int(time.time()))})
        return Answer(response.status_code, response.json(), False)

    answers = _burst(deliver, len(deliveries))

    assert [a.status for a in answers] == [200] * 70, Counter(a.status for a in answers)
    assert Counter(a.body["duplicate"] for a in answers) == {False: 7, True: 63}
    stored = wait_for(lambda: JpmWebhookMessage.objects.filter(status="processed").count() == 7
                      and queue_size(redis_server.url, "jpm-webhooks") == 0, timeout=WAIT,
                      what="the 7 stored messages processed and the queue drained")
    assert stored
    messages = list(JpmWebhookMessage.objects.all())
    assert sorted(m.content_hash for m in messages) == sorted(hashlib.sha256(b).hexdigest() for b in distinct)
    assert all(m.deliveries == COPIES and m.status == "processed" and not m.last_error for m in messages)
    assert sum(m.callbacks for m in messages) == 2 * len(callbacks)
    assert not JpmUnknownCallback.objects.exists()

    sent = [(None, "PROCESSING", "api"), ("PROCESSING", "ACHSENT", "api")]
    assert all(state == (sent, []) for state in before.values()), before  # JPM answers every submission PENDING
    expected = {
        "acc-ok": ([*sent, ("ACHSENT", "CLEARED", "webhook")], ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT"],
                   "CLEARED", None),
        "acc-returned": ([*sent, ("ACHSENT", "CLEARED", "webhook"), ("CLEARED", "FAILED", "webhook")],
                         ["SUBSCRIPTION_CLEARED", "SUBSCRIPTION_SENT", "SUBSCRIPTION_RETURNED"], "FAILED", "AM04"),
        "acc-rejected": ([*sent, ("ACHSENT", "FAILED", "webhook")], ["SUBSCRIPTION_FAILED"], "FAILED", "AC01"),
    }
    for payment_id, account_id in plan.items():
        history, events, status, code = expected[account_id]
        payment = Payment.objects.get(pk=payment_id)
        got = (_history(payment_id), _events(payment_id), payment.payment_status, payment.return_code)
        assert got == (history, events, status, code), (payment_id, got)
    assert PaymentStatusChange.objects.count() == 6 * 3 + 4 * 4 + 2 * 3
    assert OutboxEvent.objects.count() == 6 * 2 + 4 * 3 + 2 * 1
    assert all(w.proc.poll() is None for w in workers)
    print(f"\nconcur-3: {len(deliveries)} deliveries of {len(distinct)} bodies ({len(callbacks)} callbacks, "
          f"{len(plan)} payments); processing attempts {sum(m.attempts for m in messages)}")


# --- 4. concurrent refunds of one payment ----------------------------------------------------------------------------
REFUND_USER = "concur-refund"


def test_concurrent_refunds_never_exceed_the_payment(sandbox, start_api, make_api_key, debit_card, bank_account):
    from payments.status import payment_apply_status

    debit_card(user_id=REFUND_USER)
    bank_account(user_id=REFUND_USER, account_id="acc-ok", account_number=ACCOUNT_OK, routing_number=ROUTING)
    service_key, support_key = make_api_key("service"), make_api_key("support")
    api = start_api(workers=2, threads=8)
    base = {"user_id": REFUND_USER, "purpose": "float", "payment_type": "debit"}
    card = _post(api.url + PAYMENTS, {**base, "payment_method": "pinless", "amount": "100.00"},
                 api_key=service_key, key=f"concur-{uuid.uuid4()}")
    ach = _post(api.url + PAYMENTS, {**base, "payment_method": "ach", "amount": "80.00", "account_id": "acc-ok"},
                api_key=service_key, key=f"concur-{uuid.uuid4()}")
    assert (card.status, card.body["payment_status"], ach.status, ach.body["payment_status"]) == (
        201, "COMPLETED", 201, "ACHSENT")
    card_id, ach_id = card.body["id"], ach.body["id"]
    # check-ach's three-business-day gate, applied through the status machine (as tests/refunds does).
    payment_apply_status(payment_id=ach_id, to_status="COMPLETED", source="check_ach", actor="check_ach")
    voids_before = len(_calls(sandbox, "usio.SubmitCCVoid"))
    ach_before = len(_calls(sandbox, "usio.SubmitACHPayment"))
    # Usio answers late: accepted refunds are still in flight (PROCESSING) while the others check the balance.
    sandbox.fault("usio.SubmitCCVoid", "slow", count=25, delay=0.3)
    sandbox.fault("usio.SubmitACHPayment", "slow", count=25, delay=0.3)
    bodies = [{"user_id": REFUND_USER, "description": f"concurrency #{i}",
               **({"payment_id": card_id, "amount": "20.00"} if i % 2 == 0 else
                  {"payment_id": ach_id, "amount": "15.00"})} for i in range(50)]

    answers = _burst(lambda i: _post(api.url + REFUNDS, bodies[i], api_key=support_key,
                                     key=f"concur-refund-{i}-{uuid.uuid4()}"), 50)

    per_payment = Counter((bodies[i]["payment_id"], a.status, a.body.get("status") or _code(a))
                          for i, a in enumerate(answers))
    # The ACH payment keeps 5.00 refundable and stays COMPLETED: every refusal is refund_exceeds_balance. The card
    # payment is refunded in full and becomes REFUNDED: a request checked after that is payment_not_refundable (the
    # status is checked before the balance), one checked before is refund_exceeds_balance; 20 refusals either way.
    card_refused = per_payment[(card_id, 422, "refund_exceeds_balance")] + per_payment[
        (card_id, 422, "payment_not_refundable")]
    assert card_refused == 20, per_payment
    assert {k: v for k, v in per_payment.items() if k[1] == 201 or k[0] == ach_id} == {
        (card_id, 201, "COMPLETED"): 5, (ach_id, 201, "COMPLETED"): 5, (ach_id, 422, "refund_exceeds_balance"): 20}
    assert sum(per_payment.values()) == 50
    refunds = list(Refund.objects.all())
    assert len(refunds) == 10 and all(r.status == "COMPLETED" for r in refunds)
    assert {str(r.pk) for r in refunds} == {a.body["id"] for a in answers if a.status == 201}
    totals = Counter()
    for refund in refunds:
        totals[str(refund.payment_id)] += refund.amount
    assert totals == {card_id: Decimal("100.00"), ach_id: Decimal("75.00")}
    # One Usio refund call per accepted refund: card refunds are SubmitCCVoid of the payment's confirmation, ACH
    # refunds ACH credits carrying the refund's reference.
    voids = _calls(sandbox, "usio.SubmitCCVoid")[voids_before:]
    assert len(voids) == 5
    ach_refunds = [reference_of(c) for c in _calls(sandbox, "usio.SubmitACHPayment")[ach_before:]]
    assert sorted(ach_refunds) == sorted(r.reference for r in refunds if str(r.payment_id) == ach_id)
    ledger = {tx["confirmation"]: tx for tx in sandbox.control("GET", "usio/ledger")["transactions"]}
    assert ledger[card.body["confirmation_id"]]["refunded"] == "100.00"

    card_payment, ach_payment = Payment.objects.get(pk=card_id), Payment.objects.get(pk=ach_id)
    assert (card_payment.payment_status, ach_payment.payment_status) == ("REFUNDED", "COMPLETED")
    assert _history(card_id) == [(None, "PROCESSING", "api"), ("PROCESSING", "COMPLETED", "api"),
                                 ("COMPLETED", "REFUNDED", "api")]
    assert _events(card_id) == ["FLOAT_DEBIT_COMPLETED", "FLOAT_DEBIT_REFUNDED"]
    assert _history(ach_id) == [(None, "PROCESSING", "api"), ("PROCESSING", "ACHSENT", "api"),
                                ("ACHSENT", "COMPLETED", "check_ach")]
    assert _events(ach_id) == ["FLOAT_DEBIT_COMPLETED"]
    assert AuditEntry.objects.filter(action="refund.create").count() == 10
    refund_keys = IdempotencyKey.objects.filter(key__startswith="concur-refund-")
    assert Counter(r.response_status_code for r in refund_keys) == {201: 10, 422: 40}
    print(f"\nconcur-4 answers: {dict(Counter((a.status, a.body.get('status') or _code(a)) for a in answers))}")
