"""Kept-alive processor connections (``integrations.http.KeptAliveAdapter``) against the real sandbox served with
keep-alive, through a TCP forwarder that counts the connections and can close them.

The money rule behind it: a POST whose connection drops after it was sent is ``ProcessorTimeout`` (outcome
unknown), so a connection the server closed while idle must never carry the next call.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from integrations.usio import usio_client
from tests.integrations.keepalive_proxy import SERVER_KEEP_ALIVE, sent


def _pay(reference: str):
    return usio_client("float_debit").submit_token_payment(token="tok-card-1111", amount=Decimal("1.00"),
                                                           reference=reference)


def test_consecutive_calls_of_a_thread_share_one_connection(proxy):
    first, second = _pay(str(uuid.uuid4())), _pay(str(uuid.uuid4()))  # two clients, as two submissions make
    assert first.confirmation != second.confirmation
    assert proxy.accepted == 1


def test_a_connection_closed_while_idle_is_not_used_for_the_next_call(proxy, keepalive_url):
    _pay(str(uuid.uuid4()))
    proxy.close_connections()  # the other end closes the idle connection
    reference = str(uuid.uuid4())
    result = _pay(reference)  # not ProcessorTimeout: the dropped connection is replaced before sending
    assert result.message == "Approved"
    assert proxy.accepted == 2
    assert sent(keepalive_url, reference) == 1


def test_a_connection_the_server_timed_out_is_not_used_for_the_next_call(proxy, keepalive_url):
    _pay(str(uuid.uuid4()))
    time.sleep(SERVER_KEEP_ALIVE + 1.5)  # the server closes the idle connection meanwhile
    reference = str(uuid.uuid4())
    assert _pay(reference).message == "Approved"
    assert proxy.accepted == 2
    assert sent(keepalive_url, reference) == 1


def test_a_connection_idle_longer_than_the_limit_is_not_reused(proxy, settings):
    settings.PROCESSOR_KEEPALIVE_SECONDS = 0.05
    _pay(str(uuid.uuid4()))
    time.sleep(0.2)  # idle longer than our limit, well within the server's keep-alive
    _pay(str(uuid.uuid4()))
    assert proxy.accepted == 2


def test_keepalive_off_opens_a_connection_per_client(proxy, settings):
    settings.PROCESSOR_KEEPALIVE_SECONDS = 0
    _pay(str(uuid.uuid4()))
    _pay(str(uuid.uuid4()))
    assert proxy.accepted == 2
