# ruff: noqa: F811  (pytest fixtures imported from conftest_jpm_webhook)
"""``POST /webhooks/jpm`` (SPEC §7.1, §10): authentication, size, rate limit, parsing; a refusal stores nothing,
enqueues nothing and writes one audit line; a repeat body is stored once; concurrent repeats (PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from django.test import Client

from syncing.models import JpmWebhookMessage
from tests.broker import drain
from tests.concurrency import run_concurrently
from tests.syncing.conftest_jpm_webhook import (  # noqa: F401  (fixtures)
    QUEUE,
    URL,
    callback,
    deliver,
    jpm,
    message,
    nothing_stored,
    queued_ids,
    signed_headers,
    webhook_queue,
)

pytestmark = pytest.mark.django_db

BODY = message(callback("a" * 32, "PENDING"))


def refusals(lines) -> list[dict]:
    return [line for line in lines() if line.get("message") == "jpm webhook refused"]


@pytest.fixture
def webhook_settings(settings):
    from tests.sandbox_fixtures import WEBHOOK_SECRET

    settings.JPM_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.JPM_WEBHOOK_MTLS_HEADER = ""
    settings.JPM_WEBHOOK_MAX_BYTES = 64 * 1024
    settings.JPM_WEBHOOK_THROTTLE_RATE = "1000/min"
    return settings


def test_a_signed_message_is_stored_and_queued_and_answered_200(jpm, webhook_settings, webhook_queue):
    response = deliver(jpm, BODY)

    assert response.status_code == 200, response.content
    assert response.json() == {"received": 1, "duplicate": False}
    row = JpmWebhookMessage.objects.get()
    assert row.content_hash == hashlib.sha256(BODY).hexdigest() and row.body.encode() == BODY
    assert (row.status, row.callbacks, row.deliveries, row.attempts, row.authenticated_by) == (
        "received", 1, 1, 0, "signature")
    assert queued_ids() == [row.pk]


def test_the_same_body_is_stored_once_and_queued_again_only_until_a_job_started(jpm, webhook_settings,
                                                                                webhook_queue):
    assert deliver(jpm, BODY).json() == {"received": 1, "duplicate": False}
    assert deliver(jpm, BODY).json() == {"received": 1, "duplicate": True}
    row = JpmWebhookMessage.objects.get()
    assert row.deliveries == 2 and row.last_delivered_at >= row.received_at
    assert queued_ids() == [row.pk, row.pk]  # no job started yet: queued again (the job is idempotent)

    from syncing.jpm_webhook import jpm_webhook_process

    jpm_webhook_process(message_id=row.pk)
    assert deliver(jpm, BODY).json() == {"received": 1, "duplicate": True}
    assert queued_ids() == []  # processed: not queued again
    row.refresh_from_db()
    assert (row.deliveries, row.status, row.attempts) == (3, "processed", 1)


def _sig(body: bytes, **kw) -> dict:
    return signed_headers(body, **kw)


BAD_AUTH = {
    "missing signature": (lambda b: {}, "not_authenticated"),
    "garbage signature": (lambda b: {"HTTP_X_JPM_SIGNATURE": f"t={int(time.time())},v1={'0' * 64}"},
                          "invalid_signature"),
    "malformed header": (lambda b: {"HTTP_X_JPM_SIGNATURE": "v1=abc"}, "invalid_signature"),
    "expired timestamp": (lambda b: _sig(b, timestamp=int(time.time()) - 301), "invalid_signature"),
    "future timestamp": (lambda b: _sig(b, timestamp=int(time.time()) + 301), "invalid_signature"),
    "wrong secret": (lambda b: _sig(b, secret="not-the-secret"), "invalid_signature"),
    "signature of another body": (lambda b: _sig(b + b" "), "invalid_signature"),
    "mtls header when mtls is not configured": (lambda b: {"HTTP_X_CLIENT_VERIFY": "SUCCESS"}, "not_authenticated"),
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
def test_unauthenticated_requests_get_401_and_change_nothing(case, jpm, webhook_settings, webhook_queue,
                                                             json_lines):
    headers, code = BAD_AUTH[case]
    response = deliver(jpm, BODY, sign=False, **headers(BODY))

    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert nothing_stored() and drain(QUEUE) == []
    (line,) = refusals(json_lines)
    assert line["content_length"] == len(BODY) and line["body_sha256"] == hashlib.sha256(BODY).hexdigest()
    assert line["client_address"] == "127.0.0.1" and "aaaaaaaa" not in json.dumps(line)


def test_a_signature_within_the_window_is_accepted_both_ways(jpm, webhook_settings, webhook_queue):
    for offset in (-290, 290):
        body = message(callback("b" * 32, "PENDING", at=f"2030-01-01T00:00:0{offset > 0:d}+00:00"))
        headers = signed_headers(body, timestamp=int(time.time()) + offset)
        assert deliver(jpm, body, sign=False, **headers).status_code == 200


def test_nothing_configured_refuses_everything(jpm, webhook_settings, webhook_queue):
    webhook_settings.JPM_WEBHOOK_SECRET = ""
    signed = signed_headers(BODY, secret="")
    assert deliver(jpm, BODY, sign=False, **signed).status_code == 401
    assert deliver(jpm, BODY, sign=False, HTTP_X_CLIENT_VERIFY="SUCCESS").status_code == 401
    assert deliver(jpm, BODY, sign=False).status_code == 401
    assert nothing_stored() and drain(QUEUE) == []


def test_the_trusted_mtls_header_when_configured(jpm, webhook_settings, webhook_queue):
    webhook_settings.JPM_WEBHOOK_SECRET = ""
    webhook_settings.JPM_WEBHOOK_MTLS_HEADER = "X-Client-Verify"
    webhook_settings.JPM_WEBHOOK_MTLS_VALUE = "SUCCESS"

    wrong = deliver(jpm, BODY, sign=False, HTTP_X_CLIENT_VERIFY="FAILED:unknown CA")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_client_certificate")
    assert nothing_stored() and drain(QUEUE) == []

    right = deliver(jpm, BODY, sign=False, HTTP_X_CLIENT_VERIFY="SUCCESS")
    assert right.status_code == 200, right.content
    assert JpmWebhookMessage.objects.get().authenticated_by == "mtls"


BAD_BODIES = {
    "malformed JSON": b'{"callbacks": [',
    "not an object": b"[1, 2]",
    "unknown status": message(dict(callback("c" * 32, "PENDING"), paymentStatus="SETTLED")),
    "missing endToEndId": message({"paymentStatus": "PENDING"}),
    "empty callbacks": message(),
    "no callbacks": b"{}",
    "51 callbacks": message(*(callback(f"{i:032x}", "PENDING") for i in range(51))),
    "bad createDateTime": message(dict(callback("c" * 32, "PENDING"), createDateTime="yesterday")),
    "not UTF-8": '{"callbacks": [{"endToEndId": "x", "paymentStatus": "PENDING"}]}'.encode("utf-16"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_an_authenticated_body_that_is_not_a_callback_message_gets_400(case, jpm, webhook_settings, webhook_queue,
                                                                       json_lines):
    body = BAD_BODIES[case]
    response = deliver(jpm, body)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_callback_message"
    assert nothing_stored() and drain(QUEUE) == []
    (line,) = refusals(json_lines)
    assert line["reason"] == "invalid_callback_message" and line["status"] == 400


def test_fifty_callbacks_are_accepted(jpm, webhook_settings, webhook_queue):
    body = message(*(callback(f"{i:032x}", "PENDING") for i in range(50)))
    assert deliver(jpm, body).json() == {"received": 50, "duplicate": False}


def test_an_oversized_body_gets_413_before_authentication(jpm, webhook_settings, webhook_queue, json_lines):
    webhook_settings.JPM_WEBHOOK_MAX_BYTES = 1024
    body = message(*(callback(f"{i:032x}", "PENDING") for i in range(20)))
    assert len(body) > 1024
    for sign in (True, False):  # signed or not: the size is checked first
        response = deliver(jpm, body, sign=sign)
        assert response.status_code == 413, response.content
        assert response.json()["error"]["code"] == "payload_too_large"
    assert nothing_stored() and drain(QUEUE) == []
    assert [line["reason"] for line in refusals(json_lines)] == ["payload_too_large"] * 2
    assert refusals(json_lines)[0]["body_sha256"] is None  # refused on Content-Length: never read


def test_the_rate_limit_per_client_address_gives_429(jpm, webhook_settings, webhook_queue, json_lines):
    from django.core.cache import cache

    cache.clear()
    webhook_settings.JPM_WEBHOOK_THROTTLE_RATE = "2/min"
    bodies = [message(callback(f"{i:032x}", "PENDING")) for i in range(3)]
    assert [deliver(jpm, b).status_code for b in bodies[:2]] == [200, 200]
    third = deliver(jpm, bodies[2])
    assert third.status_code == 429 and third.json()["error"]["code"] == "throttled"
    other = deliver(jpm, bodies[2], REMOTE_ADDR="10.0.0.9")  # another address has its own budget
    assert other.status_code == 200
    assert JpmWebhookMessage.objects.count() == 3
    assert [line["reason"] for line in refusals(json_lines)] == ["throttled"]
    cache.clear()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_get_401_without_credentials_and_405_with_them(method, jpm, webhook_settings,
                                                                     webhook_queue):
    anonymous = getattr(jpm, method)(URL)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")
    signed = getattr(jpm, method)(URL, **signed_headers(b""))
    assert (signed.status_code, signed.json()["error"]["code"]) == (405, "method_not_allowed")
    assert nothing_stored() and drain(QUEUE) == []


def test_a_broker_failure_at_enqueue_does_not_fail_the_request(jpm, webhook_settings, webhook_queue, json_lines):
    """The broker is unreachable: the message is stored and answered 200; the sweeper queues it later."""
    from config.celery import app

    previous = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app._pool = None
    app.amqp._producer_pool = None
    try:
        response = deliver(jpm, BODY)
    finally:
        app.conf.broker_write_url = previous
        app._pool = None
        app.amqp._producer_pool = None
    assert response.status_code == 200, response.content
    row = JpmWebhookMessage.objects.get()
    assert row.status == "received"
    assert queued_ids() == []
    assert [line["message_id"] for line in json_lines()
            if line.get("message") == "could not enqueue jpm webhook message; the sweeper will"] == [row.pk]


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_deliveries_store_one_row(webhook_settings, webhook_queue):
    # The race is real on PostgreSQL (CI's second pass); on SQLite the writes serialise and the result must match.
    body = message(callback("d" * 32, "PENDING"))
    headers = signed_headers(body)

    def post(_index):
        return Client().generic("POST", URL, data=body, content_type="application/json", **headers).status_code

    results = run_concurrently(post, 8)

    assert results == [200] * 8, results
    row = JpmWebhookMessage.objects.get()
    assert row.deliveries == 8
    assert set(queued_ids()) == {row.pk}
