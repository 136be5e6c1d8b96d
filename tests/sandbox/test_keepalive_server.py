"""The sandbox served with ``--keep-alive`` (gunicorn's gevent worker, as the keep-alive tests run it): one
connection's slow answer does not hold another connection's request, and a kept-alive connection carries one request
after another."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.stack import wait_for
from tests.integrations.keepalive_proxy import keepalive_sandbox


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with keepalive_sandbox(tmp_path_factory.mktemp("keepalive-server"), keep_alive=30) as served:
        yield served


def test_a_slow_answer_does_not_hold_another_connection(url):
    requests.post(f"{url}/_control/faults", json={"operation": "jpm.payment_status", "mode": "slow", "delay": 3},
                  timeout=10).raise_for_status()
    slow_done = threading.Event()

    def slow():
        requests.get(f"{url}/jpm/tsapi/v3/payment/E2E-SLOW", timeout=30)
        slow_done.set()

    waiter = threading.Thread(target=slow)
    waiter.start()
    try:
        wait_for(lambda: not requests.get(f"{url}/_control/faults", timeout=10).json()["faults"], timeout=10,
                 what="the slow call to arrive (it takes the fault, then waits)")
        clock = requests.get(f"{url}/_control/clock", timeout=10)  # another connection, meanwhile

        assert clock.status_code == 200 and "now" in clock.json()
        assert not slow_done.is_set()  # answered while the slow answer was still being held
    finally:
        waiter.join(timeout=30)
    assert slow_done.is_set()


def test_a_kept_alive_connection_carries_consecutive_requests(url):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/_control/clock")
            response = connection.getresponse()
            assert response.status == 200 and b"now" in response.read()
            assert response.getheader("Connection", "").lower() != "close"
        local_port = connection.sock.getsockname()[1]
        connection.request("GET", "/_control/clock")
        connection.getresponse().read()
        assert connection.sock.getsockname()[1] == local_port  # still the same TCP connection
    finally:
        connection.close()
