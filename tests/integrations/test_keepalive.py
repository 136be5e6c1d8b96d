"""Kept-alive processor connections (``integrations.http.KeptAliveAdapter``) against the real sandbox served with
keep-alive, through a TCP forwarder that counts the connections and can close them.

The money rule behind it: a POST whose connection drops after it was sent is ``ProcessorTimeout`` (outcome
unknown), so a connection the server closed while idle must never carry the next call.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
import requests

from integrations.usio import usio_client
from tests.integrations.keepalive_proxy import ClosingProxy, keepalive_sandbox

#: The sandbox's keep-alive: it closes a connection idle this long (gunicorn checks about once a second).
SERVER_KEEP_ALIVE = 1


@pytest.fixture(scope="module")
def keepalive_url(tmp_path_factory):
    with keepalive_sandbox(tmp_path_factory.mktemp("keepalive"), keep_alive=SERVER_KEEP_ALIVE) as url:
        yield url


@pytest.fixture
def proxy(keepalive_url, settings):
    forwarder = ClosingProxy(keepalive_url)
    settings.USIO_BASE_URL = forwarder.url("/usio")
    settings.PROCESSOR_KEEPALIVE_SECONDS = 30  # only the case under test decides when a connection goes
    yield forwarder
    forwarder.stop()


def _pay(reference: str):
    return usio_client("float_debit").submit_token_payment(token="tok-card-1111", amount=Decimal("1.00"),
                                                           reference=reference)


def _sent(keepalive_url: str, reference: str) -> int:
    """How many SubmitTokenPayment requests carrying ``reference`` the sandbox received."""
    log = requests.get(f"{keepalive_url}/_control/requests", params={"operation": "usio.SubmitTokenPayment"},
                       timeout=10).json()["requests"]
    return sum(1 for entry in log if (entry["body"] or {}).get("AdditionalSearch") == reference)


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
    assert _sent(keepalive_url, reference) == 1


def test_a_connection_the_server_timed_out_is_not_used_for_the_next_call(proxy, keepalive_url):
    _pay(str(uuid.uuid4()))
    time.sleep(SERVER_KEEP_ALIVE + 1.5)  # the server closes the idle connection meanwhile
    reference = str(uuid.uuid4())
    assert _pay(reference).message == "Approved"
    assert proxy.accepted == 2
    assert _sent(keepalive_url, reference) == 1


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
