"""Push subscriptions (SPEC §4): HMAC-signed POSTs to a real local HTTP server, retried with exponential back-off,
dead-lettered after N attempts, delivered exactly once on a 2xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from core.encryption import decrypt
from core.errors import ValidationError
from core.models import AuditEntry, DeadLetter, OutboxEvent, PushDelivery, PushSubscription
from core.outbox import outbox_envelope
from core.outbox_push import (
    outbox_push_retry_task,
    push_deliveries_create,
    push_delivery_retry,
    push_run,
    push_signature_verify,
    push_subscription_create,
    push_subscription_update,
)
from core.outbox_relay import outbox_relay_run
from tests.broker import drain
from tests.outbox.conftest import make_payment, move, subscription_with_events

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789abcdef-test"


@pytest.fixture
def subscribe(receiver, registry):
    """``subscribe(**overrides)``: a push subscription to the local receiver (no in-process consumers run)."""

    def _make(name: str = "ledger", *, url: str | None = None, event_types=None, active: bool = True,
              secret: str = SECRET) -> PushSubscription:
        return push_subscription_create(name=name, url=url or f"{receiver.url}/hooks/payments", secret=secret,
                                        event_types=event_types, active=active, actor="admin:test")

    return _make


def one_event() -> OutboxEvent:
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    outbox_relay_run()
    return OutboxEvent.objects.get(aggregate_id=str(payment.pk))


def verify(request: dict, secret: str = SECRET) -> int:
    """What a receiver does, written independently of core.outbox_push: returns the signed timestamp."""
    header = request["headers"]["X-Payments-Signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    return int(fields["t"])


def test_a_published_event_is_posted_with_a_verifiable_signature(subscribe, receiver):
    subscription = subscribe()
    event = one_event()
    delivery = PushDelivery.objects.get()
    assert (delivery.subscription_id, delivery.event_id, delivery.status) == (subscription.pk, event.pk, "pending")

    stats = push_run()

    assert (stats.attempted, stats.delivered) == (1, 1)
    [request] = receiver.requests
    assert request["path"] == "/hooks/payments"
    assert abs(verify(request) - time.time()) < 60
    assert request["headers"]["X-Payments-Event-Id"] == str(event.event_id)
    assert request["headers"]["X-Payments-Event-Type"] == "SUBSCRIPTION_CLEARED"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == outbox_envelope(event)
    # The helper for receivers agrees, and refuses a wrong secret, a changed body, an old timestamp.
    header = request["headers"]["X-Payments-Signature"]
    assert push_signature_verify(secret=SECRET, header=header, body=request["body"])
    assert not push_signature_verify(secret="another-secret-0123456", header=header, body=request["body"])
    assert not push_signature_verify(secret=SECRET, header=header, body=request["body"] + b" ")
    assert not push_signature_verify(secret=SECRET, header=header, body=request["body"], now=time.time() + 301)
    assert not push_signature_verify(secret=SECRET, header="garbage", body=request["body"])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None


def test_a_delivered_delivery_is_never_sent_again(subscribe, receiver):
    subscribe()
    event = one_event()
    push_run()
    push_run()
    assert push_deliveries_create(events=[event]) == 1  # the relay publishing it again (at least once)...
    push_run()
    assert PushDelivery.objects.count() == 1  # ...creates nothing new
    assert len(receiver.requests) == 1
    assert push_delivery_retry(delivery_id=PushDelivery.objects.get().pk, actor="admin:test") is False
    push_run()
    assert len(receiver.requests) == 1


@override_settings(OUTBOX_PUSH_BACKOFF_SECONDS=0)
def test_failed_attempts_are_retried_until_a_2xx(subscribe, receiver):
    subscribe()
    event = one_event()
    receiver.statuses = [500, 503]

    assert push_run(max_batches=1).failed == 1
    delivery = PushDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "pending", 1, 500, "HTTP 500")
    push_run(max_batches=1)
    push_run(max_batches=1)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, "")
    assert len(receiver.requests) == 3
    assert {r["headers"]["X-Payments-Event-Id"] for r in receiver.requests} == {str(event.event_id)}
    for request in receiver.requests:
        verify(request)


@override_settings(OUTBOX_PUSH_BACKOFF_SECONDS=30)
def test_the_back_off_doubles_and_a_delivery_is_not_sent_before_it_is_due(subscribe, receiver):
    subscribe()
    one_event()
    receiver.default_status = 500
    delivery = PushDelivery.objects.get()
    waits = []
    for _ in range(3):
        PushDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # time passes
        push_run()
        delivery.refresh_from_db()
        waits.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
        assert push_run().attempted == 0  # not due yet
    assert [round(w) for w in waits] == [30, 60, 120]
    assert len(receiver.requests) == 3


@override_settings(OUTBOX_PUSH_BACKOFF_SECONDS=0, OUTBOX_PUSH_MAX_ATTEMPTS=3)
def test_after_the_last_attempt_the_delivery_is_dead_and_dead_lettered_then_retryable(subscribe, receiver):
    subscribe()
    event = one_event()
    receiver.default_status = 500

    stats = push_run()

    assert (stats.attempted, stats.failed, stats.dead) == (3, 2, 1)
    delivery = PushDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("dead", 3)
    letter = DeadLetter.objects.get()
    assert (letter.task_name, letter.queue, letter.kwargs, letter.attempts) == (
        "core.outbox_push_retry", "default", {"delivery_id": delivery.pk}, 3)
    assert "HTTP 500" in letter.last_error
    assert push_run().attempted == 0 and len(receiver.requests) == 3  # dead: left alone

    # The admin's retry (and the dead letter's replay) give it a fresh budget.
    receiver.default_status = 200
    assert push_delivery_retry(delivery_id=delivery.pk, actor="admin:alice", reason="receiver fixed") is True
    entry = AuditEntry.objects.get(action="push_delivery_retry")
    assert (entry.actor, entry.target_id, entry.reason) == ("admin:alice", str(delivery.pk), "receiver fixed")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    push_run()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert len(receiver.requests) == 4
    assert receiver.requests[-1]["headers"]["X-Payments-Event-Id"] == str(event.event_id)


@override_settings(OUTBOX_PUSH_BACKOFF_SECONDS=0, OUTBOX_PUSH_MAX_ATTEMPTS=1)
def test_the_dead_letter_replay_task_revives_the_delivery(subscribe, receiver):
    subscribe()
    one_event()
    receiver.statuses = [500]
    push_run()
    delivery = PushDelivery.objects.get()
    assert delivery.status == "dead"
    assert outbox_push_retry_task(delivery_id=delivery.pk) is True
    push_run()
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_connection_failure_is_recorded_without_the_url(subscribe):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscribe(url=f"http://127.0.0.1:{port}/hooks/s3cr3t-path-token?key=qs3cr3t")
    one_event()

    assert push_run(max_batches=1).failed == 1

    delivery = PushDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("ConnectionError")
    assert "s3cr3t" not in delivery.last_error


def test_a_redirect_is_a_failure_and_is_not_followed(subscribe, receiver):
    subscribe()
    one_event()
    receiver.statuses = [302]
    push_run(max_batches=1)
    delivery = PushDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)
    assert [r["path"] for r in receiver.requests] == ["/hooks/payments"]


def test_deliveries_follow_each_subscriptions_event_types_and_active_flag(subscribe):
    returns = subscribe("returns", event_types=["SUBSCRIPTION_RETURNED"])
    everything = subscribe("everything")
    paused = subscribe("paused", active=False)
    subscription_with_events()  # CLEARED, SENT, COMPLETED, RETURNED
    outbox_relay_run()
    assert PushDelivery.objects.filter(subscription=returns).count() == 1
    assert PushDelivery.objects.filter(subscription=everything).count() == 4
    assert PushDelivery.objects.filter(subscription=paused).count() == 0


@override_settings(OUTBOX_PUSH_BACKOFF_SECONDS=30)
def test_a_subscriber_gets_each_payments_events_in_order(subscribe, receiver):
    subscribe()
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED", "COMPLETED")
    outbox_relay_run()
    receiver.statuses = [500]

    push_run()  # #1 fails and waits its back-off: #2 must wait behind it

    assert [json.loads(r["body"])["sequence"] for r in receiver.requests] == [1]
    PushDelivery.objects.update(next_attempt_at=timezone.now())
    push_run()
    assert [json.loads(r["body"])["sequence"] for r in receiver.requests] == [1, 1, 2]


def test_an_inactive_subscriptions_pending_deliveries_wait(subscribe, receiver):
    subscription = subscribe()
    one_event()
    push_subscription_update(subscription_id=subscription.pk, actor="admin:test", name=subscription.name,
                             url=subscription.url, event_types=[], active=False)
    assert push_run().attempted == 0 and receiver.requests == []
    push_subscription_update(subscription_id=subscription.pk, actor="admin:test", name=subscription.name,
                             url=subscription.url, event_types=[], active=True)
    assert push_run().delivered == 1


def test_the_secret_is_stored_encrypted_and_kept_when_an_update_gives_none(subscribe):
    subscription = subscribe()
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM core_pushsubscription WHERE id = %s", [subscription.pk])
        stored = cursor.fetchone()[0]
    assert SECRET not in stored and decrypt(stored) == SECRET
    push_subscription_update(subscription_id=subscription.pk, actor="admin:test", name="renamed",
                             url=subscription.url, event_types=["FLOAT_DEBIT_RETURNED"], active=True)
    assert PushSubscription.objects.get().secret == SECRET
    entries = list(AuditEntry.objects.filter(target_type="push_subscription").order_by("at", "id")
                   .values_list("changes", flat=True))
    assert len(entries) == 2 and SECRET not in json.dumps(entries)
    assert entries[-1]["signing_key_replaced"] is False and entries[-1]["event_types"] == ["FLOAT_DEBIT_RETURNED"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": "short"}, "secret"),
        ({"secret": ""}, "secret"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"event_types": ["lowercase"]}, "event_types"),
        ({"event_types": "FLOAT_DEBIT_RETURNED"}, "event_types"),
        ({"name": ""}, "name"),
    ],
)
def test_an_invalid_subscription_is_refused_and_nothing_is_written(overrides, field):
    values = {"name": "x", "url": "https://example.com/hook", "secret": SECRET, "event_types": [], **overrides}
    with pytest.raises(ValidationError) as caught:
        push_subscription_create(actor="admin:test", **values)
    assert caught.value.code == "invalid_push_subscription" and field in caught.value.details
    assert PushSubscription.objects.count() == 0 and AuditEntry.objects.count() == 0


@override_settings(ENVIRONMENT="prod")
def test_prod_requires_https():
    with pytest.raises(ValidationError):
        push_subscription_create(name="x", url="http://example.com/hook", secret=SECRET, actor="admin:test")
    assert push_subscription_create(name="x", url="https://example.com/hook", secret=SECRET, actor="admin:test")


def test_run_job_outbox_push(subscribe, receiver, capsys):
    subscribe()
    one_event()
    call_command("run_job", "outbox_push")
    out = json.loads(capsys.readouterr().out)
    assert out["result"]["delivered"] == 1 and len(receiver.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_a_relay_commit_that_creates_deliveries_kicks_a_push_run(subscribe):
    subscribe()
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "CLEARED")
    drain("default")  # the relay kick of the status change

    outbox_relay_run()

    assert [headers["task"] for headers, _ in drain("default")] == ["core.outbox_push"]


def test_a_lease_keeps_a_second_run_off_a_delivery_in_flight(subscribe, receiver):
    from core.outbox_push import push_attempt

    subscribe()
    one_event()
    delivery = PushDelivery.objects.get()
    # Another run claimed it a moment ago (its lease runs into the future).
    PushDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=40))
    assert push_attempt(delivery_id=delivery.pk) is None
    assert receiver.requests == []
