"""Concurrent refunds (real commits, one DB connection per thread, Usio over HTTP).

PostgreSQL is the database that matters: step 1 locks the payment row (``SELECT … FOR UPDATE``) — or takes the
Usio transaction's advisory lock — before it reads what is already refunded, so requests are serialised there and
the refundable balance can never be exceeded, even while earlier refunds are still in flight at Usio (PROCESSING
counts). On SQLite write transactions are serialised anyway (IMMEDIATE); the same assertions hold.
"""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from core.models import OutboxEvent
from refunds.models import Refund
from tests.concurrency import run_concurrently
from tests.refunds.conftest import (
    new_key,
    post_refund,
    refund_body,
    usio_calls,
    usio_transaction,
)


def _client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def _run(raw_key: str, bodies: list[dict], keys: list[str] | None = None) -> list:
    keys = keys or [new_key() for _ in bodies]

    def refund(index: int):
        response = post_refund(_client(raw_key), bodies[index], key=keys[index])
        return response.status_code, response.json()

    results = run_concurrently(refund, len(bodies))
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_exceed_the_payments_balance(sandbox, make_api_key, card_payment):
    payment = card_payment("100.00")
    raw = make_api_key("support")
    # Usio answers slowly, so that refunds are still PROCESSING (in flight) while the others check the balance.
    sandbox.fault("usio.SubmitCCVoid", "slow", count=10, delay=0.3)

    results = _run(raw, [refund_body(payment_id=str(payment.pk), amount="15.00") for _ in range(10)])

    accepted = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status != 201]
    assert len(accepted) == 6 and len(refused) == 4, [s for s, _ in results]
    assert all(body["status"] == "COMPLETED" for body in accepted)
    assert {(status, body["error"]["code"]) for status, body in results if status != 201} == \
        {(422, "refund_exceeds_balance")}
    assert Refund.objects.count() == 6
    assert sum(r.amount for r in Refund.objects.filter(status="COMPLETED")) == Decimal("90.00")
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 6
    assert usio_transaction(sandbox, payment.confirmation_id)["refunded"] == "90.00"
    payment.refresh_from_db()
    assert payment.payment_status == "COMPLETED"


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_to_the_full_amount_refund_the_payment_once(sandbox, make_api_key, card_payment):
    payment = card_payment("50.00")
    raw = make_api_key("admin")

    results = _run(raw, [refund_body(payment_id=str(payment.pk), amount="5.00") for _ in range(20)])

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 10 + [422] * 10
    assert Refund.objects.filter(status="COMPLETED").count() == 10
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 10
    payment.refresh_from_db()
    assert payment.payment_status == "REFUNDED"
    assert payment.status_changes.filter(to_status="REFUNDED").count() == 1
    assert OutboxEvent.objects.filter(type="FLOAT_DEBIT_REFUNDED").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_of_a_usio_transaction_never_exceed_it(sandbox, make_api_key, external_card_transaction):
    confirmation = external_card_transaction("40.00", account="subscription")
    raw = make_api_key("support")
    sandbox.fault("usio.SubmitCCVoid", "slow", count=8, delay=0.3)

    results = _run(raw, [refund_body(confirmation_id=confirmation, amount="10.00") for _ in range(8)])

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 4 + [422] * 4, statuses
    assert all(body["status"] == "COMPLETED" for status, body in results if status == 201)
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 4
    assert usio_transaction(sandbox, confirmation)["refunded"] == "40.00"


@pytest.mark.django_db(transaction=True)
def test_one_key_many_concurrent_requests_one_refund_one_call(sandbox, make_api_key, card_payment):
    payment = card_payment("50.00")
    raw = make_api_key("support")
    sandbox.fault("usio.SubmitCCVoid", "slow", delay=0.5)
    key = new_key()
    body = refund_body(payment_id=str(payment.pk), amount="20.00")

    results = _run(raw, [body] * 20, keys=[key] * 20)

    statuses = [status for status, _ in results]
    assert set(statuses) <= {201, 409}, statuses
    originals = [b for s, b in results if s == 201]
    assert all(b == originals[0] for b in originals)
    assert Refund.objects.count() == 1
    assert len(usio_calls(sandbox, "usio.SubmitCCVoid")) == 1
