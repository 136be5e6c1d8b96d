"""The in-process consumers of payment events (``payments.consumers``), run by the relay against the sandbox's
Transaction Service: the blocklist auto-block and the Transaction Service notifier."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from blocklist.models import BlocklistRecord
from blocklist.selectors import blocklist_is_blocked
from core.models import DeadLetter, OutboxConsumption, OutboxEvent
from core.outbox_relay import outbox_relay_run
from payments.models import TransactionServiceNotification
from payments.transaction_service import ts_notification_retry, ts_notifications_send_due
from tests.outbox.conftest import make_payment, move, returned

pytestmark = pytest.mark.django_db

BLOCKLIST = "payments.blocklist_auto_block"
NOTIFIER = "payments.transaction_service_notifier"


def notifications(sandbox) -> list[dict]:
    """What the Transaction Service accepted (it de-duplicates on event_id)."""
    return sandbox.received("transactions")


def ts_requests(sandbox) -> int:
    """Every POST the Transaction Service got, duplicates included."""
    return len(sandbox.requests("transactions"))


def only_event(payment, type_: str) -> OutboxEvent:
    return OutboxEvent.objects.get(aggregate_id=str(payment.pk), type=type_)


# --- Blocklist auto-block --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "failure", "code", "event_type", "blocks"),
    [
        ("subscription_ach", "returned", "R02", "SUBSCRIPTION_RETURNED", True),
        ("subscription_ach", "returned", "AC04", "SUBSCRIPTION_RETURNED", True),
        ("float_debit_ach", "returned", "R02", "FLOAT_DEBIT_RETURNED", True),
        ("float_debit_ach", "returned", "R16", "FLOAT_DEBIT_RETURNED", True),
        ("float_debit_ach", "returned", "R01", "FLOAT_DEBIT_RETURNED", False),  # not a blocking code
        ("subscription_ach", "returned", "R01", "SUBSCRIPTION_RETURNED", False),
        ("float_credit_ach", "returned", "R02", "FLOAT_CREDIT_RETURNED", False),  # never: not a debit of the user
        ("loan_debit_ach", "returned", "R02", "LOAN_DEBIT_RETURNED", False),
        ("subscription_ach", "rejected", "R02", "SUBSCRIPTION_FAILED", False),  # rejected, not returned
    ],
)
def test_the_blocklist_blocks_only_for_subscription_and_float_debit_returns_with_a_blocking_code(
    sandbox, kind, failure, code, event_type, blocks
):
    payment = make_payment(kind)
    move(payment, "ACHSENT", ("FAILED", {"failure": failure, "return_code": code, "source": "usio_sync"}))
    event = OutboxEvent.objects.get(aggregate_id=str(payment.pk))
    assert event.type == event_type

    assert outbox_relay_run().published == 1

    assert blocklist_is_blocked(user_id=payment.user_id) is blocks
    records = list(BlocklistRecord.objects.filter(user_id=payment.user_id).values(
        "status", "source", "return_code", "payment_id", "actor"))
    assert records == ([{"status": "BLOCKED", "source": "auto", "return_code": code, "payment_id": payment.pk,
                         "actor": "system"}] if blocks else [])
    handled = OutboxConsumption.objects.filter(consumer=BLOCKLIST, event_id=event.event_id).exists()
    assert handled is (event_type in ("SUBSCRIPTION_RETURNED", "FLOAT_DEBIT_RETURNED"))


def test_a_late_return_after_completion_also_blocks(sandbox):
    payment = make_payment("subscription_ach")
    move(payment, "ACHSENT", "COMPLETED", returned("R03"))
    outbox_relay_run()
    assert blocklist_is_blocked(user_id=payment.user_id)
    assert BlocklistRecord.objects.filter(user_id=payment.user_id).count() == 1


# --- Transaction Service notifier ------------------------------------------------------------------------------------
# The consumer records a TransactionServiceNotification in the relay's transaction; the sender POSTs it afterwards,
# outside any transaction (payments.transaction_service).


def relay_and_send(**send_kwargs):
    stats = outbox_relay_run()
    return stats, ts_notifications_send_due(**send_kwargs)


def test_a_float_payment_leaving_achsent_notifies_the_transaction_service(sandbox):
    debit = make_payment("float_debit_ach", amount="40.10")
    credit = make_payment("float_credit_ach")
    move(debit, "ACHSENT", "COMPLETED")
    move(credit, "ACHSENT", returned("R03"))

    outbox_relay_run()
    assert ts_requests(sandbox) == 0  # nothing is sent inside the relay's transaction
    assert TransactionServiceNotification.objects.filter(status="pending").count() == 2
    sent = ts_notifications_send_due()

    debit_event = only_event(debit, "FLOAT_DEBIT_COMPLETED")
    credit_event = only_event(credit, "FLOAT_CREDIT_RETURNED")
    assert notifications(sandbox) == [
        {"event_id": str(debit_event.event_id), "confirmation_id": debit.confirmation_id, "user_id": debit.user_id,
         "payment_status": "COMPLETED", "previous_status": "ACHSENT", "amount": "40.10",
         "occurred_at": debit_event.occurred_at.isoformat()},
        {"event_id": str(credit_event.event_id), "confirmation_id": credit.confirmation_id,
         "user_id": credit.user_id, "payment_status": "FAILED", "previous_status": "ACHSENT", "amount": "25.00",
         "occurred_at": credit_event.occurred_at.isoformat()},
    ]
    assert (sent.claimed, sent.sent) == (2, 2) and ts_requests(sandbox) == 2
    assert set(TransactionServiceNotification.objects.values_list("status", flat=True)) == {"sent"}
    assert ts_notifications_send_due().claimed == 0  # nothing is sent twice


def test_leaving_cleared_notifies_with_cleared_as_the_previous_status(sandbox):
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "CLEARED", "COMPLETED")  # entering CLEARED writes no float event
    relay_and_send()
    assert [(n["previous_status"], n["payment_status"]) for n in notifications(sandbox)] == [("CLEARED", "COMPLETED")]


def test_other_events_never_notify(sandbox):
    late = make_payment("float_debit_ach")
    move(late, "ACHSENT", "COMPLETED", returned("R01"))  # the late return leaves COMPLETED, not ACHSENT
    card = make_payment("float_debit_pinless")
    move(card, "COMPLETED")  # PROCESSING → COMPLETED
    rejected = make_payment("float_debit_ach")
    move(rejected, ("FAILED", {"failure": "rejected", "return_code": "R02"}))  # PROCESSING → FAILED
    subscription = make_payment("subscription_ach")
    move(subscription, "ACHSENT", "COMPLETED")

    stats, _ = relay_and_send()

    assert stats.published == 5 and stats.consumer_failures == 0
    assert [n["event_id"] for n in notifications(sandbox)] == [str(only_event(late, "FLOAT_DEBIT_COMPLETED").event_id)]
    assert ts_requests(sandbox) == 1


def test_a_failing_notification_neither_holds_the_relay_nor_repeats_what_was_accepted(sandbox):
    """Exact counts: the relay publishes everything at once; the failed POST is retried after its back-off; the
    blocklist acts once; the Transaction Service gets each notification once accepted, never again."""
    first = make_payment("float_debit_ach")  # one event: blocklist (blocks) + notifier
    move(first, "ACHSENT", returned("R02"))
    second = make_payment("float_debit_ach")  # two events: notifier (COMPLETED), then blocklist (late R02)
    move(second, "ACHSENT", "COMPLETED", returned("R02"))
    sandbox.fault("transactions.payments", "500", count=1)  # the first POST fails: `first`'s

    relay, sent = relay_and_send()

    first_event = only_event(first, "FLOAT_DEBIT_RETURNED")
    second_completed = only_event(second, "FLOAT_DEBIT_COMPLETED")
    assert (relay.published, relay.consumer_failures) == (3, 0)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert BlocklistRecord.objects.filter(user_id=first.user_id).count() == 1
    assert BlocklistRecord.objects.filter(user_id=second.user_id).count() == 1
    assert (sent.claimed, sent.sent, sent.retrying) == (2, 1, 1)
    assert [n["event_id"] for n in notifications(sandbox)] == [str(second_completed.event_id)]
    failed = TransactionServiceNotification.objects.get(event_id=first_event.event_id)
    assert (failed.status, failed.attempts) == ("pending", 1) and failed.next_attempt_at > timezone.now()

    assert ts_notifications_send_due().claimed == 0  # backing off: not due yet
    later = ts_notifications_send_due(now=failed.next_attempt_at)

    assert (later.claimed, later.sent) == (1, 1)
    assert [n["event_id"] for n in notifications(sandbox)] == [str(second_completed.event_id),
                                                               str(first_event.event_id)]
    assert ts_requests(sandbox) == 3  # one failed, two accepted: none repeated
    assert outbox_relay_run().selected == 0
    assert ts_notifications_send_due(now=timezone.now() + timedelta(days=1)).claimed == 0
    assert ts_requests(sandbox) == 3


def test_a_timed_out_notification_is_sent_again_and_the_receiver_deduplicates_it(sandbox):
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")
    sandbox.fault("transactions.payments", "timeout", count=1)  # received, but the answer never comes

    _, first = relay_and_send()
    row = TransactionServiceNotification.objects.get()
    second = ts_notifications_send_due(now=row.next_attempt_at)

    assert (first.retrying, second.sent) == (1, 1)
    assert ts_requests(sandbox) == 2  # at least once...
    assert len(notifications(sandbox)) == 1  # ...and idempotent on event_id at the receiver


def test_a_refused_notification_is_dead_lettered_at_once_and_a_replay_sends_it(sandbox,
                                                                               django_capture_on_commit_callbacks):
    sandbox.fault("transactions.payments", "400")  # the Transaction Service refuses it for real (HTTP 400)
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")

    relay, sent = relay_and_send()

    assert (relay.published, relay.dead_lettered, sent.dead) == (1, 0, 1)
    letter = DeadLetter.objects.get()
    event = only_event(payment, "FLOAT_DEBIT_COMPLETED")
    assert (letter.task_name, letter.kwargs) == ("payments.ts_notification_retry", {"event_id": str(event.event_id)})
    assert "http_400" in letter.last_error
    assert [r["status"] for r in sandbox.requests("transactions")] == [400]  # sent once, never retried
    assert sandbox.received("transactions") == []
    assert TransactionServiceNotification.objects.get().status == "dead"

    sandbox.control("DELETE", "faults")  # the receiver was fixed; support replays the dead letter
    with django_capture_on_commit_callbacks(execute=False):
        assert ts_notification_retry(event_id=str(event.event_id)) is True
    assert ts_notifications_send_due().sent == 1
    assert [n["event_id"] for n in sandbox.received("transactions")] == [str(event.event_id)]


def test_the_consumer_records_each_notification_once():
    payment = make_payment("float_debit_ach")
    move(payment, "ACHSENT", "COMPLETED")
    outbox_relay_run()
    event = only_event(payment, "FLOAT_DEBIT_COMPLETED")
    from core.outbox import outbox_envelope
    from payments.consumers import transaction_service_on_float_exit

    transaction_service_on_float_exit(outbox_envelope(event))  # a repeat (e.g. a consumer replay)

    assert TransactionServiceNotification.objects.filter(event_id=event.event_id).count() == 1
