"""Concurrent submissions through the API (real commits, one DB connection per thread, the sandbox over HTTP).

Runs on both databases; PostgreSQL is the one that matters (SQLite serialises writers and hides races): there the
idempotency claim is an INSERT under the (client, key) unique constraint, so the second of two concurrent claims
blocks until the first transaction ends and then sees its record.
"""


import pytest
from rest_framework.test import APIClient

from core.models import IdempotencyKey
from payments.models import Payment, PaymentStatusChange
from tests.concurrency import run_concurrently
from tests.payments.conftest import card_body, new_key, payment_body, post_payment, processor_calls, reference_of

THREADS = 50


def _client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("kind", "operation"), [("pinless", "usio.SubmitTokenPayment"),
                                                 ("jpm", "jpm.payments")])
def test_one_key_fifty_concurrent_requests_one_payment_one_call(sandbox, make_api_key, bank_account, debit_card,
                                                                 kind, operation):
    bank_account()
    debit_card()
    raw = make_api_key("service")  # one API client: one idempotency scope
    body = card_body() if kind == "pinless" else payment_body(purpose="subscription")
    key = new_key()
    # The processor answers slowly, so that most requests arrive while the first is in progress.
    sandbox.fault(operation, "slow", delay=0.5)

    def submit(_index: int):
        response = post_payment(_client(raw), body, key=key)
        return response.status_code, response.json(), response.get("Idempotent-Replayed")

    results = run_concurrently(submit, THREADS)

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {201, 409}, statuses
    originals = [r for r in results if r[0] == 201 and r[2] is None]
    replays = [r for r in results if r[0] == 201 and r[2] == "true"]
    conflicts = [r for r in results if r[0] == 409]
    assert len(originals) == 1
    assert len(originals) + len(replays) + len(conflicts) == THREADS
    assert all(body == originals[0][1] for _, body, _ in replays)
    assert all(body["error"]["code"] == "idempotency_in_progress" for _, body, _ in conflicts)

    payment = Payment.objects.get()
    assert str(payment.pk) == originals[0][1]["id"]
    calls = processor_calls(sandbox, operation)
    assert len(calls) == 1 and reference_of(calls[0]) == payment.reference
    assert PaymentStatusChange.objects.filter(payment=payment).count() == 2
    assert IdempotencyKey.objects.get(key=key).status == "completed"


@pytest.mark.django_db(transaction=True)
def test_fifty_keys_for_one_user_fifty_payments_fifty_calls(sandbox, make_api_key, debit_card):
    debit_card()
    raw = make_api_key("service")
    keys = [new_key() for _ in range(THREADS)]

    def submit(index: int):
        response = post_payment(_client(raw), card_body(amount=f"{index + 1}.00"), key=keys[index])
        return response.status_code, response.json()

    results = run_concurrently(submit, THREADS)

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert [status for status, _ in results] == [201] * THREADS, results[:3]
    assert all(body["payment_status"] == "COMPLETED" for _, body in results)
    payments = {str(p.pk): p for p in Payment.objects.all()}
    assert len(payments) == THREADS
    calls = processor_calls(sandbox, "usio.SubmitTokenPayment")
    assert len(calls) == THREADS
    assert {reference_of(c) for c in calls} == {p.reference for p in payments.values()}
    assert sorted(p.amount for p in payments.values()) == sorted(range(1, THREADS + 1))
    assert IdempotencyKey.objects.filter(status="completed").count() == THREADS
