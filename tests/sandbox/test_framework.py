"""The sandbox framework: faults, clock, request log, config and reset, over real HTTP."""

import threading
import time

import pytest
import requests


def _post_slack(sandbox, text="hello", timeout=10):
    return requests.post(f"{sandbox.url}/slack/webhook", json={"text": text}, timeout=timeout)


def test_fault_applies_to_exactly_the_next_n_calls(sandbox):
    sandbox.fault("slack.webhook", "500", count=2)
    assert [_post_slack(sandbox).status_code for _ in range(3)] == [500, 500, 200]
    assert [r["fault"] for r in sandbox.requests("slack")] == ["500", "500", None]
    assert sandbox.received("slack") == [{"text": "hello"}]  # 500 means not processed
    assert sandbox.control("GET", "faults") == {"faults": {}}


def test_wildcard_faults_match_a_whole_service_or_everything(sandbox):
    sandbox.fault("slack.*", "malformed")
    response = _post_slack(sandbox)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    sandbox.fault("*", "500")
    assert requests.post(f"{sandbox.url}/transactions/payments/status", json={}, timeout=5).status_code == 500


def test_timeout_is_logged_at_once_and_answered_after_the_hang(sandbox):
    sandbox.fault("slack.webhook", "timeout")
    outcome = {}

    def call():
        started = time.monotonic()
        outcome["status"] = _post_slack(sandbox, "late").status_code
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not sandbox.requests("slack"):
        time.sleep(0.05)
    logged = sandbox.requests("slack")
    assert thread.is_alive(), "the answer must still be pending"
    assert [(r["operation"], r["fault"]) for r in logged] == [("slack.webhook", "timeout")]
    assert sandbox.received("slack") == [{"text": "late"}]  # processed before answering
    thread.join(10)
    assert outcome["status"] == 200 and outcome["took"] >= 2.5


def test_slow_fault_delays_then_processes(sandbox):
    sandbox.fault("slack.webhook", "slow", delay=0.5)
    started = time.monotonic()
    assert _post_slack(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.5
    assert sandbox.received("slack") == [{"text": "hello"}]


@pytest.mark.parametrize("body", [{"operation": "x", "mode": "explode"}, {"mode": "500"},
                                  {"operation": "x", "mode": "500", "count": 0}])
def test_bad_fault_requests_are_400_and_add_nothing(sandbox, body):
    response = requests.post(f"{sandbox.url}/_control/faults", json=body, timeout=5)
    assert response.status_code == 400
    assert sandbox.control("GET", "faults") == {"faults": {}}


def test_clock_only_moves_forward(sandbox):
    before = sandbox.control("GET", "clock")["offset_seconds"]
    assert requests.post(f"{sandbox.url}/_control/clock/advance", json={"days": -1}, timeout=5).status_code == 400
    assert sandbox.control("GET", "clock")["offset_seconds"] == before
    sandbox.advance(days=2)
    assert sandbox.control("GET", "clock")["offset_seconds"] == pytest.approx(before + 2 * 86400)


def test_reset_restores_config_and_forgets_everything(sandbox):
    original = sandbox.control("GET", "clock")
    sandbox.configure(hang_seconds=0.1, rtp_routing_numbers=["111000025"])
    sandbox.fault("slack.webhook", "500")
    _post_slack(sandbox)
    sandbox.advance(days=3)
    sandbox.reset()
    assert sandbox.configure()["hang_seconds"] == 3.0
    assert sandbox.configure()["rtp_routing_numbers"] != ["111000025"]
    assert sandbox.requests() == [] and sandbox.received("slack") == []
    assert sandbox.control("GET", "faults") == {"faults": {}}
    assert sandbox.control("GET", "clock")["offset_seconds"] == pytest.approx(original["offset_seconds"], abs=1)


def test_unknown_config_key_service_and_control_route_are_refused(sandbox):
    assert requests.patch(f"{sandbox.url}/_control/config", json={"nope": 1}, timeout=5).status_code == 400
    assert requests.get(f"{sandbox.url}/nowhere/x", timeout=5).status_code == 404
    assert requests.get(f"{sandbox.url}/_control/nowhere", timeout=5).status_code == 404


def test_request_log_is_redacted(sandbox):
    requests.post(f"{sandbox.url}/transactions/payments/status",
                  json={"event_id": "e", "account_number": "123456789012", "token": "tok-secret"}, timeout=5)
    logged = sandbox.requests("transactions")[0]["body"]
    assert logged["account_number"] == "[REDACTED]" and logged["token"] == "[REDACTED]"


def test_400_fault_refuses_without_processing(sandbox):
    sandbox.fault("slack.webhook", "400")
    assert _post_slack(sandbox).status_code == 400
    assert sandbox.received("slack") == []
    assert _post_slack(sandbox).status_code == 200
