"""Prenotes under concurrency, on real transactions (PostgreSQL: row locks and SKIP LOCKED; SQLite: IMMEDIATE
transactions). Each thread has its own connection (``tests.concurrency.run_concurrently``)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from bank_accounts.models import BankAccountHistory
from payments.models import Payment, PrenoteRequest
from payments.prenotes import prenote_process_batch
from tests.concurrency import run_concurrently
from tests.payments.conftest import ACCOUNT_ID, USER, reference_of

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/prenotes"


@pytest.fixture(autouse=True)
def no_kick(prenote_kicks):
    """Kicks go to the broker for real; the fixture acknowledges them so no later test sees them."""
    return prenote_kicks


def test_concurrent_requests_for_one_account_make_one_prenote(sandbox, bank_account, make_api_key):
    bank_account()
    key = make_api_key("service")

    def post(index):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key)
        response = client.post(URL, {"user_id": USER, "account_id": ACCOUNT_ID, "provider": "jpm"}, format="json")
        return response.status_code, response.json()["id"]

    results = run_concurrently(post, 6)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(status for status, _ in results) == [200] * 5 + [202]
    assert len({prenote_id for _, prenote_id in results}) == 1
    assert PrenoteRequest.objects.count() == 1
    assert BankAccountHistory.objects.filter(action="prenote_status").count() == 1


def test_concurrent_jobs_submit_every_request_once(sandbox, bank_account, make_api_key):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_api_key("service"))
    for index in range(6):
        bank_account(account_id=f"acc-{index}")
        response = client.post(URL, {"user_id": USER, "account_id": f"acc-{index}", "provider": "usio",
                                     "usio_account": "subscription"}, format="json")
        assert response.status_code == 202

    results = run_concurrently(lambda index: prenote_process_batch(), 3)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(stats.claimed for stats in results) == 6
    calls = sandbox.requests("usio", "usio.SubmitACHPayment")
    references = [reference_of(call) for call in calls]
    assert len(references) == 6 and len(set(references)) == 6
    assert set(references) == {p.reference for p in Payment.objects.all()}
    assert set(PrenoteRequest.objects.values_list("status", flat=True)) == {"submitted"}
    assert set(PrenoteRequest.objects.values_list("attempts", flat=True)) == {1}
