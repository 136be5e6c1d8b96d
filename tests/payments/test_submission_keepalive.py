"""Submissions over kept-alive processor connections (``integrations.http.KeptAliveAdapter``): a connection the
processor closed between two submissions must not turn the second into "outcome unknown" (202, PROCESSING) — it is
replaced before the request is sent, and the payment is sent once and completed.

The real sandbox served with keep-alive (its own process), behind a TCP forwarder that counts the connections.
"""

from __future__ import annotations

import time

import pytest

from core.models import IdempotencyKey
from payments.models import Payment
from tests.integrations.keepalive_proxy import SERVER_KEEP_ALIVE, sent
from tests.payments.conftest import card_body, post_payment


def _submit_completed(service, keepalive_url) -> Payment:
    response = post_payment(service, card_body())
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.payment_status == "COMPLETED"
    assert IdempotencyKey.objects.get(resource_id=str(payment.pk)).status == "completed"
    assert sent(keepalive_url, payment.reference) == 1
    return payment


@pytest.mark.django_db
def test_a_connection_the_processor_closed_between_two_submissions_does_not_make_the_second_unknown(
        proxy, keepalive_url, service, debit_card):
    debit_card()
    _submit_completed(service, keepalive_url)
    assert proxy.accepted == 1
    time.sleep(SERVER_KEEP_ALIVE + 1.5)  # the processor closes the idle kept-alive connection meanwhile
    _submit_completed(service, keepalive_url)
    assert proxy.accepted == 2  # a new connection, not the closed one


@pytest.mark.django_db
def test_consecutive_submissions_share_the_kept_alive_connection(proxy, keepalive_url, service, debit_card):
    debit_card()
    for _ in range(3):
        _submit_completed(service, keepalive_url)
    assert proxy.accepted == 1
