"""Batch consumers (``register_consumer(..., batch_handler=...)``): one savepoint and bulk de-duplication rows per
relay batch, the same rows as the per-event path, and a fall back to the per-event path when the batch handler
raises (a bad event fails alone, with its back-off or dead letter, exactly as before)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from blocklist.models import BlocklistRecord
from core import outbox_relay
from core.models import DeadLetter, OutboxConsumption, OutboxEvent, OutboxFeedEntry
from core.outbox_relay import outbox_consumer_replay, outbox_relay_run
from payments.consumers import (
    BLOCKING_EVENT_TYPES,
    BLOCKLIST_CONSUMER,
    FLOAT_EXIT_EVENT_TYPES,
    TRANSACTION_SERVICE_CONSUMER,
    blocklist_on_return,
    blocklist_on_returns,
    transaction_service_on_float_exit,
    transaction_service_on_float_exits,
)
from payments.models import PaymentStatusChange, TransactionServiceNotification
from tests.outbox.conftest import events_of, make_payment, move, returned

pytestmark = pytest.mark.django_db


def register_payments_consumers(*, batch: bool) -> None:
    """The two payments consumers, as registered at start-up (batch) or without their batch handlers."""
    outbox_relay.register_consumer(BLOCKLIST_CONSUMER, blocklist_on_return, BLOCKING_EVENT_TYPES,
                                   batch_handler=blocklist_on_returns if batch else None)
    outbox_relay.register_consumer(TRANSACTION_SERVICE_CONSUMER, transaction_service_on_float_exit,
                                   FLOAT_EXIT_EVENT_TYPES,
                                   batch_handler=transaction_service_on_float_exits if batch else None)


def scenario() -> list:
    """Payments whose events touch every branch of both consumers (several events per payment for some)."""
    steps = [
        ("float_debit_ach", ["ACHSENT", "COMPLETED"]),  # notifies (from ACHSENT)
        ("float_debit_ach", ["ACHSENT", "CLEARED", "COMPLETED"]),  # notifies (from CLEARED)
        ("float_debit_ach", ["ACHSENT", returned("R02")]),  # notifies and blocks
        ("float_debit_ach", ["ACHSENT", "COMPLETED", returned("R01")]),  # notifies once; late return: no block
        ("float_credit_ach", ["ACHSENT", returned("R03")]),  # notifies; a credit never blocks
        ("float_debit_pinless", ["COMPLETED"]),  # from PROCESSING: no notification
        ("subscription_ach", ["ACHSENT", "COMPLETED", returned("R02")]),  # blocks
        ("subscription_ach", ["ACHSENT", "CLEARED", "SENT", "COMPLETED"]),  # no consumer
        ("loan_debit_ach", ["ACHSENT", returned("R02")]),  # no consumer wants it
    ]
    payments = []
    for kind, moves in steps:
        payment = make_payment(kind)
        move(payment, *[step if isinstance(step, str) else (step[0], dict(step[1])) for step in moves])
        payments.append(payment)
    return payments


def snapshot(payments: list) -> list[dict]:
    """What the relay wrote for ``payments``, with their ids replaced by labels (to compare two runs)."""
    result = []
    feed = list(OutboxFeedEntry.objects.select_related("event").order_by("position"))
    for payment in payments:
        events = events_of(payment)
        label = {str(e.event_id): f"{e.type}#{e.sequence}" for e in events}
        ids = {payment.confirmation_id: "<confirmation>", payment.user_id: "<user>", **label,
               **{e.occurred_at.isoformat(): f"<occurred_at of {label[str(e.event_id)]}>" for e in events}}
        consumptions = sorted(
            (label[str(row.event_id)], row.consumer, row.status, row.attempts, row.last_error)
            for row in OutboxConsumption.objects.filter(event_id__in=[e.event_id for e in events]))
        notifications = sorted(
            (row.status, row.attempts, sorted((key, ids.get(value, value)) for key, value in row.body.items()))
            for row in TransactionServiceNotification.objects.filter(payment=payment))
        blocks = list(BlocklistRecord.objects.filter(user_id=payment.user_id).order_by("id").values_list(
            "status", "source", "return_code", "actor", "reason"))
        result.append({
            "published": [e.published_at is not None for e in events],
            "feed": [f"{f.event.type}#{f.event.sequence}" for f in feed if f.event.aggregate_id == str(payment.pk)],
            "consumptions": consumptions, "notifications": notifications, "blocks": blocks,
        })
    return result


def test_the_batch_path_writes_the_same_rows_as_the_per_event_path(registry):
    register_payments_consumers(batch=False)
    one_by_one = scenario()
    per_event = outbox_relay_run(batch_size=4)
    expected = snapshot(one_by_one)

    registry.clear()
    register_payments_consumers(batch=True)
    batched = scenario()
    stats = outbox_relay_run(batch_size=4)

    assert snapshot(batched) == expected
    assert (stats.published, stats.consumer_failures, stats.batch_fallbacks) == (per_event.published, 0, 0)
    # The scenario does exercise both consumers: five notifications, two blocks, every event published in order.
    assert sum(len(p["notifications"]) for p in expected) == 5
    assert sum(len(p["blocks"]) for p in expected) == 2
    assert all(all(p["published"]) and p["feed"] == sorted(p["feed"], key=lambda x: int(x.split("#")[1]))
               for p in expected)


class BatchRecorder:
    """A test consumer with both handlers: each writes a database effect (a block of the event's user), then
    raises on the events in ``bad``; it records which envelopes each handler got."""

    def __init__(self):
        self.bad: set[str] = set()
        self.batches: list[list[str]] = []
        self.single: list[str] = []

    def _effect(self, envelope: dict) -> None:
        from blocklist.services import blocklist_block

        blocklist_block(user_id=envelope["data"]["user_id"], reason=f"test {envelope['id']}", actor="test")

    def handler(self, envelope: dict) -> None:
        self.single.append(envelope["id"])
        self._effect(envelope)
        if envelope["id"] in self.bad:
            raise RuntimeError("bad event")

    def batch_handler(self, envelopes: list[dict]) -> None:
        self.batches.append([e["id"] for e in envelopes])
        for envelope in envelopes:
            self._effect(envelope)
            if envelope["id"] in self.bad:
                raise RuntimeError("bad event in the batch")


def test_a_batch_handler_that_raises_falls_back_so_the_bad_event_alone_fails_and_backs_off(registry):
    consumer = BatchRecorder()
    outbox_relay.register_consumer("batchy", consumer.handler, {"SUBSCRIPTION_CLEARED", "SUBSCRIPTION_COMPLETED"},
                                   batch_handler=consumer.batch_handler)
    good = [make_payment("subscription_ach") for _ in range(3)]
    for payment in good:
        move(payment, "ACHSENT", "CLEARED")
    stuck = make_payment("subscription_ach")
    move(stuck, "ACHSENT", "CLEARED", "COMPLETED")
    bad_event, later_event = events_of(stuck)
    consumer.bad.add(str(bad_event.event_id))
    good_ids = [str(events_of(p)[0].event_id) for p in good]

    with override_settings(OUTBOX_CONSUMER_BACKOFF_SECONDS=30):
        before = timezone.now()
        stats = outbox_relay_run()

    # One batch attempt with the four heads, rolled back; then each event on its own: the bad one alone fails.
    assert (stats.batch_fallbacks, stats.consumer_failures, stats.published) == (1, 1, 3)
    assert sorted(consumer.batches[0]) == sorted([*good_ids, str(bad_event.event_id)])
    assert sorted(consumer.single) == sorted(consumer.batches[0])
    assert set(OutboxConsumption.objects.filter(status="done").values_list("event_id", flat=True)) == {
        events_of(p)[0].event_id for p in good}
    failure = OutboxConsumption.objects.get(event_id=bad_event.event_id)
    assert (failure.consumer, failure.status, failure.attempts) == ("batchy", "failing", 1)
    assert "RuntimeError: bad event" in failure.last_error
    assert before + timedelta(seconds=29) < failure.next_attempt_at < timezone.now() + timedelta(seconds=31)
    # The batch attempt's effects were rolled back with its savepoint: one block per good event, none for the bad.
    assert sorted(BlocklistRecord.objects.values_list("user_id", flat=True)) == sorted(p.user_id for p in good)
    # The bad event and its payment's later one wait; the others are published and in the feed.
    assert list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("position")) == [bad_event,
                                                                                                later_event]
    assert OutboxFeedEntry.objects.count() == 3
    assert outbox_relay_run().selected == 0  # backing off

    consumer.bad.clear()
    OutboxConsumption.objects.filter(pk=failure.pk).update(next_attempt_at=timezone.now())  # time passes
    resumed = outbox_relay_run()

    # The retry goes through the batch handler (the failing row is updated to done), then the payment's next event.
    assert (resumed.published, resumed.batch_fallbacks, resumed.consumer_failures) == (2, 0, 0)
    assert consumer.batches[1:] == [[str(bad_event.event_id)], [str(later_event.event_id)]]
    failure.refresh_from_db()
    assert (failure.status, failure.attempts, failure.next_attempt_at) == ("done", 1, None)
    assert OutboxConsumption.objects.filter(status="done").count() == 5
    feed = [f.event.sequence for f in OutboxFeedEntry.objects.select_related("event").order_by("position")
            if f.event.aggregate_id == str(stuck.pk)]
    assert feed == [1, 2]


def test_an_event_the_notifier_cannot_handle_is_dead_lettered_alone_and_its_replay_uses_the_per_event_handler():
    """The real consumers (batch handlers registered at start-up): a float event whose status change is missing
    makes the notifier's batch raise; the fall back dead-letters that event at once (PermanentJobError) and
    notifies the others; replaying the dead letter once the change is back records its notification."""
    payments = [make_payment("float_debit_ach") for _ in range(3)]
    for payment in payments:
        move(payment, "ACHSENT", "COMPLETED")
    broken = payments[1]
    change = PaymentStatusChange.objects.get(payment=broken, to_status="COMPLETED")
    saved = {f.attname: getattr(change, f.attname) for f in change._meta.concrete_fields}
    change.delete()
    broken_event = OutboxEvent.objects.get(aggregate_id=str(broken.pk), type="FLOAT_DEBIT_COMPLETED")

    stats = outbox_relay_run()

    assert (stats.published, stats.batch_fallbacks, stats.consumer_failures, stats.dead_lettered) == (3, 1, 1, 1)
    assert set(TransactionServiceNotification.objects.values_list("payment_id", flat=True)) == {
        payments[0].pk, payments[2].pk}
    dead = OutboxConsumption.objects.get(event_id=broken_event.event_id)
    assert (dead.consumer, dead.status, dead.attempts) == (TRANSACTION_SERVICE_CONSUMER, "dead", 1)
    letter = DeadLetter.objects.get()
    assert letter.kwargs == {"consumer": TRANSACTION_SERVICE_CONSUMER, "event_id": str(broken_event.event_id)}
    assert OutboxConsumption.objects.filter(consumer=TRANSACTION_SERVICE_CONSUMER, status="done").count() == 2

    PaymentStatusChange.objects.create(**saved)
    assert outbox_consumer_replay(consumer=TRANSACTION_SERVICE_CONSUMER, event_id=str(broken_event.event_id))
    notification = TransactionServiceNotification.objects.get(payment=broken)
    assert notification.body["event_id"] == str(broken_event.event_id)
    assert notification.body["previous_status"] == "ACHSENT"
    dead.refresh_from_db()
    assert dead.status == "done"


def test_the_notifiers_batch_handler_leaves_an_existing_notification_alone():
    """A redelivered batch (e.g. after a crash) inserts nothing twice and changes nothing already recorded."""
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")
    other = make_payment("float_debit_ach")
    move(other, "ACHSENT", "COMPLETED")
    from core.outbox import outbox_envelope

    envelopes = [outbox_envelope(e) for e in OutboxEvent.objects.order_by("position")]
    transaction_service_on_float_exit(envelopes[0])
    TransactionServiceNotification.objects.update(status="sent", attempts=2)

    transaction_service_on_float_exits(envelopes)

    rows = {row.payment_id: row for row in TransactionServiceNotification.objects.all()}
    assert len(rows) == 2
    assert (rows[payment.pk].status, rows[payment.pk].attempts) == ("sent", 2)
    assert (rows[other.pk].status, rows[other.pk].body["previous_status"]) == ("pending", "ACHSENT")
